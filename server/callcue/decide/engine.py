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
import time
from typing import Any

from callcue.decide.actions.kinds import ACTION_KINDS
from callcue.decide.actions.record import ActionRecord
from callcue.decide.control import HumanControl
from callcue.decide.gating import Gating
from callcue.decide.state import (
    FEEDBACK_ACTIONS,
    HUMAN_PLAYBOOK,
    AuditSink,
    AuditUnavailable,
    CallInfo,
    DecisionError,
    InvalidTransition,
    UnknownAction,
    _CallState,
    template_values,
)

log = logging.getLogger(__name__)

__all__ = ["FEEDBACK_ACTIONS", "HUMAN_PLAYBOOK", "AuditSink", "AuditUnavailable", "CallInfo", "DecisionEngine", "DecisionError",
           "InvalidTransition", "UnknownAction", "template_values"]


class DecisionEngine(Gating, HumanControl):
    """Signals in (`on_signal`), governed actions out, humans always in charge."""

    async def restore(self) -> list[str]:
        """Re-apply global pauses from the audit log after a restart, so a kill switch thrown
        yesterday is still thrown, and bring back approvals still pending with their
        deadlines. Returns the playbooks now paused."""
        it = getattr(self.audit, "iter_entries", None)
        if it is None:
            return sorted(self._paused)
        state = await self._pause_switches(it(kind=["paused", "resumed"]), None)
        for pid, paused in state.items():
            (self._paused.add if paused else self._paused.discard)(pid)
        await self._restore_pending(it)
        return sorted(self._paused)

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
            if e.kind != "action_pending_approval" or p is None or aid in self._actions or "spec" not in p.payload:
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
            self._actions[aid] = rec
            firings.setdefault(rec.firing_id, []).append(rec)
        for fid, recs in firings.items():
            self._firings[fid] = [r.action_id for r in recs]
            pb = self.playbooks.get(recs[0].playbook_id)
            left = max(0.0, (recs[0].deadline_at or now) - now)
            self._timers[fid] = asyncio.create_task(self._expire_after(pb, fid, left))
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
            self._calls.setdefault(call_id, _CallState(CallInfo(call_id, started_at=self.clock()))).paused |= paused
        before = len(self._actions)
        await self._restore_pending(lambda **kw: it(call_id=call_id, **kw))
        return len(self._actions) - before

    def forget_call(self, call_id: str) -> None:
        """The call goes on on another node, which restores its pending decisions from the
        audit log: drop them here without a state change (no timer may expire them twice)."""
        for fid in [f for f, ids in self._firings.items() if ids and self._actions[ids[0]].call_id == call_id]:
            t = self._timers.pop(fid, None)
            if t:
                t.cancel()
            for aid in self._firings.pop(fid):
                rec = self._actions.pop(aid, None)
                if rec is not None and rec.hint_id:
                    self._by_hint.pop(rec.hint_id, None)
        self._calls.pop(call_id, None)

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

