"""A message on every supervisor console; supervisors have seen it, so it has no undo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from callcue.decide.actions.base import ActionKind, ActionPorts, ActionSpec, render
from callcue.events import new_id

if TYPE_CHECKING:
    from callcue.decide.actions.record import ActionRecord


class AlertAction(ActionSpec):
    kind: Literal["alert"]
    message: str = Field(min_length=1)
    severity: Literal["info", "warning", "critical"] = "warning"


class AlertKind(ActionKind):
    name = "alert"
    spec = AlertAction

    async def run(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        s = rec.spec
        assert isinstance(s, AlertAction)
        event = {"type": "alert", "alert_id": new_id("alert"), "call_id": rec.call_id,
                 "agent_id": rec.agent_id, "severity": s.severity, "message": render(s.message, rec.values),
                 "playbook_id": rec.playbook_id, "action_id": rec.action_id}  # fmt: skip
        await ports.publish_to_supervisors(event)
        return {"alert_id": event["alert_id"]}


KIND = AlertKind()
