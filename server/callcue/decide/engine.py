"""The decision engine: signals in, governed actions out, humans always in charge.

Per signal it finds the playbooks that apply, checks confidence, condition, pauses, cooldown
and de-duplication, and turns a match into a *firing*: the playbook's actions as records
that then run (auto), wait for the agent (suggest) or wait for a supervisor (approve, with a
deadline). Supervisors and agents can approve, reject, pause, cancel, roll back, override and
give feedback at any time; each of those is a state change of a record, and every state
change is written to the audit log so that any hint or webhook can be explained afterwards.

Bookkeeping that gates a firing (cooldown, de-dup, counters) is updated synchronously before
the first `await`, so two signals arriving together cannot both slip through a cooldown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from callcue.decide.actions import TERMINAL, ActionDispatcher, ActionRecord, NotUndoable, parse_action
from callcue.decide.anomalies import Anomaly, AnomalyMonitor
from callcue.audit.log import SensitiveDataError
from callcue.decide.conditions import EvalContext, evaluate, evaluate_value, signal_view
from callcue.decide.playbooks import Action, EscalateAction, HintAction, Playbook, PlaybookSet
from callcue.events import Signal, new_id

log = logging.getLogger(__name__)

HUMAN_PLAYBOOK = "human"  # playbook id recorded for actions a supervisor created from scratch
MAX_SIGNALS_PER_CALL = 500
FEEDBACK_ACTIONS = ("accepted", "dismissed", "corrected")

_ALLOWED: dict[str, set[str]] = {
    "proposed": {"pending_approval", "suggested", "dispatched", "cancelled"},
    "pending_approval": {"approved", "rejected", "expired", "cancelled", "overridden"},
    "suggested": {"approved", "dismissed", "cancelled", "overridden"},
    "approved": {"dispatched", "cancelled"},
    "expired": {"dispatched"},
    "dispatched": {"succeeded", "failed", "cancelled", "overridden"},
    "succeeded": {"rolled_back", "overridden"},
    "failed": {"overridden"},
}


class AuditSink(Protocol):
    async def append(
        self, kind: str, *, call_id: str | None = None, agent_id: str | None = None,
        playbook_id: str | None = None, playbook_version: int | str | None = None,
        action_id: str | None = None, actor: str = "system", payload: dict[str, Any] | None = None,
    ) -> Any: ...  # fmt: skip


class DecisionError(Exception):
    """Base for refusals of a human command; the API maps subclasses to HTTP codes."""


class UnknownAction(DecisionError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else "unknown"


class InvalidTransition(DecisionError):
    """E.g. approving an action that already expired."""


@dataclass
class CallInfo:
    """Call metadata playbooks may look at. `started_at` is on the engine's clock."""

    call_id: str
    agent_id: str | None = None
    queue: str | None = None
    tier: str | None = None
    started_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _CallState:
    info: CallInfo
    signals: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_SIGNALS_PER_CALL))
    last_fired: dict[str, float] = field(default_factory=dict)
    dedupe: dict[str, set[str]] = field(default_factory=dict)
    fired: dict[str, int] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)


class DecisionEngine:
    def __init__(
        self,
        playbooks: PlaybookSet,
        audit: AuditSink,
        dispatcher: ActionDispatcher,
        clock: Callable[[], float] = time.time,
        learning: Any = None,
    ) -> None:
        """`learning` (a `callcue.learning.store.Learning`, optional) supplies the active
        confidence threshold per playbook and shadow candidates to evaluate silently."""
        self.playbooks = playbooks
        self.learning = learning
        self._shadow_cache: dict[str, tuple[float, list[tuple[int, float]]]] = {}
        self.audit = audit
        self.dispatcher = dispatcher
        self.clock = clock
        self.anomalies = AnomalyMonitor({p.id: p.anomaly for p in playbooks}, clock)
        self._calls: dict[str, _CallState] = {}
        self._paused: set[str] = {p.id for p in playbooks if not p.enabled}
        self._actions: dict[str, ActionRecord] = {}
        self._firings: dict[str, list[str]] = {}
        self._by_hint: dict[str, str] = {}  # hint_id -> firing_id
        self._tasks: dict[str, asyncio.Task[None]] = {}  # action_id -> in-flight execution
        self._timers: dict[str, asyncio.Task[None]] = {}  # firing_id -> approval deadline
        self._busy: set[str] = set()  # action ids with an undo in flight

    # ------------------------------------------------------------------ queries
    def action(self, action_id: str) -> ActionRecord:
        try:
            return self._actions[action_id]
        except KeyError:
            raise UnknownAction(f"unknown action {action_id!r}") from None

    def actions(self, *, state: str | None = None, call_id: str | None = None,
                playbook_id: str | None = None) -> list[ActionRecord]:  # fmt: skip
        return [r for r in self._actions.values()
                if (state is None or r.state == state) and (call_id is None or r.call_id == call_id)
                and (playbook_id is None or r.playbook_id == playbook_id)]  # fmt: skip

    def playbook(self, playbook_id: str) -> Playbook:
        """The loaded playbook; UnknownAction (-> 404 in the API) if there is none."""
        return self._playbook(playbook_id)

    def refresh_shadows(self, playbook_id: str) -> None:
        """Re-read shadow candidates on the next signal (after a human started or ended one)."""
        self._shadow_cache.pop(playbook_id, None)

    def is_paused(self, playbook_id: str, call_id: str | None = None) -> bool:
        if playbook_id in self._paused:
            return True
        st = self._calls.get(call_id) if call_id else None
        return bool(st and playbook_id in st.paused)

    def playbook_status(self) -> list[dict[str, Any]]:
        return [{"id": p.id, "version": p.version, "description": p.description, "autonomy": p.autonomy,
                 "paused": p.id in self._paused,
                 "paused_calls": sorted(c for c, st in self._calls.items() if p.id in st.paused),
                 "stats": self.anomalies.rates(p.id)} for p in self.playbooks]  # fmt: skip

    async def restore(self) -> list[str]:
        """Re-apply global pauses from the audit log after a restart, so a kill switch thrown
        yesterday is still thrown. Returns the playbooks now paused."""
        it = getattr(self.audit, "iter_entries", None)
        if it is None:
            return sorted(self._paused)
        state: dict[str, bool] = {}
        async for e in it(kind=["paused", "resumed"]):
            if e.call_id is None and e.playbook_id in self.playbooks:
                state[e.playbook_id] = e.kind == "paused"
        for pid, paused in state.items():
            (self._paused.add if paused else self._paused.discard)(pid)
        return sorted(self._paused)

    async def drain(self) -> None:
        """Wait for in-flight executions (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        for t in list(self._timers.values()) + list(self._tasks.values()):
            t.cancel()
        await asyncio.gather(*self._timers.values(), *self._tasks.values(), return_exceptions=True)

    # ------------------------------------------------------------------ calls
    def start_call(self, info: CallInfo) -> None:
        if info.started_at is None:
            info.started_at = self.clock()
        st = self._calls.get(info.call_id)
        if st is None:
            self._calls[info.call_id] = _CallState(info)
        else:
            st.info = info

    def _call(self, info: CallInfo) -> _CallState:
        st = self._calls.get(info.call_id)
        if st is None:
            self.start_call(info)
            st = self._calls[info.call_id]
        else:  # metadata (queue transfer, tier lookup) may arrive after the call began
            started = st.info.started_at
            st.info = info
            if info.started_at is None:
                info.started_at = started
        return st

    async def on_call_end(self, call_id: str) -> None:
        """Pending decisions die with the call; executed ones (webhooks sent) stay as they are."""
        st = self._calls.pop(call_id, None)
        for rec in self.actions(call_id=call_id):
            if rec.state in ("pending_approval", "suggested", "proposed"):
                with contextlib.suppress(InvalidTransition):
                    await self._transition(rec, "cancelled", "system", reason="call_ended")
        for fid in [f for f, ids in self._firings.items() if ids and self._actions[ids[0]].call_id == call_id]:
            t = self._timers.pop(fid, None)
            if t:
                t.cancel()
        await self._audit("call_ended", call_id=call_id, agent_id=st.info.agent_id if st else None,
                          payload={"signals": len(st.signals) if st else 0})  # fmt: skip
        self._forget(call_id)

    def _forget(self, call_id: str) -> None:
        """Drop finished records of an ended call (the audit log keeps their story); keep the
        ones a supervisor may still act on: in flight, or executed with an undo."""
        keep = {"dispatched"}
        for fid in [f for f, ids in self._firings.items() if ids and self._actions[ids[0]].call_id == call_id]:
            recs = self._firing(fid)
            if any(r.state in keep or (r.state == "succeeded" and r.undoable and r.kind != "hint") for r in recs):
                continue
            for r in recs:
                self._actions.pop(r.action_id, None)
                if r.hint_id:
                    self._by_hint.pop(r.hint_id, None)
            del self._firings[fid]

    # ------------------------------------------------------------------ signals
    async def on_signal(self, call: CallInfo | Any, signal: Signal) -> list[ActionRecord]:
        """`call` is a `CallInfo` or any object with `call_id`/`agent_id` (the pipeline's
        call); queue and tier are then read from its metadata."""
        call = as_call_info(call)
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
        for kind, payload in entries:
            pid = payload.get("playbook_id")
            await self._audit(kind, call_id=call.call_id, agent_id=call.agent_id, playbook_id=pid,
                              playbook_version=payload.get("playbook_version"), payload=payload)  # fmt: skip
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
            except Exception as e:  # noqa: BLE001 - a key we cannot compute must not drop the firing
                key = f"<error {type(e).__name__}>"
            if key in st.dedupe.setdefault(pb.id, set()):
                return f"duplicate (key {key})"
        st.last_fired[pb.id] = now
        st.fired[pb.id] = st.fired.get(pb.id, 0) + 1
        if key is not None:
            st.dedupe[pb.id].add(key)
        return None

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

    async def _launch(self, pb: Playbook, recs: list[ActionRecord], why: dict[str, Any]) -> None:
        for r in recs:
            await self._audit("action_proposed", rec=r, payload={"kind": r.kind, "autonomy": r.autonomy,
                                                                 "firing_id": r.firing_id, "why": why})  # fmt: skip
        # a pause (kill switch) may land during any await below and cancel still-proposed
        # records: each step re-checks the state instead of assuming it
        if pb.autonomy == "auto":
            for r in recs:
                if r.state == "proposed":
                    await self._transition(r, "dispatched", "system")
                    await self._execute(r)
        elif pb.autonomy == "suggest":
            hints = [r for r in recs if isinstance(r.spec, HintAction)]
            others = [r for r in recs if not isinstance(r.spec, HintAction)]
            await self._transition_many([r for r in others if r.state == "proposed"], "suggested", "system")
            for r in hints:
                if r.state != "proposed":
                    continue
                r.hint_id = new_id("hint")
                self._by_hint[r.hint_id] = r.firing_id
                r.values["pending_action_ids"] = [o.action_id for o in others if o.state == "suggested"]
                await self._transition(r, "dispatched", "system")
                await self._execute(r)
        else:
            assert pb.approval is not None
            deadline = pb.approval.deadline_s
            recs = [r for r in recs if r.state == "proposed"]
            if not recs:
                return
            for r in recs:
                r.deadline_at = time.time() + deadline
            await self._transition_many(recs, "pending_approval", "system", deadline_s=deadline, role=pb.approval.role)
            await self.dispatcher.publish_to_supervisors({
                "type": "approval_request", "firing_id": recs[0].firing_id, "call_id": recs[0].call_id,
                "agent_id": recs[0].agent_id, "playbook_id": pb.id, "playbook_version": pb.version,
                "role": pb.approval.role, "deadline_s": deadline, "on_expiry": pb.approval.on_expiry,
                "why": why, "actions": [r.to_dict() for r in recs]})  # fmt: skip
            self._timers[recs[0].firing_id] = asyncio.create_task(self._expire_after(pb, recs[0].firing_id, deadline))

    async def _expire_after(self, pb: Playbook, firing_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self._timers.pop(firing_id, None)
        pending = [r for r in self._firing(firing_id) if r.state == "pending_approval"]
        if not pending:
            return
        assert pb.approval is not None
        policy = pb.approval.on_expiry
        await self._transition_many(pending, "expired", "system", on_expiry=policy)
        if policy == "run":
            for r in pending:
                if r.state == "expired":
                    await self._transition(r, "dispatched", "system", reason="approval_expired_run")
                    await self._execute(r)
        elif policy == "escalate":
            r0 = pending[0]
            esc = ActionRecord(action_id=new_id("act"), call_id=r0.call_id, agent_id=r0.agent_id,
                               playbook_id=pb.id, playbook_version=pb.version, autonomy="auto",
                               spec=EscalateAction(kind="escalate", role=pb.approval.escalate_to,
                                                   message=f"Approval for {pb.id} expired unanswered"),
                               values=dict(r0.values), signal_ids=list(r0.signal_ids), firing_id=firing_id)  # fmt: skip
            self._actions[esc.action_id] = esc
            self._firings[firing_id].append(esc.action_id)
            await self._audit("action_proposed", rec=esc, payload={"kind": "escalate", "reason": "approval_expired"})
            await self._transition(esc, "dispatched", "system")
            await self._execute(esc)

    def _firing(self, firing_id: str) -> list[ActionRecord]:
        return [self._actions[a] for a in self._firings.get(firing_id, [])]

    # ------------------------------------------------------------------ execution
    async def _execute(self, rec: ActionRecord) -> None:
        """Webhooks run as tasks (they can take seconds and can be cancelled in flight);
        local actions run inline so a hint reaches the agent without an extra loop turn and
        a firing's actions keep their order (pause recording *before* the hand-off)."""
        if rec.kind == "webhook":
            task = asyncio.create_task(self._run(rec))
            self._tasks[rec.action_id] = task
            task.add_done_callback(lambda _t, a=rec.action_id: self._tasks.pop(a, None))
        else:
            await self._run(rec)

    async def _run(self, rec: ActionRecord) -> None:
        try:
            result = await self.dispatcher.dispatch(rec)
        except asyncio.CancelledError:
            if rec.state == "dispatched":  # cancelled by shutdown, not by a human
                await self._transition(rec, "cancelled", "system", reason="shutdown")
            raise
        except Exception as e:  # noqa: BLE001 - any sink failure is an outcome to record
            rec.error = f"{type(e).__name__}: {e}"
            if rec.state == "dispatched":
                await self._transition(rec, "failed", "system", error=rec.error,
                                       attempts=getattr(e, "attempts", None), status=getattr(e, "status", None))  # fmt: skip
            return
        rec.result = result
        if rec.hint_id and rec.hint_id not in self._by_hint:
            self._by_hint[rec.hint_id] = rec.firing_id
        if rec.state == "dispatched":
            await self._transition(rec, "succeeded", "system", result=result)
        if isinstance(rec.spec, HintAction) and rec.hint_id:
            conf = rec.values.get("confidence")
            await self._audit("hint_shown", rec=rec, payload={
                "hint_id": rec.hint_id, "title": rec.spec.title, "severity": rec.spec.severity,
                "source": f"{rec.playbook_id}@{rec.playbook_version}", "signal_ids": rec.signal_ids,
                "intent": rec.values.get("signal_name") or None,
                "text": (rec.values.get("signal") or {}).get("text") or None,
                "confidence": float(conf) if isinstance(conf, (int, float)) and 0 <= conf <= 1 else None})  # fmt: skip

    async def _stop_inflight(self, rec: ActionRecord) -> None:
        task = self._tasks.pop(rec.action_id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------------ human control
    async def approve(self, action_id: str, user: str, note: str = "") -> list[ActionRecord]:
        """Approves the whole firing the action belongs to: its actions were proposed together."""
        recs = self._pending_group(action_id, "pending_approval")
        self._cancel_timer(recs[0].firing_id)
        await self._transition_many(recs, "approved", user, note=note)
        for r in recs:
            if r.state == "approved":  # not cancelled meanwhile
                await self._transition(r, "dispatched", user)
                await self._execute(r)
        return recs

    async def reject(self, action_id: str, user: str, reason: str = "") -> list[ActionRecord]:
        recs = self._pending_group(action_id, "pending_approval")
        self._cancel_timer(recs[0].firing_id)
        await self._transition_many(recs, "rejected", user, reason=reason)
        return recs

    async def cancel(self, action_id: str, user: str, reason: str = "") -> ActionRecord:
        rec = self.action(action_id)
        if rec.state in ("pending_approval", "suggested", "proposed", "approved"):
            await self._transition(rec, "cancelled", user, reason=reason)
            if not [r for r in self._firing(rec.firing_id) if r.state == "pending_approval"]:
                self._cancel_timer(rec.firing_id)
        elif rec.state == "dispatched":
            await self._transition(rec, "cancelled", user, reason=reason, in_flight=True)
            await self._stop_inflight(rec)
        else:
            hint = " (use rollback)" if rec.state == "succeeded" else ""
            raise InvalidTransition(f"action {action_id} is {rec.state}; cannot cancel{hint}")
        return rec

    async def rollback(self, action_id: str, user: str, reason: str = "") -> ActionRecord:
        rec = self.action(action_id)
        if rec.state != "succeeded":
            raise InvalidTransition(f"action {action_id} is {rec.state}; only a succeeded action can be rolled back")
        if not rec.undoable:
            raise InvalidTransition(f"action {action_id} ({rec.kind}) has no undo")
        with self._undoing(rec):
            try:
                undo = await self.dispatcher.undo(rec)
            except NotUndoable as e:
                raise InvalidTransition(str(e)) from None
            except Exception as e:
                await self._audit("rollback_failed", rec=rec, actor=user, payload={"error": f"{type(e).__name__}: {e}"})
                raise
            await self._transition(rec, "rolled_back", user, reason=reason, undo=undo)
        return rec

    @contextlib.contextmanager
    def _undoing(self, rec: ActionRecord) -> Iterator[None]:
        """One compensating call per action: a second rollback/override while the undo POST
        is in flight is refused instead of voiding the refund twice."""
        if rec.action_id in self._busy:
            raise InvalidTransition(f"action {rec.action_id} is already being rolled back or overridden")
        self._busy.add(rec.action_id)
        try:
            yield
        finally:
            self._busy.discard(rec.action_id)

    async def pause(self, playbook_id: str, user: str, call_id: str | None = None, reason: str = "") -> int:
        """Kill switch: no new firings from now on, and pending or in-flight work of the
        playbook (in that scope) is cancelled. Returns how many actions were cancelled."""
        pb = self._playbook(playbook_id)
        if call_id is None:
            self._paused.add(pb.id)
        else:
            self._calls.setdefault(call_id, _CallState(CallInfo(call_id, started_at=self.clock()))).paused.add(pb.id)
        n = 0
        for rec in self.actions(playbook_id=pb.id, call_id=call_id):
            if rec.state in ("pending_approval", "suggested", "proposed", "approved", "dispatched"):
                with contextlib.suppress(InvalidTransition):  # finished while we were cancelling others
                    await self.cancel(rec.action_id, user, reason=f"playbook paused: {reason}".rstrip(": "))
                    n += 1
        await self._audit("paused", call_id=call_id, playbook_id=pb.id, playbook_version=pb.version, actor=user,
                          payload={"scope": "call" if call_id else "global", "reason": reason, "cancelled": n})  # fmt: skip
        await self.dispatcher.publish_to_supervisors({"type": "playbook_paused", "playbook_id": pb.id,
                                                      "call_id": call_id, "by": user, "reason": reason})  # fmt: skip
        return n

    async def resume(self, playbook_id: str, user: str, call_id: str | None = None) -> None:
        pb = self._playbook(playbook_id)
        if call_id is None:
            self._paused.discard(pb.id)
            self.anomalies.reset(pb.id)
        elif call_id in self._calls:
            self._calls[call_id].paused.discard(pb.id)
        await self._audit("resumed", call_id=call_id, playbook_id=pb.id, playbook_version=pb.version, actor=user,
                          payload={"scope": "call" if call_id else "global"})  # fmt: skip
        await self.dispatcher.publish_to_supervisors({"type": "playbook_resumed", "playbook_id": pb.id,
                                                      "call_id": call_id, "by": user})  # fmt: skip

    async def override(
        self, user: str, replacement: dict[str, Any] | Action | None, *, action_id: str | None = None,
        call_id: str | None = None, reason: str = "",
    ) -> ActionRecord | None:  # fmt: skip
        """Replace a decision with the supervisor's own. The original is stopped (or undone if
        it ran and can be undone); `replacement` (an action spec, or None for a plain veto)
        then runs at once on the supervisor's authority."""
        if (action_id is None) == (call_id is None):
            raise ValueError("override needs exactly one of action_id or call_id")
        spec = None if replacement is None else (
            parse_action(replacement) if isinstance(replacement, dict) else replacement)  # fmt: skip
        orig = self.action(action_id) if action_id else None
        undone: dict[str, Any] | None = None
        if orig is not None:
            if orig.state in TERMINAL and orig.state != "succeeded" and orig.state != "failed":
                raise InvalidTransition(f"action {orig.action_id} is {orig.state}; nothing to override")
            if orig.state == "pending_approval":
                others = [r for r in self._firing(orig.firing_id) if r.state == "pending_approval" and r is not orig]
                if not others:
                    self._cancel_timer(orig.firing_id)
            was_in_flight = orig.state == "dispatched"
            with self._undoing(orig):
                if orig.state == "succeeded" and orig.undoable:
                    undone = await self.dispatcher.undo(orig)
                await self._transition(orig, "overridden", user, reason=reason, undone=undone)
            if was_in_flight:
                await self._stop_inflight(orig)
            for a in self.anomalies.record_override(orig.playbook_id):
                await self._anomaly(a)
        cid = orig.call_id if orig else call_id
        assert cid is not None
        st = self._calls.get(cid)
        new: ActionRecord | None = None
        if spec is not None:
            new = ActionRecord(action_id=new_id("act"), call_id=cid,
                               agent_id=orig.agent_id if orig else (st.info.agent_id if st else None),
                               playbook_id=orig.playbook_id if orig else HUMAN_PLAYBOOK,
                               playbook_version=orig.playbook_version if orig else 0, autonomy="human", spec=spec,
                               values=dict(orig.values) if orig else template_values({}, {"call_id": cid}),
                               signal_ids=list(orig.signal_ids) if orig else [], firing_id=new_id("fire"), actor=user)  # fmt: skip
            self._actions[new.action_id] = new
            self._firings[new.firing_id] = [new.action_id]
        await self._audit("override", call_id=cid, agent_id=orig.agent_id if orig else None,
                          playbook_id=orig.playbook_id if orig else HUMAN_PLAYBOOK,
                          playbook_version=orig.playbook_version if orig else None,
                          action_id=orig.action_id if orig else None, actor=user,
                          payload={"reason": reason, "replaced_by": new.action_id if new else None,
                                   "replacement": new.to_dict()["spec"] if new else None, "undone": undone})  # fmt: skip
        if new is not None:
            await self._audit("action_proposed", rec=new, actor=user, payload={"kind": new.kind, "override_of": action_id})
            await self._transition(new, "dispatched", user)
            await self._execute(new)
        return new

    async def feedback(
        self, hint_id: str, user: str, action: str, reason: str = "", correction: Any = None
    ) -> list[ActionRecord]:
        """The agent's verdict on a hint. Accepting a suggestion runs the actions it offered;
        dismissing or correcting it drops them. Feedback on hints that no playbook raised is
        still audited (it measures the fallback hints too) and returns []."""
        if action not in FEEDBACK_ACTIONS:
            raise ValueError(f"feedback action must be one of {', '.join(FEEDBACK_ACTIONS)}, got {action!r}")
        if not isinstance(hint_id, str) or not hint_id:
            raise ValueError("feedback needs a hint_id")
        # A dismissal should carry a reason and a correction its content, but the agent's choice
        # is acted on regardless; the gap is recorded so the KPI review can chase it.
        missing = (action == "dismissed" and not str(reason or "").strip()) or (
            action == "corrected" and correction in (None, ""))  # fmt: skip
        fid = self._by_hint.get(hint_id)
        recs = self._firing(fid) if fid else []
        hint_rec = next((r for r in recs if r.hint_id == hint_id), None)
        await self._audit("feedback", call_id=hint_rec.call_id if hint_rec else None,
                          agent_id=hint_rec.agent_id if hint_rec else None,
                          playbook_id=hint_rec.playbook_id if hint_rec else None,
                          playbook_version=hint_rec.playbook_version if hint_rec else None,
                          action_id=hint_rec.action_id if hint_rec else None, actor=user,
                          payload={"hint_id": hint_id, "action": action, "reason": reason or "", "correction": correction,
                                   **({"detail_missing": True} if missing else {})})  # fmt: skip
        if hint_rec is None:
            return []
        for a in self.anomalies.record_feedback(hint_rec.playbook_id, action):  # type: ignore[arg-type]
            await self._anomaly(a)
        changed = [r for r in recs if r.state == "suggested"]
        if action == "accepted":
            await self._transition_many(changed, "approved", user, via="agent_accept", hint_id=hint_id)
            for r in changed:
                if r.state == "approved":
                    await self._transition(r, "dispatched", user)
                    await self._execute(r)
        else:
            await self._transition_many(changed, "dismissed", user, reason=reason, correction=correction)
        return changed

    # ------------------------------------------------------------------ internals
    def _playbook(self, playbook_id: str) -> Playbook:
        try:
            return self.playbooks.get(playbook_id)
        except KeyError:
            raise UnknownAction(f"unknown playbook {playbook_id!r}") from None

    def _pending_group(self, action_id: str, state: str) -> list[ActionRecord]:
        rec = self.action(action_id)
        if rec.state != state:
            raise InvalidTransition(f"action {action_id} is {rec.state}, not {state}")
        return [r for r in self._firing(rec.firing_id) if r.state == state]

    def _cancel_timer(self, firing_id: str) -> None:
        t = self._timers.pop(firing_id, None)
        if t is not None:
            t.cancel()

    async def _anomaly(self, a: Anomaly) -> None:
        pb = self.playbooks.get(a.playbook_id)
        await self._audit("anomaly", playbook_id=pb.id, playbook_version=pb.version, payload=a.to_dict())
        await self.dispatcher.publish_to_supervisors({"type": "anomaly", **a.to_dict()})
        if a.auto_pause and pb.id not in self._paused:
            await self.pause(pb.id, "system:anomaly", reason=f"{a.metric} {a.value:.2f} > {a.bound}")

    async def _transition(self, rec: ActionRecord, new: str, actor: str, **payload: Any) -> None:
        await self._transition_many([rec], new, actor, **payload)

    async def _transition_many(self, recs: list[ActionRecord], new: str, actor: str, **payload: Any) -> None:
        """Check and switch every record *before* the first await, so two humans acting on
        the same firing at once cannot both win (the loser gets InvalidTransition)."""
        for rec in recs:
            if new not in _ALLOWED.get(rec.state, set()):
                raise InvalidTransition(f"action {rec.action_id}: {rec.state} -> {new} is not allowed")
        olds = []
        for rec in recs:
            olds.append(rec.state)
            rec.state = new  # type: ignore[assignment]
        for rec, old in zip(recs, olds, strict=True):
            await self._record(rec, old, new, actor, **payload)

    async def _record(self, rec: ActionRecord, old: str, new: str, actor: str, **payload: Any) -> None:
        if actor != "system":
            rec.actor = actor
        rec.history.append({"at": time.time(), "from": old, "to": new, "actor": actor,
                            **{k: v for k, v in payload.items() if v not in (None, "")}})  # fmt: skip
        await self._audit(f"action_{new}", rec=rec, actor=actor, payload={"from": old, "kind": rec.kind, **payload})
        await self.dispatcher.publish_to_supervisors({"type": "action_update", "action_id": rec.action_id,
                                                      "call_id": rec.call_id, "playbook_id": rec.playbook_id,
                                                      "kind": rec.kind, "state": new, "from": old, "actor": actor})  # fmt: skip

    async def _audit(self, kind: str, *, rec: ActionRecord | None = None, call_id: str | None = None,
                     agent_id: str | None = None, playbook_id: str | None = None,
                     playbook_version: int | str | None = None, action_id: str | None = None,
                     actor: str = "system", payload: dict[str, Any] | None = None) -> None:  # fmt: skip
        if rec is not None:
            call_id, agent_id, action_id = rec.call_id, rec.agent_id, rec.action_id
            playbook_id, playbook_version = rec.playbook_id, rec.playbook_version
        body = _jsonable(payload or {})
        try:
            try:
                await self.audit.append(kind, call_id=call_id, agent_id=agent_id, playbook_id=playbook_id,
                                        playbook_version=playbook_version, action_id=action_id, actor=actor,
                                        payload=body)  # fmt: skip
            except SensitiveDataError:
                # an upstream masker missed a card/account number: keep the step, lose the digits
                await self.audit.append(kind, call_id=call_id, agent_id=agent_id, playbook_id=playbook_id,
                                        playbook_version=playbook_version, action_id=action_id, actor=actor,
                                        payload={**_scrub(body), "scrubbed": True})  # fmt: skip
        except Exception:
            log.exception("audit append failed for %s (call %s, action %s)", kind, call_id, action_id)


def as_call_info(call: Any) -> CallInfo:
    if isinstance(call, CallInfo):
        return call
    meta = getattr(call, "metadata", None)
    if not isinstance(meta, dict):
        ctx = getattr(call, "ctx", None)
        meta = getattr(ctx, "metadata", None) if ctx is not None else None
    meta = dict(meta) if isinstance(meta, dict) else {}
    call_id = getattr(call, "call_id", None)
    if not isinstance(call_id, str) or not call_id:
        raise TypeError(f"call must be a CallInfo or have a string call_id, got {type(call).__name__}")
    return CallInfo(call_id=call_id, agent_id=getattr(call, "agent_id", None),
                    queue=getattr(call, "queue", None) or meta.get("queue"),
                    tier=getattr(call, "tier", None) or meta.get("tier") or meta.get("customer_tier"),
                    started_at=getattr(call, "started_wall", None) or getattr(call, "started_at", None), metadata=meta)  # fmt: skip


def template_values(signal: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
    """Flat names for `$placeholders` in hint/alert text, and the signal for webhook payloads."""
    v: dict[str, Any] = {
        "signal_kind": signal.get("kind", ""), "signal_name": signal.get("name", ""),
        "confidence": signal.get("confidence", ""),
        **{f"call_{k}": ("" if call.get(k) is None else call.get(k))
           for k in ("call_id", "agent_id", "queue", "tier", "seconds_in_call")},
        "signal": {k: signal.get(k) for k in ("signal_id", "kind", "name", "confidence", "attrs", "text")} if signal else None,
    }  # fmt: skip
    v["call_id"] = v.pop("call_call_id")
    for k, val in (signal.get("attrs") or {}).items():
        if isinstance(k, str) and k.isidentifier():
            v[f"attr_{k}"] = val
    return v


_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){12,}")


def _scrub(v: Any) -> Any:
    if isinstance(v, str):
        return _DIGIT_RUN.sub("[redacted-digits]", v)
    if isinstance(v, dict):
        return {k: _scrub(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_scrub(x) for x in v]
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)
