"""One action's life: what was decided, for which call, and every state it went through."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from callcue.decide.actions.base import ActionSpec
from callcue.decide.actions.kinds import ACTION_KINDS
from callcue.events import Hint

State = Literal[
    "proposed", "pending_approval", "suggested", "approved", "rejected", "expired", "dismissed",
    "dispatched", "succeeded", "failed", "cancelled", "rolled_back", "overridden",
]  # fmt: skip
TERMINAL: frozenset[str] = frozenset(
    {"rejected", "expired", "dismissed", "succeeded", "failed", "cancelled", "rolled_back", "overridden"}
)


@dataclass
class ActionRecord:
    """`history` mirrors what went to the audit log, for the API."""

    action_id: str
    call_id: str
    agent_id: str | None
    playbook_id: str
    playbook_version: int
    autonomy: str
    spec: ActionSpec
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
    #: the hint the agent was sent, for kinds that present one (its audit entry is made from it)
    shown: Hint | None = None

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def undoable(self) -> bool:
        return ACTION_KINDS.get(self.kind).undoable(self.spec)

    @property
    def presents_to_agent(self) -> bool:
        return ACTION_KINDS.get(self.kind).presents_to_agent

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id, "call_id": self.call_id, "agent_id": self.agent_id,
            "playbook_id": self.playbook_id, "playbook_version": self.playbook_version,
            "autonomy": self.autonomy, "firing_id": self.firing_id, "kind": self.kind,
            "spec": ACTION_KINDS.dump(self.spec),
            "state": self.state, "created_at": self.created_at, "deadline_at": self.deadline_at,
            "hint_id": self.hint_id, "result": self.result, "error": self.error, "actor": self.actor,
            "signal_ids": list(self.signal_ids), "undoable": self.undoable, "history": list(self.history),
        }  # fmt: skip
