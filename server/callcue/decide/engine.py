"""The decision engine: signals in, governed actions out, humans always in charge.

Per signal it finds the playbooks that apply, checks confidence, condition, pauses, cooldown
and de-duplication, and turns a match into a *firing*: the playbook's actions as records
that then run (auto), wait for the agent (suggest) or wait for a supervisor (approve, with a
deadline). Supervisors and agents can approve, reject, pause, cancel, roll back, override and
give feedback at any time; each of those is a state change of a record, and every state
change is written to the audit log so that any hint or webhook can be explained afterwards.

The engine is composed of small parts with their own state: `ActionBook` (records and
firings), `Switches` (pauses and per-call guardrails), `DecisionTrail` (fail-closed audit),
`Lifecycle` (the state machine), `Gating` (signal -> firing) and `HumanControl` (commands).
This class builds them and is the one interface the rest of the server uses.

Every step for a live call runs in that call's stream: a signal arrives there already, and
a supervisor command or an approval deadline is handed to `enter`, which the server routes
into the call's input (pipeline/manager.py). So a call's decisions never interleave, and
what they produce leaves through the call's pipeline to the Sink.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from callcue.decide.actions.base import ActionSpec
from callcue.decide.actions.dispatcher import ActionDispatcher
from callcue.decide.actions.kinds import ACTION_KINDS
from callcue.decide.actions.record import ActionRecord
from callcue.decide.anomalies import AnomalyMonitor
from callcue.decide.control import HumanControl
from callcue.decide.gating import Gating
from callcue.decide.lifecycle import Enter, Lifecycle, run_here
from callcue.decide.playbooks import Playbook, PlaybookSet
from callcue.decide.records import ActionBook
from callcue.decide.state import (
    FEEDBACK_ACTIONS,
    HUMAN_PLAYBOOK,
    AuditSink,
    AuditUnavailable,
    CallInfo,
    DecisionError,
    InvalidTransition,
    UnknownAction,
    template_values,
)
from callcue.decide.switches import Switches
from callcue.decide.trail import DecisionTrail
from callcue.events import Signal

log = logging.getLogger(__name__)

__all__ = [
    "FEEDBACK_ACTIONS",
    "HUMAN_PLAYBOOK",
    "AuditSink",
    "AuditUnavailable",
    "CallInfo",
    "DecisionEngine",
    "DecisionError",
    "InvalidTransition",
    "UnknownAction",
    "template_values",
]


class DecisionEngine:
    """Signals in (`on_signal`), governed actions out, humans always in charge."""

    def __init__(self, playbooks: PlaybookSet, audit: AuditSink, dispatcher: ActionDispatcher,
                 clock: Callable[[], float] = time.time, learning: Any = None, enter: Enter = run_here) -> None:  # fmt: skip
        """`enter(call_id, step)` runs a step in the call's stream (default: at once)."""
        self.playbooks = playbooks
        self.audit = audit
        self.dispatcher = dispatcher
        self.clock = clock
        self.learning = learning
        self.enter = enter
        self.anomalies = AnomalyMonitor({p.id: p.anomaly for p in playbooks}, clock)
        self.book = ActionBook()
        self.switches = Switches(playbooks, clock)
        self.trail = DecisionTrail(audit, lambda event: self.dispatcher.publish_to_supervisors(event))
        self.lifecycle = Lifecycle(self.book, self.trail, dispatcher, enter)
        self.control = HumanControl(playbooks, self.switches, self.book, self.lifecycle, self.anomalies)
        self.gating = Gating(playbooks, self.switches, self.book, self.trail, self.lifecycle, self.anomalies,
                             self.control.on_anomaly, clock, learning)  # fmt: skip

    # ------------------------------------------------------------------ queries
    def action(self, action_id: str) -> ActionRecord:
        return self.book.get(action_id)

    def actions(self, *, state: str | None = None, call_id: str | None = None,
                playbook_id: str | None = None) -> list[ActionRecord]:  # fmt: skip
        return self.book.select(state=state, call_id=call_id, playbook_id=playbook_id)

    def playbook(self, playbook_id: str) -> Playbook:
        return self.control.playbook(playbook_id)

    def is_paused(self, playbook_id: str, call_id: str | None = None) -> bool:
        return self.switches.is_paused(playbook_id, call_id)

    def refresh_shadows(self, playbook_id: str) -> None:
        self.gating.refresh_shadows(playbook_id)

    def playbook_status(self) -> list[dict[str, Any]]:
        return [{"id": p.id, "version": p.version, "description": p.description, "autonomy": p.autonomy,
                 "paused": p.id in self.switches.paused, "paused_calls": self.switches.paused_calls(p.id),
                 "stats": self.anomalies.rates(p.id)} for p in self.playbooks]  # fmt: skip

    # ------------------------------------------------------------------ the call's own stream
    async def on_signal(self, call: CallInfo, signal: Signal) -> list[ActionRecord]:
        """`call` says what playbooks may look at (the pipeline builds it from the call's
        start metadata with `CallInfo.from_metadata`). Runs in the call's stream already."""
        return await self.gating.on_signal(call, signal)

    def start_call(self, info: CallInfo) -> None:
        self.switches.start_call(info)

    async def on_call_end(self, call_id: str) -> None:
        """Pending decisions die with the call; executed ones (webhooks sent) stay as they are."""
        st = self.switches.end_call(call_id)
        for rec in self.book.select(call_id=call_id):
            if rec.state in ("pending_approval", "suggested", "proposed"):
                try:
                    await self.lifecycle.transition(rec, "cancelled", "system", reason="call_ended")
                except InvalidTransition:
                    pass
        for fid in self.book.firings_of(call_id):
            self.lifecycle.cancel_timer(fid)
        await self.trail("call_ended", call_id=call_id, agent_id=st.info.agent_id if st else None,
                         payload={"signals": len(st.signals) if st else 0})  # fmt: skip
        self.book.forget_finished(call_id)

    # ------------------------------------------------------------------ humans: each enters the call's stream
    def _in_call(self, call_id: str | None, step: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
        return self.enter(call_id, step) if call_id else step()

    def _call_of(self, action_id: str) -> str:
        return self.book.get(action_id).call_id

    async def approve(self, action_id: str, user: str, note: str = "") -> list[ActionRecord]:
        """Approves the whole firing the action belongs to: its actions were proposed together."""
        return await self._in_call(self._call_of(action_id), lambda: self.control.approve(action_id, user, note))

    async def reject(self, action_id: str, user: str, reason: str = "") -> list[ActionRecord]:
        return await self._in_call(self._call_of(action_id), lambda: self.control.reject(action_id, user, reason))

    async def cancel(self, action_id: str, user: str, reason: str = "") -> ActionRecord:
        return await self._in_call(self._call_of(action_id), lambda: self.control.cancel(action_id, user, reason))

    async def rollback(self, action_id: str, user: str, reason: str = "") -> ActionRecord:
        return await self._in_call(self._call_of(action_id), lambda: self.control.rollback(action_id, user, reason))

    async def pause(self, playbook_id: str, user: str, call_id: str | None = None, reason: str = "") -> int:
        """Kill switch: no new firings from now on, and pending or in-flight work of the
        playbook (in that scope) is cancelled. Returns how many actions were cancelled. A
        global pause takes effect at once, outside any one call."""
        return await self._in_call(call_id, lambda: self.control.pause(playbook_id, user, call_id, reason))

    async def mirror_pause(self, playbook_id: str, user: str, paused: bool, reason: str = "") -> int:
        return await self.control.mirror_pause(playbook_id, user, paused, reason)

    async def resume(self, playbook_id: str, user: str, call_id: str | None = None) -> None:
        await self._in_call(call_id, lambda: self.control.resume(playbook_id, user, call_id))

    async def override(self, user: str, replacement: dict[str, Any] | ActionSpec | None, *, action_id: str | None = None,
                       call_id: str | None = None, reason: str = "") -> ActionRecord | None:  # fmt: skip
        """Replace a decision with the supervisor's own (control.py)."""
        cid = self._call_of(action_id) if action_id else call_id
        return await self._in_call(
            cid,
            lambda: self.control.override(
                user, replacement, action_id=action_id, call_id=call_id, reason=reason
            ),
        )

    async def feedback(self, hint_id: str, user: str, action: str, reason: str = "", correction: Any = None, *,
                       call_id: str | None = None, agent_id: str | None = None) -> list[ActionRecord]:  # fmt: skip
        recs = self.book.by_hint(hint_id) if isinstance(hint_id, str) else []
        cid = recs[0].call_id if recs else call_id
        return await self._in_call(
            cid,
            lambda: self.control.feedback(
                hint_id, user, action, reason, correction, call_id=call_id, agent_id=agent_id
            ),
        )

    # ------------------------------------------------------------------ restarts and hand-overs
    async def restore(self) -> list[str]:
        """Re-apply global pauses from the audit log after a restart, so a kill switch thrown
        yesterday is still thrown, and bring back approvals still pending with their
        deadlines. Returns the playbooks now paused."""
        it = getattr(self.audit, "iter_entries", None)
        if it is None:
            return sorted(self.switches.paused)
        state = await self._pause_switches(it(kind=["paused", "resumed"]), None)
        for pid, paused in state.items():
            self.switches.set_paused(pid, paused)
        await self._restore_pending(it)
        return sorted(self.switches.paused)

    async def _pause_switches(self, entries: Any, call_id: str | None) -> dict[str, bool]:
        """The last pause/resume of each loaded playbook in one scope (global: `call_id` None)."""
        state: dict[str, bool] = {}
        async for e in entries:
            if e.call_id == call_id and e.playbook_id in self.playbooks:
                state[e.playbook_id] = e.kind == "paused"
        return state

    async def _restore_pending(self, it: Any) -> None:
        """Approvals are at most an hour long: the last two hours of action entries say which
        ones were still waiting when the server stopped."""
        proposed: dict[str, Any] = {}
        last: dict[str, Any] = {}
        async for e in it(kind=[f"action_{s}" for s in ("proposed", "pending_approval", "approved", "rejected", "expired",
                                                          "cancelled", "overridden", "dispatched")],
                          since=time.time() - 2 * 3600):  # fmt: skip
            if e.action_id is None:
                continue
            if e.kind == "action_proposed":
                proposed[e.action_id] = e
            last[e.action_id] = e
        now = time.time()  # deadlines are wall-clock times (set in Lifecycle._launch)
        firings: dict[str, list[ActionRecord]] = {}
        for aid, e in last.items():
            p = proposed.get(aid)
            if e.kind != "action_pending_approval" or p is None or aid in self.book or "spec" not in p.payload:
                continue
            if p.playbook_id not in self.playbooks:
                log.warning("pending approval %s names playbook %s, which is no longer loaded", aid, p.playbook_id)
                continue
            try:
                spec = ACTION_KINDS.parse(p.payload["spec"])
            except Exception:
                log.warning("pending approval %s has an action kind this server cannot run", aid)
                continue
            rec = ActionRecord(action_id=aid, call_id=p.call_id or "", agent_id=p.agent_id, playbook_id=p.playbook_id,
                               playbook_version=int(p.playbook_version or 0), autonomy=p.payload.get("autonomy", "approve"),
                               spec=spec, values=dict(p.payload.get("values") or {}),
                               signal_ids=list(p.payload.get("signal_ids") or []), firing_id=p.payload.get("firing_id", aid),
                               state="pending_approval", created_at=p.ts,
                               deadline_at=e.payload.get("deadline_at") or e.ts + float(e.payload.get("deadline_s") or 0))  # fmt: skip
            firings.setdefault(rec.firing_id, []).append(rec)
        for fid, recs in firings.items():
            self.book.add(recs)
            pb = self.playbooks.get(recs[0].playbook_id)
            left = max(0.0, (recs[0].deadline_at or now) - now)
            self.lifecycle.start_timer(pb, recs[0], left)
            log.info("restored %d pending approval(s) of firing %s; deadline in %.0f s", len(recs), fid, left)

    async def restore_call(self, call_id: str) -> int:
        """A call this node took over from another cluster node: bring back its per-call pause
        switches and its approvals still pending (with their deadlines), both from the shared
        audit log. Returns how many approvals came back."""
        it = getattr(self.audit, "iter_entries", None)
        if it is None:
            return 0
        state = await self._pause_switches(it(call_id=call_id, kind=["paused", "resumed"]), call_id)
        paused = {pid for pid, on in state.items() if on}
        if paused:
            self.switches.call_state(call_id).paused |= paused
        before = len(self.book)
        await self._restore_pending(lambda **kw: it(call_id=call_id, **kw))
        return len(self.book) - before

    def forget_call(self, call_id: str) -> None:
        """The call goes on on another node, which restores its pending decisions from the
        audit log: drop them here without a state change (no timer may expire them twice)."""
        for fid in self.book.firings_of(call_id):
            self.lifecycle.cancel_timer(fid)
            self.book.drop(self.book.firing(fid))
        self.switches.end_call(call_id)

    async def drain(self) -> None:
        """Wait for in-flight executions (tests, graceful shutdown)."""
        await self.lifecycle.drain()

    async def close(self) -> None:
        await self.lifecycle.close()
