"""Signal in, firings out: which playbooks a signal may trigger, whether their condition and
threshold hold (learned thresholds and shadow candidates included), and the guardrails that
hold them back (switches.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from callcue.decide.actions.record import ActionRecord
from callcue.decide.anomalies import Anomaly, AnomalyMonitor
from callcue.decide.conditions import EvalContext, evaluate, signal_view
from callcue.decide.lifecycle import Lifecycle
from callcue.decide.playbooks import Playbook, PlaybookSet
from callcue.decide.records import ActionBook
from callcue.decide.state import AuditUnavailable, CallInfo, template_values
from callcue.decide.switches import Switches
from callcue.decide.trail import DecisionTrail
from callcue.events import Signal, new_id

log = logging.getLogger(__name__)


class Gating:
    def __init__(self, playbooks: PlaybookSet, switches: Switches, book: ActionBook, trail: DecisionTrail,
                 lifecycle: Lifecycle, anomalies: AnomalyMonitor, on_anomaly: Callable[[Anomaly], Awaitable[None]],
                 clock: Callable[[], float], learning: Any = None) -> None:  # fmt: skip
        """`learning` (a `callcue.learning.store.Learning`, optional) supplies the active
        confidence threshold per playbook and shadow candidates to evaluate silently."""
        self.playbooks = playbooks
        self.switches = switches
        self.book = book
        self.trail = trail
        self.lifecycle = lifecycle
        self.anomalies = anomalies
        self.on_anomaly = on_anomaly
        self.clock = clock
        self.learning = learning
        self._shadow_cache: dict[str, tuple[float, list[tuple[int, float]]]] = {}

    def refresh_shadows(self, playbook_id: str) -> None:
        """Re-read shadow candidates on the next signal (after a human started or ended one)."""
        self._shadow_cache.pop(playbook_id, None)

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
        st = self.switches.call(call)
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
            for rec in self.book.select(call_id=call.call_id):
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
                    reason = self.switches.suppressed(pb, st, ctx, now)
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
                await self.trail(kind, call_id=call.call_id, agent_id=call.agent_id, playbook_id=pid,
                                  playbook_version=payload.get("playbook_version"), payload=payload)  # fmt: skip
        except AuditUnavailable:
            # the decision was not recorded, so it was not taken: its firings never existed
            for _pb, recs, why in firings:
                if not why.get("retract"):
                    self.book.drop(recs)
            raise
        created: list[ActionRecord] = []
        for pb, recs, why in firings:
            if why.get("retract"):
                if recs[0].state in ("pending_approval", "suggested", "proposed"):
                    await self.lifecycle.transition(recs[0], "cancelled", "system", reason="signal_retracted")
                continue
            await self.lifecycle.launch(pb, recs, why)
            created.extend(recs)
            for a in self.anomalies.record_fire(pb.id):
                await self.on_anomaly(a)
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

    def _new_firing(self, pb: Playbook, call: CallInfo, signal: Signal, view: dict[str, Any],
                    call_view: dict[str, Any]) -> list[ActionRecord]:  # fmt: skip
        fid = new_id("fire")
        values = template_values(view, call_view)
        recs = [ActionRecord(action_id=new_id("act"), call_id=call.call_id, agent_id=call.agent_id,
                             playbook_id=pb.id, playbook_version=pb.version, autonomy=pb.autonomy, spec=spec,
                             values=values, signal_ids=[signal.signal_id], firing_id=fid)
                for spec in pb.actions]  # fmt: skip
        self.book.add(recs)
        return recs
