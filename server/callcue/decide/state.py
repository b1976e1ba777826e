"""The decision engine's shared vocabulary: call metadata, per-call state, the action state
machine's allowed moves and the refusals a human command can meet. The parts that keep state
(records.py, switches.py, trail.py) and the parts that act on it (gating.py, lifecycle.py,
control.py) all speak it."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

HUMAN_PLAYBOOK = "human"  # playbook id recorded for actions a supervisor created from scratch
MAX_SIGNALS_PER_CALL = 500
FEEDBACK_ACTIONS = ("accepted", "dismissed", "corrected")

_ALLOWED: dict[str, set[str]] = {
    "proposed": {"pending_approval", "suggested", "dispatched", "cancelled"},
    "pending_approval": {"approved", "rejected", "expired", "cancelled", "overridden"},
    "suggested": {"approved", "dismissed", "cancelled", "overridden"},
    "approved": {"dispatched", "cancelled"},
    "expired": {"dispatched"},
    "dispatched": {"succeeded", "failed", "cancelled", "overridden"},
    "succeeded": {"rolled_back", "overridden"},
    "failed": {"overridden"},
}


class AuditSink(Protocol):
    async def append(
        self, kind: str, *, call_id: str | None = None, agent_id: str | None = None,
        playbook_id: str | None = None, playbook_version: int | str | None = None,
        action_id: str | None = None, actor: str = "system", payload: dict[str, Any] | None = None,
    ) -> Any: ...  # fmt: skip


class DecisionError(Exception):
    """Base for refusals of a human command; the API maps subclasses to HTTP codes."""


class UnknownAction(DecisionError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else "unknown"


class AuditUnavailable(DecisionError):
    """The audit trail refused an entry, so the step it records was not taken."""


class InvalidTransition(DecisionError):
    """E.g. approving an action that already expired."""


@dataclass
class CallInfo:
    """Call metadata playbooks may look at. `started_at` is on the engine's clock."""

    call_id: str
    agent_id: str | None = None
    queue: str | None = None
    tier: str | None = None
    started_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, call_id: str, agent_id: str | None, started_at: float | None,
                      metadata: dict[str, Any]) -> CallInfo:  # fmt: skip
        """Queue and tier as platforms name them in a call's start metadata."""
        meta = dict(metadata)
        return cls(call_id=call_id, agent_id=agent_id, queue=meta.get("queue"),
                   tier=meta.get("tier") or meta.get("customer_tier"), started_at=started_at, metadata=meta)  # fmt: skip


@dataclass
class CallState:
    """What gates a playbook within one call: its signals, cooldowns, de-dup keys, counts, pauses."""

    info: CallInfo
    signals: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_SIGNALS_PER_CALL))
    last_fired: dict[str, float] = field(default_factory=dict)
    dedupe: dict[str, set[str]] = field(default_factory=dict)
    fired: dict[str, int] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)


def template_values(signal: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
    """Flat names for `$placeholders` in hint/alert text, and the signal for webhook payloads."""
    v: dict[str, Any] = {
        "signal_kind": signal.get("kind", ""), "signal_name": signal.get("name", ""),
        "confidence": signal.get("confidence", ""),
        **{f"call_{k}": ("" if call.get(k) is None else call.get(k))
           for k in ("call_id", "agent_id", "queue", "tier", "seconds_in_call")},
        "signal": {k: signal.get(k) for k in ("signal_id", "kind", "name", "confidence", "attrs", "text")} if signal else None,
    }  # fmt: skip
    v["call_id"] = v.pop("call_call_id")
    for k, val in (signal.get("attrs") or {}).items():
        if isinstance(k, str) and k.isidentifier():
            v[f"attr_{k}"] = val
    return v
