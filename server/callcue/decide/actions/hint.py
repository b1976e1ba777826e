"""A card on the agent's desktop; undone by striking it through (`hint_retracted`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from callcue.decide.actions.base import ActionKind, ActionPorts, ActionSpec, render
from callcue.events import Hint, new_id

if TYPE_CHECKING:
    from callcue.decide.actions.record import ActionRecord


class HintAction(ActionSpec):
    kind: Literal["hint"]
    title: str = Field(min_length=1)
    body: str = ""
    suggested_reply: str = ""
    severity: Literal["info", "warning", "critical"] = "info"


def build_hint(rec: ActionRecord, spec: HintAction, *, audio_received_at: float = 0.0) -> Hint:
    return Hint(
        call_id=rec.call_id,
        title=render(spec.title, rec.values),
        body=render(spec.body, rec.values),
        suggested_reply=render(spec.suggested_reply, rec.values),
        severity=spec.severity,
        source=f"{rec.playbook_id}@{rec.playbook_version}",
        signal_ids=list(rec.signal_ids),
        hint_id=rec.hint_id or new_id("hint"),
        audio_received_at=audio_received_at,
        # a suggestion's hint names the actions that run if the agent accepts it
        attrs={"action_id": rec.action_id, "autonomy": rec.autonomy,
               "pending_action_ids": list(rec.values.get("pending_action_ids", []))},
    )  # fmt: skip


class HintKind(ActionKind):
    name = "hint"
    spec: ClassVar[type[ActionSpec]] = HintAction
    presents_to_agent = True

    def card(self, rec: ActionRecord) -> Hint:
        assert isinstance(rec.spec, HintAction)
        return build_hint(rec, rec.spec, audio_received_at=float(rec.values.get("audio_received_at", 0.0)))

    async def run(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        hint = rec.shown or self.card(rec)
        rec.hint_id = hint.hint_id
        rec.shown = hint
        if ports.publish_hint is not None:
            await ports.publish_hint(hint)
        else:
            await ports.publish_to_agent(rec.call_id, hint.to_dict())
        return {"hint_id": hint.hint_id}

    async def undo(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        await ports.publish_to_agent(rec.call_id, {"type": "hint_retracted", "call_id": rec.call_id,
                                                   "hint_id": rec.hint_id, "action_id": rec.action_id})  # fmt: skip
        return {"retracted_hint_id": rec.hint_id}


KIND = HintKind()
