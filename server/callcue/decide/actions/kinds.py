"""The action kinds a server knows. Adding one: a file beside this one, and a line below."""

from __future__ import annotations

from typing import Any

from callcue.decide.actions import alert, call_control, escalate, hint, knowledge, webhook
from callcue.decide.actions.base import ActionKindRegistry, ActionSpec

ACTION_KINDS = ActionKindRegistry()
ACTION_KINDS.register(hint.KIND)
ACTION_KINDS.register(alert.KIND)
ACTION_KINDS.register(webhook.KIND)
ACTION_KINDS.register(escalate.KIND)
ACTION_KINDS.register(call_control.KIND)
ACTION_KINDS.register(knowledge.KIND)


def parse_action(spec: dict[str, Any] | ActionSpec) -> ActionSpec:
    """Validate a human-supplied action (an override) with the same rules as playbooks."""
    return ACTION_KINDS.parse(spec)
