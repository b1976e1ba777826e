"""Pause or resume recording / transcript storage for the call; a pause is undone by resuming."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from callcue.decide.actions.base import (
    ActionKind,
    ActionPorts,
    ActionSpec,
    NotUndoable,
    plain,
)

if TYPE_CHECKING:
    from callcue.decide.actions.record import ActionRecord


class CallControlAction(ActionSpec):
    kind: Literal["call_control"]
    control: Literal["pause_recording", "resume_recording", "pause_transcript_storage", "resume_transcript_storage"]


class CallControlKind(ActionKind):
    name = "call_control"
    spec = CallControlAction

    async def run(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        s = rec.spec
        assert isinstance(s, CallControlAction)
        out = await ports.call_control(rec.call_id, s.control)
        await ports.publish_to_agent(rec.call_id, {"type": "call_control", "call_id": rec.call_id, "control": s.control})
        return {"control": s.control, "hook_result": plain(out)}

    async def undo(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        s = rec.spec
        assert isinstance(s, CallControlAction)
        if not s.control.startswith("pause_"):
            raise NotUndoable(f"action {rec.action_id} ({s.control}) has no undo")
        reverse = s.control.replace("pause_", "resume_", 1)
        await ports.call_control(rec.call_id, reverse)
        await ports.publish_to_agent(rec.call_id, {"type": "call_control", "call_id": rec.call_id, "control": reverse})
        return {"control": reverse}

    def undoable(self, spec: ActionSpec) -> bool:
        return isinstance(spec, CallControlAction) and spec.control.startswith("pause_")


KIND = CallControlKind()
