"""Signal in, firings out: which playbooks a signal may trigger, whether their condition and
threshold hold, and the guardrails (pause, cooldown, max per call, de-dup) that hold them back.

Bookkeeping that gates a firing is updated synchronously before the first `await`, so two
signals arriving together cannot both slip through a cooldown."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from callcue.decide.actions.record import ActionRecord
from callcue.decide.conditions import EvalContext, evaluate, evaluate_value, signal_view
from callcue.decide.lifecycle import Lifecycle
from callcue.decide.playbooks import Playbook
from callcue.decide.state import AuditUnavailable, CallInfo, _CallState, template_values
from callcue.events import Signal, new_id

log = logging.getLogger(__name__)


class Gating(Lifecycle):
    if TYPE_CHECKING:  # provided by DecisionEngine (engine.py), which this mixin is part of
        def _call(self, info: CallInfo) -> _CallState: ...

    # ------------------------------------------------------------------ signals
    async def on_signal(self, call: CallInfo, signal: Signal) -> list[ActionRecord]:
        """`call` says what playbooks may look at (the pipeline builds it from the call's
        start metadata with `CallInfo.from_metadata`)."""
        if not isinstance(call, CallInfo):
            raise TypeError(f"call must be a CallInfo with a string call_id, got {type(call).__name__}")
        if signal.call_id != call.call_id:
            raise ValueError(f"signal for call {signal.call_id!r} handed in with call {call.call_id!r}")
        # the only awaits before the decision: learned thresholds (cached after the first look-up)
        thresholds = await self._thresholds(signal) if not signal.retracted else {}
        st = self._call(call)
        now = self.clock()
        secs = now - (st.info.started_at or now)
        if signal.evidence is not None:
            secs = max(secs, signal.evidence.end)
        ev = signal.evidence
        view = signal_view(kind=signal.kind, name=signal.name, confidence=signal.confidence, attrs=signal.attrs,
                           channel=ev.channel if ev else None, text=ev.text if ev else "",
                           start=ev.start if ev else None, end=ev.end if ev else None,
                           detector=signal.detector, signal_id=signal.signal_id, at_s=now)  # fmt: skip
        entries: list[tuple[str, dict[str, Any]]] = [("signal", {"kind": "signal", **signal.to_dict()})]
        firings: list[tuple[Playbook, list[ActionRecord], dict[str, Any]]] = []
        shadow: list[tuple[Playbook, int, bool, list[ActionRecord] | None]] = []
        if signal.retracted:
            for rec in self.actions(call_id=call.call_id):
                if signal.signal_id in rec.signal_ids and rec.state in ("pending_approval", "suggested", "proposed"):
                    firings.append((self.playbooks.get(rec.playbook_id) if rec.playbook_id in self.playbooks
                                    else None, [rec], {"retract": True}))  # type: ignore[arg-type]  # fmt: skip
        else:
            st.signals.append(view)
            call_view = {"call_id": call.call_id, "agent_id": call.agent_id, "queue": call.queue, "tier": call.tier,
                         "seconds_in_call": round(secs, 3), "metadata": dict(call.metadata)}  # fmt: skip
            ctx = EvalContext(signal=view, signals=list(st.signals), call=call_view, now_s=now)
            for pb in self.playbooks:
                if pb.id not in thresholds:  # trigger pre-filter
                    continue
                thr, source, candidates = thresholds[pb.id]
                if signal.confidence < min([thr, *(t for _, t in candidates)]):
                    continue
                out = evaluate(pb.condition, ctx)
                if out.error:
                    entries.append(("condition_error", {"playbook_id": pb.id, "playbook_version": pb.version,
                                                        "when": pb.when, "error": out.error, "seen": out.seen}))  # fmt: skip
                fired: list[ActionRecord] | None = None
                if out.matched and signal.confidence >= thr:
                    why = {"playbook_id": pb.id, "playbook_version": pb.version, "when": pb.when, "seen": out.seen,
                           "signal_id": signal.signal_id, "min_confidence": thr, "threshold_source": source}  # fmt: skip
                    entries.append(("playbook_matched", why))
                    reason = self._suppressed(pb, st, ctx, now)
                    if reason:
                        entries.append(("suppressed", {"playbook_id": pb.id, "playbook_version": pb.version,
                                                       "reason": reason}))  # fmt: skip
                    else:
                        fired = self._new_firing(pb, call, signal, view, call_view)
                        firings.append((pb, fired, why))
                for version, t in candidates:
                    shadow.append((pb, version, out.matched and signal.confidence >= t, fired))
        try:
            for kind, payload in entries:
                pid = payload.get("playbook_id")
                await self._audit(kind, call_id=call.call_id, agent_id=call.agent_id, playbook_id=pid,
                                  playbook_version=payload.get("playbook_version"), payload=payload)  # fmt: skip
        except AuditUnavailable:
            # the decision was not recorded, so it was not taken: its firings never existed
            for _pb, recs, why in firings:
                if not why.get("retract"):
                    self._drop_firing(recs)
            raise
        created: list[ActionRecord] = []
        for pb, recs, why in firings:
            if why.get("retract"):
                if recs[0].state in ("pending_approval", "suggested", "proposed"):
                    await self._transition(recs[0], "cancelled", "system", reason="signal_retracted")
                continue
            await self._launch(pb, recs, why)
            created.extend(recs)
            for a in self.anomalies.record_fire(pb.id):
                await self._anomaly(a)
        for pb, version, would_fire, fired in shadow:
            hint_id = next((r.hint_id for r in fired or [] if r.hint_id), None)
            try:
                await self.learning.record_shadow(version, {
                    "decision_id": f"{signal.signal_id}:{pb.id}", "active_fired": hint_id is not None,
                    "hint_id": hint_id, "call_id": call.call_id, "confidence": signal.confidence}, would_fire)  # fmt: skip
            except Exception:
                log.exception("shadow record failed for %s v%s", pb.id, version)
        return created

    async def _thresholds(self, signal: Signal) -> dict[str, tuple[float, str, list[tuple[int, float]]]]:
        """Per playbook whose trigger accepts the signal: (threshold now, where it came from,
        shadow candidates as (version, threshold)). A learning store that fails falls back to
        the playbook file: a database hiccup must not switch guidance off."""
        out: dict[str, tuple[float, str, list[tuple[int, float]]]] = {}
        for pb in self.playbooks:
            if not pb.trigger.accepts(signal.kind, signal.name):
                continue
            thr, source, cands = pb.min_confidence, "playbook", []
            if self.learning is not None:
                try:
                    learned = await self.learning.threshold_for(pb.id, pb.min_confidence)
                    if learned != pb.min_confidence:
                        thr, source = float(learned), "learned"
                    cands = await self._shadows(pb.id)
                except Exception:
                    log.exception("learned threshold unavailable for %s; using the playbook's", pb.id)
            out[pb.id] = (thr, source, cands)
        return out

    SHADOW_REFRESH_S = 30.0

    async def _shadows(self, playbook_id: str) -> list[tuple[int, float]]:
        now = time.monotonic()
        hit = self._shadow_cache.get(playbook_id)
        if hit is None or hit[0] < now:
            vs = await self.learning.shadow_candidates(playbook_id)
            hit = (now + self.SHADOW_REFRESH_S, [(v.version, v.threshold) for v in vs])
            self._shadow_cache[playbook_id] = hit
        return hit[1]

    def _suppressed(self, pb: Playbook, st: _CallState, ctx: EvalContext, now: float) -> str | None:
        """Gate and *reserve* in one synchronous step (see module docstring)."""
        if pb.id in self._paused:
            return "paused_globally"
        if pb.id in st.paused:
            return "paused_for_call"
        last = st.last_fired.get(pb.id)
        if last is not None and now - last < pb.cooldown_s:
            return f"cooldown ({now - last:.1f}s of {pb.cooldown_s:g}s)"
        if pb.max_per_call is not None and st.fired.get(pb.id, 0) >= pb.max_per_call:
            return f"max_per_call ({pb.max_per_call}) reached"
        key: str | None = None
        if pb.dedupe is not None:
            try:
                key = repr(evaluate_value(pb.dedupe, ctx))
            except Exception as e:
                key = f"<error {type(e).__name__}>"
            if key in st.dedupe.setdefault(pb.id, set()):
                return f"duplicate (key {key})"
        st.last_fired[pb.id] = now
        st.fired[pb.id] = st.fired.get(pb.id, 0) + 1
        if key is not None:
            st.dedupe[pb.id].add(key)
        return None

    def _drop_firing(self, recs: list[ActionRecord]) -> None:
        for r in recs:
            self._actions.pop(r.action_id, None)
            self._firings.pop(r.firing_id, None)

    def _new_firing(self, pb: Playbook, call: CallInfo, signal: Signal, view: dict[str, Any],
                    call_view: dict[str, Any]) -> list[ActionRecord]:  # fmt: skip
        fid = new_id("fire")
        values = template_values(view, call_view)
        recs = [ActionRecord(action_id=new_id("act"), call_id=call.call_id, agent_id=call.agent_id,
                             playbook_id=pb.id, playbook_version=pb.version, autonomy=pb.autonomy, spec=spec,
                             values=values, signal_ids=[signal.signal_id], firing_id=fid)
                for spec in pb.actions]  # fmt: skip
        for r in recs:
            self._actions[r.action_id] = r
        self._firings[fid] = [r.action_id for r in recs]
        return recs

