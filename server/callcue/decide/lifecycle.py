"""The action state machine: launch a firing by autonomy, wait for approval deadlines,
execute, and record every transition (audit + supervisor event) as it happens."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from callcue.decide.actions.dispatcher import ActionDispatcher
from callcue.decide.actions.escalate import EscalateAction
from callcue.decide.actions.kinds import ACTION_KINDS
from callcue.decide.actions.record import ActionRecord
from callcue.decide.playbooks import Playbook
from callcue.decide.records import ActionBook
from callcue.decide.state import _ALLOWED, AuditUnavailable, InvalidTransition
from callcue.decide.trail import DecisionTrail
from callcue.events import new_id

log = logging.getLogger(__name__)

#: runs a step of a call's decisions in that call's stream (see DecisionEngine `enter`)
Enter = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]


async def run_here(call_id: str, step: Callable[[], Awaitable[Any]]) -> Any:
    return await step()


class Lifecycle:
    def __init__(
        self, book: ActionBook, trail: DecisionTrail, dispatcher: ActionDispatcher, enter: Enter = run_here
    ) -> None:
        self.book = book
        self.trail = trail
        self.dispatcher = dispatcher
        self.enter = enter
        self.tasks: dict[str, asyncio.Task[None]] = {}  # action_id -> in-flight execution
        self.timers: dict[str, asyncio.Task[None]] = {}  # firing_id -> approval deadline

    async def launch(self, pb: Playbook, recs: list[ActionRecord], why: dict[str, Any]) -> None:
        for r in recs:
            # the record in full (spec, values, signals), so a pending approval can be rebuilt
            # from the audit trail after a restart
            await self.trail("action_proposed", rec=r, payload={"kind": r.kind, "autonomy": r.autonomy,
                                                                "firing_id": r.firing_id, "why": why,
                                                                "spec": ACTION_KINDS.dump(r.spec), "values": r.values,
                                                                "signal_ids": list(r.signal_ids)})  # fmt: skip
        # a pause (kill switch) may land during any await below and cancel still-proposed
        # records: each step re-checks the state instead of assuming it
        if pb.autonomy == "auto":
            for r in recs:
                if r.state == "proposed":
                    await self.dispatch(r, "system")
        elif pb.autonomy == "suggest":
            hints = [r for r in recs if r.presents_to_agent]
            others = [r for r in recs if not r.presents_to_agent]
            await self.transition_many([r for r in others if r.state == "proposed"], "suggested", "system")
            for r in hints:
                if r.state != "proposed":
                    continue
                r.hint_id = new_id("hint")
                self.book.link_hint(r.hint_id, r.firing_id)
                r.values["pending_action_ids"] = [o.action_id for o in others if o.state == "suggested"]
                await self.dispatch(r, "system")
        else:
            assert pb.approval is not None
            deadline = pb.approval.deadline_s
            recs = [r for r in recs if r.state == "proposed"]
            if not recs:
                return
            for r in recs:
                r.deadline_at = time.time() + deadline
            await self.transition_many(recs, "pending_approval", "system", deadline_s=deadline, role=pb.approval.role,
                                       deadline_at=recs[0].deadline_at)  # fmt: skip
            await self.dispatcher.publish_to_supervisors({
                "type": "approval_request", "firing_id": recs[0].firing_id, "call_id": recs[0].call_id,
                "agent_id": recs[0].agent_id, "playbook_id": pb.id, "playbook_version": pb.version,
                "role": pb.approval.role, "deadline_s": deadline, "on_expiry": pb.approval.on_expiry,
                "why": why, "actions": [r.to_dict() for r in recs]})  # fmt: skip
            self.start_timer(pb, recs[0], deadline)

    def start_timer(self, pb: Playbook, rec: ActionRecord, delay: float) -> None:
        """The approval deadline; when it passes, the expiry enters the call's stream."""
        fid = rec.firing_id

        async def expire() -> None:
            await asyncio.sleep(delay)
            self.timers.pop(fid, None)
            await self.enter(rec.call_id, lambda: self._expire(pb, fid))

        self.timers[fid] = asyncio.create_task(expire())

    def cancel_timer(self, firing_id: str) -> None:
        t = self.timers.pop(firing_id, None)
        if t is not None:
            t.cancel()

    async def _expire(self, pb: Playbook, firing_id: str) -> None:
        pending = [r for r in self.book.firing(firing_id) if r.state == "pending_approval"]
        if not pending:
            return
        assert pb.approval is not None
        policy = pb.approval.on_expiry
        await self.transition_many(pending, "expired", "system", on_expiry=policy)
        if policy == "run":
            for r in pending:
                if r.state == "expired":
                    await self.dispatch(r, "system", reason="approval_expired_run")
        elif policy == "escalate":
            r0 = pending[0]
            esc = ActionRecord(action_id=new_id("act"), call_id=r0.call_id, agent_id=r0.agent_id,
                               playbook_id=pb.id, playbook_version=pb.version, autonomy="auto",
                               spec=EscalateAction(kind="escalate", role=pb.approval.escalate_to,
                                                   message=f"Approval for {pb.id} expired unanswered"),
                               values=dict(r0.values), signal_ids=list(r0.signal_ids), firing_id=firing_id)  # fmt: skip
            self.book.add([esc])
            await self.trail("action_proposed", rec=esc, payload={"kind": "escalate", "reason": "approval_expired"})
            await self.dispatch(esc, "system")

    # ------------------------------------------------------------------ execution
    async def dispatch(self, rec: ActionRecord, actor: str, **payload: Any) -> None:
        await self.transition(rec, "dispatched", actor, **payload)
        await self.execute(rec)

    async def execute(self, rec: ActionRecord) -> None:
        """Webhooks run as tasks (they can take seconds and can be cancelled in flight);
        local actions run inline so a hint reaches the agent without an extra loop turn and
        a firing's actions keep their order (pause recording *before* the hand-off)."""
        if rec.kind == "webhook":
            # outside the call's stream (an empty context): the POST must not hold the call's
            # decisions up; its outcome enters the stream again when it is known
            task = asyncio.create_task(self._run(rec, settle_in_call=True), context=contextvars.Context())
            self.tasks[rec.action_id] = task

            def forget(_t: asyncio.Task[Any], action_id: str = rec.action_id) -> None:
                self.tasks.pop(action_id, None)

            task.add_done_callback(forget)
        else:
            await self._run(rec)

    async def _run(self, rec: ActionRecord, settle_in_call: bool = False) -> None:
        card = ACTION_KINDS.get(rec.kind).card(rec)
        if card is not None:
            # one order for every hint: its entry first, then the Sink stores and shows it
            rec.shown = card
            await self.trail("hint_shown", rec=rec, payload=hint_shown_payload(card, rec.values))
        try:
            result = await self.dispatcher.dispatch(rec)
        except asyncio.CancelledError:
            if rec.state == "dispatched":  # cancelled by shutdown, not by a human
                await self.transition(rec, "cancelled", "system", reason="shutdown")
            raise
        except Exception as e:
            rec.error = f"{type(e).__name__}: {e}"
            failed = {"error": rec.error, "attempts": getattr(e, "attempts", None), "status": getattr(e, "status", None)}
            await self._settle(rec, "failed", failed, settle_in_call)
            return
        rec.result = result
        if rec.hint_id:
            self.book.link_hint(rec.hint_id, rec.firing_id)
        await self._settle(rec, "succeeded", {"result": result}, settle_in_call)

    async def _settle(self, rec: ActionRecord, outcome: str, payload: dict[str, Any], in_call: bool) -> None:
        async def record() -> None:
            if rec.state == "dispatched":  # not cancelled or overridden meanwhile
                await self.transition(rec, outcome, "system", **payload)

        await (self.enter(rec.call_id, record) if in_call else record())

    async def stop_inflight(self, rec: ActionRecord) -> None:
        task = self.tasks.pop(rec.action_id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def transition(self, rec: ActionRecord, new: str, actor: str, **payload: Any) -> None:
        await self.transition_many([rec], new, actor, **payload)

    async def transition_many(self, recs: list[ActionRecord], new: str, actor: str, **payload: Any) -> None:
        """Check and switch every record *before* the first await, so two humans acting on
        the same firing at once cannot both win (the loser gets InvalidTransition)."""
        for rec in recs:
            if new not in _ALLOWED.get(rec.state, set()):
                raise InvalidTransition(f"action {rec.action_id}: {rec.state} -> {new} is not allowed")
        olds = []
        for rec in recs:
            olds.append(rec.state)
            rec.state = new  # type: ignore[assignment]
        for i, (rec, old) in enumerate(zip(recs, olds, strict=True)):
            try:
                await self._record(rec, old, new, actor, **payload)
            except AuditUnavailable:
                # not audited, so not happened: this and the later records keep their state
                for r, o in zip(recs[i:], olds[i:], strict=True):
                    r.state = o
                raise

    async def _record(self, rec: ActionRecord, old: str, new: str, actor: str, **payload: Any) -> None:
        if actor != "system":
            rec.actor = actor
        rec.history.append({"at": time.time(), "from": old, "to": new, "actor": actor,
                            **{k: v for k, v in payload.items() if v not in (None, "")}})  # fmt: skip
        await self.trail(f"action_{new}", rec=rec, actor=actor, payload={"from": old, "kind": rec.kind, **payload})
        await self.dispatcher.publish_to_supervisors({"type": "action_update", "action_id": rec.action_id,
                                                      "call_id": rec.call_id, "playbook_id": rec.playbook_id,
                                                      "kind": rec.kind, "state": new, "from": old, "actor": actor})  # fmt: skip

    async def close(self) -> None:
        for t in list(self.timers.values()) + list(self.tasks.values()):
            t.cancel()
        await asyncio.gather(*self.timers.values(), *self.tasks.values(), return_exceptions=True)

    async def drain(self) -> None:
        """Wait for in-flight executions (tests, graceful shutdown)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks.values()), return_exceptions=True)


def hint_shown_payload(h: Any, values: dict[str, Any]) -> dict[str, Any]:
    """A `hint_shown` entry: the hint as sent, and the signal behind it (what KPIs read)."""
    conf = values.get("confidence")
    return {**h.audit_fields(), "intent": values.get("signal_name") or None,
            "text": (values.get("signal") or {}).get("text") or None,
            "confidence": float(conf) if isinstance(conf, (int, float)) and 0 <= conf <= 1 else None}  # fmt: skip
