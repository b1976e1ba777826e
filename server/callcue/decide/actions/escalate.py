"""Hand the call to a queue or role (a manager, a retention desk); supervisors are told."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import model_validator

from callcue.decide.actions.base import (
    ActionKind,
    ActionPorts,
    ActionSpec,
    plain,
    render,
)

if TYPE_CHECKING:
    from callcue.decide.actions.record import ActionRecord


class EscalateAction(ActionSpec):
    kind: Literal["escalate"]
    queue: str | None = None
    role: str | None = None
    message: str = ""

    @model_validator(mode="after")
    def _target(self) -> EscalateAction:
        if not self.queue and not self.role:
            raise ValueError("escalate needs a 'queue' or a 'role'")
        return self


class EscalateKind(ActionKind):
    name = "escalate"
    spec = EscalateAction

    async def run(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        s = rec.spec
        assert isinstance(s, EscalateAction)
        target = {"queue": s.queue, "role": s.role, "message": render(s.message, rec.values),
                  "agent_id": rec.agent_id, "playbook_id": rec.playbook_id, "action_id": rec.action_id}  # fmt: skip
        out = await ports.escalate(rec.call_id, target)
        await ports.publish_to_supervisors({"type": "escalation", "call_id": rec.call_id, **target})
        return {"escalated_to": {"queue": s.queue, "role": s.role}, "hook_result": plain(out)}


KIND = EscalateKind()
