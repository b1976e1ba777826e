"""Human-readable rendering of the agent event stream, for `replay` and `demo`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def format_event(ev: dict[str, Any], show_partials: bool = True) -> str | None:
    kind = ev.get("type")
    if kind == "transcript":
        if not ev["is_final"] and not show_partials:
            return None
        tag = "final  " if ev["is_final"] else "partial"
        return f"[{ev['start']:7.2f}-{ev['end']:7.2f}s] {ev['channel']:<8} {tag} {ev['text']}"
    if kind == "signal":
        ev_ = ev.get("evidence") or {}
        extra = " (retracted)" if ev.get("retracted") else ""
        return (f"{'':19} SIGNAL  {ev['kind']}/{ev['name']} conf={ev['confidence']:.2f} "
                f"by {ev['detector']}@{ev['detector_version']} on {ev_.get('channel', '-')}{extra}")
    if kind == "hint":
        lines = [f"{'':19} >>> HINT [{ev['severity']}] {ev['title']}: {ev['body']}"]
        if ev.get("suggested_reply"):
            lines.append(f"{'':23} say: \"{ev['suggested_reply']}\"")
        return "\n".join(lines)
    if kind in ("call_started", "call_ended"):
        return f"--- {kind.replace('_', ' ')}: {ev.get('call_id')} {ev.get('reason', '')}".rstrip()
    if kind == "action_update":
        return (f"{'':19} ... action {ev.get('playbook_id')}/{ev.get('kind')}: "
                f"{ev.get('from')} -> {ev.get('state')} by {ev.get('actor')}")
    if kind in ("alert", "escalation", "call_control"):
        what = ev.get("title") or ev.get("message") or ev.get("control") or ev.get("queue") or ""
        return f"{'':19} !!! {kind.upper()} {what}".rstrip()
    return None


class EventPrinter:
    """Collects a call's events and prints each as it arrives; `feed` says when the call ended."""

    def __init__(self, out: Callable[[str], None], show_partials: bool = True) -> None:
        self.out = out
        self.show_partials = show_partials
        self.events: list[dict[str, Any]] = []

    def feed(self, ev: dict[str, Any]) -> bool:
        self.events.append(ev)
        line = format_event(ev, self.show_partials)
        if line:
            self.out(line)
        return ev.get("type") == "call_ended"
