"""Executes actions through pluggable ports; every method may raise, the engine records it.

The dispatcher knows nothing about approvals or cooldowns (the engine decides *whether* and
*when*) and nothing about any one kind (the registry does): it holds the ports a kind may
use. The ports are plain async callables, so the server's Sink, a test collector or a CLI
can plug in without this module importing any of them.
"""

from __future__ import annotations

from typing import Any

from callcue.decide.actions.base import (
    AgentSink,
    CallControlHook,
    EscalateHook,
    HintSink,
    SupervisorSink,
)
from callcue.decide.actions.hint import HintAction, build_hint
from callcue.decide.actions.kinds import ACTION_KINDS
from callcue.decide.actions.record import ActionRecord
from callcue.decide.webhooks import WebhookClient
from callcue.events import Hint


class ActionDispatcher:
    def __init__(
        self,
        *,
        publish_to_agent: AgentSink,
        publish_to_supervisors: SupervisorSink,
        webhooks: WebhookClient | None = None,
        escalate: EscalateHook | None = None,
        call_control: CallControlHook | None = None,
        publish_hint: HintSink | None = None,
    ) -> None:
        """`publish_hint`, when given, receives hints as `Hint` objects instead of them going
        to `publish_to_agent` as dicts: the server's Sink stores them (so agent feedback can
        find the hint) and stamps latency metrics before fanning out."""
        self.publish_to_agent = publish_to_agent
        self.publish_hint = publish_hint
        self.publish_to_supervisors = publish_to_supervisors
        self.webhooks = webhooks or WebhookClient()
        self._escalate = escalate
        self._call_control = call_control

    async def escalate(self, call_id: str, target: dict[str, Any]) -> Any:
        if self._escalate is None:
            raise RuntimeError("no escalation hook configured")
        return await self._escalate(call_id, target)

    async def call_control(self, call_id: str, control: str) -> Any:
        if self._call_control is None:
            raise RuntimeError("no call-control hook configured")
        return await self._call_control(call_id, control)

    def build_hint(self, rec: ActionRecord, spec: HintAction, *, audio_received_at: float = 0.0) -> Hint:
        return build_hint(rec, spec, audio_received_at=audio_received_at)

    async def dispatch(self, rec: ActionRecord) -> dict[str, Any]:
        return await ACTION_KINDS.get(rec.kind).run(rec, self)

    async def undo(self, rec: ActionRecord) -> dict[str, Any]:
        """The compensating step for an executed action."""
        return await ACTION_KINDS.get(rec.kind).undo(rec, self)
