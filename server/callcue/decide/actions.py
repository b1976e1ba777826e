"""What a playbook does once it decides: the action record and the dispatcher that executes it.

The dispatcher knows *how* to perform each action kind (publish a hint, alert supervisors,
POST a webhook, escalate, pause recording) and how to undo the ones that can be undone. It
knows nothing about approvals or cooldowns; the engine decides *whether* and *when*. The
sinks are plain async callables so the lead's WebSocket hub, a test collector or a CLI can
plug in without this module importing any of them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from callcue.decide.playbooks import (
    ACTION_ADAPTER,
    Action,
    AlertAction,
    CallControlAction,
    EscalateAction,
    HintAction,
    WebhookAction,
    render,
)
from callcue.decide.webhooks import WebhookClient, idempotency_key
from callcue.events import Hint, new_id

State = Literal[
    "proposed", "pending_approval", "suggested", "approved", "rejected", "expired", "dismissed",
    "dispatched", "succeeded", "failed", "cancelled", "rolled_back", "overridden",
]  # fmt: skip
TERMINAL: frozenset[str] = frozenset(
    {"rejected", "expired", "dismissed", "succeeded", "failed", "cancelled", "rolled_back", "overridden"}
)

AgentSink = Callable[[str, dict[str, Any]], Awaitable[None]]
SupervisorSink = Callable[[dict[str, Any]], Awaitable[None]]
EscalateHook = Callable[[str, dict[str, Any]], Awaitable[Any]]
CallControlHook = Callable[[str, str], Awaitable[Any]]
HintSink = Callable[[Hint], Awaitable[None]]


class NotUndoable(RuntimeError):
    """The action has no compensating step (e.g. an alert that supervisors already saw)."""


@dataclass
class ActionRecord:
    """One action's life. `history` mirrors what went to the audit log, for the API."""

    action_id: str
    call_id: str
    agent_id: str | None
    playbook_id: str
    playbook_version: int
    autonomy: str
    spec: Action
    values: dict[str, Any]  # template values (signal/call fields) captured at decision time
    signal_ids: list[str] = field(default_factory=list)
    # the actions one playbook firing proposed together: approved, accepted or dismissed as one
    firing_id: str = ""
    state: State = "proposed"
    created_at: float = field(default_factory=time.time)
    deadline_at: float | None = None
    hint_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    actor: str = "system"
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def undoable(self) -> bool:
        s = self.spec
        return (
            isinstance(s, HintAction)
            or (isinstance(s, WebhookAction) and s.undo is not None)
            or (isinstance(s, CallControlAction) and s.control.startswith("pause_"))
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id, "call_id": self.call_id, "agent_id": self.agent_id,
            "playbook_id": self.playbook_id, "playbook_version": self.playbook_version,
            "autonomy": self.autonomy, "firing_id": self.firing_id, "kind": self.kind, "spec": ACTION_ADAPTER.dump_python(self.spec, mode="json"),
            "state": self.state, "created_at": self.created_at, "deadline_at": self.deadline_at,
            "hint_id": self.hint_id, "result": self.result, "error": self.error, "actor": self.actor,
            "signal_ids": list(self.signal_ids), "undoable": self.undoable, "history": list(self.history),
        }  # fmt: skip


def parse_action(spec: dict[str, Any]) -> Action:
    """Validate a human-supplied action (an override) with the same rules as playbooks."""
    return ACTION_ADAPTER.validate_python(spec)


class ActionDispatcher:
    """Executes actions through pluggable sinks; every method may raise, the engine records it."""

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
        to `publish_to_agent` as dicts: the server's hint sink stores them (so agent feedback
        can find the hint) and stamps latency metrics before fanning out."""
        self.publish_to_agent = publish_to_agent
        self.publish_hint = publish_hint
        self.publish_to_supervisors = publish_to_supervisors
        self.webhooks = webhooks or WebhookClient()
        self._escalate = escalate
        self._call_control = call_control

    def build_hint(self, rec: ActionRecord, spec: HintAction, *, audio_received_at: float = 0.0) -> Hint:
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
        )

    async def dispatch(self, rec: ActionRecord) -> dict[str, Any]:
        s = rec.spec
        if isinstance(s, HintAction):
            hint = self.build_hint(rec, s, audio_received_at=float(rec.values.get("audio_received_at", 0.0)))
            rec.hint_id = hint.hint_id
            if self.publish_hint is not None:
                await self.publish_hint(hint)
            else:
                await self.publish_to_agent(rec.call_id, hint.to_dict())
            return {"hint_id": hint.hint_id}
        if isinstance(s, AlertAction):
            event = {"type": "alert", "alert_id": new_id("alert"), "call_id": rec.call_id,
                     "agent_id": rec.agent_id, "severity": s.severity, "message": render(s.message, rec.values),
                     "playbook_id": rec.playbook_id, "action_id": rec.action_id}  # fmt: skip
            await self.publish_to_supervisors(event)
            return {"alert_id": event["alert_id"]}
        if isinstance(s, WebhookAction):
            payload = {**s.payload, "call_id": rec.call_id, "agent_id": rec.agent_id, "action_id": rec.action_id,
                       "playbook_id": rec.playbook_id, "playbook_version": rec.playbook_version,
                       "signal": rec.values.get("signal")}  # fmt: skip
            r = await self.webhooks.post(s.url, payload, key=idempotency_key(rec.action_id), timeout_s=s.timeout_s,
                                         retries=s.retries, backoff_s=s.backoff_s, headers=s.headers)  # fmt: skip
            return {"status": r.status, "attempts": r.attempts, "body": r.body, "elapsed_s": round(r.elapsed_s, 3)}
        if isinstance(s, EscalateAction):
            if self._escalate is None:
                raise RuntimeError("no escalation hook configured")
            target = {"queue": s.queue, "role": s.role, "message": render(s.message, rec.values),
                      "agent_id": rec.agent_id, "playbook_id": rec.playbook_id, "action_id": rec.action_id}  # fmt: skip
            out = await self._escalate(rec.call_id, target)
            await self.publish_to_supervisors({"type": "escalation", "call_id": rec.call_id, **target})
            return {"escalated_to": {"queue": s.queue, "role": s.role}, "hook_result": _plain(out)}
        if isinstance(s, CallControlAction):
            if self._call_control is None:
                raise RuntimeError("no call-control hook configured")
            out = await self._call_control(rec.call_id, s.control)
            await self.publish_to_agent(rec.call_id, {"type": "call_control", "call_id": rec.call_id, "control": s.control})
            return {"control": s.control, "hook_result": _plain(out)}
        raise TypeError(f"unknown action kind {type(s).__name__}")

    async def undo(self, rec: ActionRecord) -> dict[str, Any]:
        """The compensating step for an executed action."""
        s = rec.spec
        if isinstance(s, HintAction):
            await self.publish_to_agent(rec.call_id, {"type": "hint_retracted", "call_id": rec.call_id,
                                                      "hint_id": rec.hint_id, "action_id": rec.action_id})  # fmt: skip
            return {"retracted_hint_id": rec.hint_id}
        if isinstance(s, WebhookAction) and s.undo is not None:
            payload = {**s.undo.payload, "call_id": rec.call_id, "action_id": rec.action_id,
                       "undo_of": idempotency_key(rec.action_id), "original_result": (rec.result or {}).get("body")}  # fmt: skip
            r = await self.webhooks.post(s.undo.url, payload, key=idempotency_key(rec.action_id, "undo"),
                                         timeout_s=s.timeout_s, retries=s.retries, backoff_s=s.backoff_s, headers=s.headers)  # fmt: skip
            return {"status": r.status, "attempts": r.attempts, "body": r.body}
        if isinstance(s, CallControlAction) and s.control.startswith("pause_"):
            reverse = s.control.replace("pause_", "resume_", 1)
            if self._call_control is None:
                raise RuntimeError("no call-control hook configured")
            await self._call_control(rec.call_id, reverse)
            await self.publish_to_agent(rec.call_id, {"type": "call_control", "call_id": rec.call_id, "control": reverse})
            return {"control": reverse}
        raise NotUndoable(f"action {rec.action_id} ({s.kind}) has no undo")


def _plain(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool, type(None), dict, list)) else repr(v)
