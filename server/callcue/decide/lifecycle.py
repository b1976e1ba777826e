"""The action state machine: launch a firing by autonomy, wait for approval deadlines,
execute, and record every transition (audit + supervisor event) as it happens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from callcue.decide.actions.escalate import EscalateAction
from callcue.decide.actions.kinds import ACTION_KINDS
from callcue.decide.actions.record import ActionRecord
from callcue.decide.anomalies import Anomaly
from callcue.decide.playbooks import Playbook
from callcue.decide.state import (
    _ALLOWED,
    AuditUnavailable,
    EngineState,
    InvalidTransition,
)
from callcue.events import new_id

log = logging.getLogger(__name__)


class Lifecycle(EngineState):
    async def _launch(self, pb: Playbook, recs: list[ActionRecord], why: dict[str, Any]) -> None:
        for r in recs:
            # the record in full (spec, values, signals), so a pending approval can be rebuilt
            # from the audit trail after a restart
            await self._audit("action_proposed", rec=r, payload={"kind": r.kind, "autonomy": r.autonomy,
                                                                 "firing_id": r.firing_id, "why": why,
                                                                 "spec": ACTION_KINDS.dump(r.spec), "values": r.values,
                                                                 "signal_ids": list(r.signal_ids)})  # fmt: skip
        # a pause (kill switch) may land during any await below and cancel still-proposed
        # records: each step re-checks the state instead of assuming it
        if pb.autonomy == "auto":
            for r in recs:
                if r.state == "proposed":
                    await self._transition(r, "dispatched", "system")
                    await self._execute(r)
        elif pb.autonomy == "suggest":
            hints = [r for r in recs if r.presents_to_agent]
            others = [r for r in recs if not r.presents_to_agent]
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
            await self._transition_many(recs, "pending_approval", "system", deadline_s=deadline, role=pb.approval.role,
                                        deadline_at=recs[0].deadline_at)  # fmt: skip
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

    # ------------------------------------------------------------------ execution
    async def _execute(self, rec: ActionRecord) -> None:
        """Webhooks run as tasks (they can take seconds and can be cancelled in flight);
        local actions run inline so a hint reaches the agent without an extra loop turn and
        a firing's actions keep their order (pause recording *before* the hand-off)."""
        if rec.kind == "webhook":
            task = asyncio.create_task(self._run(rec))
            self._tasks[rec.action_id] = task
            def forget(_t: asyncio.Task[Any], action_id: str = rec.action_id) -> None:
                self._tasks.pop(action_id, None)

            task.add_done_callback(forget)
        else:
            await self._run(rec)

    async def _run(self, rec: ActionRecord) -> None:
        try:
            result = await self.dispatcher.dispatch(rec)
        except asyncio.CancelledError:
            if rec.state == "dispatched":  # cancelled by shutdown, not by a human
                await self._transition(rec, "cancelled", "system", reason="shutdown")
            raise
        except Exception as e:
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
        if rec.shown is not None:
            # written from the very Hint the agent was sent (and the Sink stored)
            h = rec.shown
            conf = rec.values.get("confidence")
            await self._audit("hint_shown", rec=rec, payload={
                **h.audit_fields(),
                "intent": rec.values.get("signal_name") or None,
                "text": (rec.values.get("signal") or {}).get("text") or None,
                "confidence": float(conf) if isinstance(conf, (int, float)) and 0 <= conf <= 1 else None})  # fmt: skip

    async def _stop_inflight(self, rec: ActionRecord) -> None:
        task = self._tasks.pop(rec.action_id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

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
        await self._audit(f"action_{new}", rec=rec, actor=actor, payload={"from": old, "kind": rec.kind, **payload})
        await self.dispatcher.publish_to_supervisors({"type": "action_update", "action_id": rec.action_id,
                                                      "call_id": rec.call_id, "playbook_id": rec.playbook_id,
                                                      "kind": rec.kind, "state": new, "from": old, "actor": actor})  # fmt: skip

