"""A POST to another system (refund, CRM case) with retries and an idempotency key; undone
by the playbook's compensating POST when it names one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from callcue.decide.actions.base import ActionKind, ActionPorts, ActionSpec, NotUndoable
from callcue.decide.webhooks import idempotency_key

if TYPE_CHECKING:
    from callcue.decide.actions.record import ActionRecord


class WebhookUndo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(pattern=r"^https?://")
    payload: dict[str, Any] = Field(default_factory=dict)


class WebhookAction(ActionSpec):
    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    payload: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0, le=30)
    undo: WebhookUndo | None = None


class WebhookKind(ActionKind):
    name = "webhook"
    spec = WebhookAction

    async def run(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        s = rec.spec
        assert isinstance(s, WebhookAction)
        payload = {**s.payload, "call_id": rec.call_id, "agent_id": rec.agent_id, "action_id": rec.action_id,
                   "playbook_id": rec.playbook_id, "playbook_version": rec.playbook_version,
                   "signal": rec.values.get("signal")}  # fmt: skip
        r = await ports.webhooks.post(s.url, payload, key=idempotency_key(rec.action_id), timeout_s=s.timeout_s,
                                      retries=s.retries, backoff_s=s.backoff_s, headers=s.headers)  # fmt: skip
        return {"status": r.status, "attempts": r.attempts, "body": r.body, "elapsed_s": round(r.elapsed_s, 3)}

    async def undo(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        s = rec.spec
        assert isinstance(s, WebhookAction)
        if s.undo is None:
            raise NotUndoable(f"action {rec.action_id} (webhook) names no undo")
        payload = {**s.undo.payload, "call_id": rec.call_id, "action_id": rec.action_id,
                   "undo_of": idempotency_key(rec.action_id), "original_result": (rec.result or {}).get("body")}  # fmt: skip
        r = await ports.webhooks.post(s.undo.url, payload, key=idempotency_key(rec.action_id, "undo"),
                                      timeout_s=s.timeout_s, retries=s.retries, backoff_s=s.backoff_s, headers=s.headers)  # fmt: skip
        return {"status": r.status, "attempts": r.attempts, "body": r.body}

    def undoable(self, spec: ActionSpec) -> bool:
        return isinstance(spec, WebhookAction) and spec.undo is not None


KIND = WebhookKind()
