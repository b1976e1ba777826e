"""Live checklists: which steps of the call's checklist the agent has done, as a
`checklist/progress` signal each time an item ticks (knowledge/checklists.py), and once at the
call's first words so the desktop shows the list from the start."""

from __future__ import annotations

from typing import Any

from callcue.events import Signal, Transcript
from callcue.knowledge.checklists import Checklist, ChecklistMatcher
from callcue.understand.base import CallContext, Detector
from callcue.understand.common import evidence_from


class ChecklistDetector(Detector):
    name = "checklist"
    version = "1"
    produces = frozenset({"signal:checklist"})
    per_sentence = False

    def __init__(self, matcher: ChecklistMatcher, agent_channel: str = "agent") -> None:
        self.matcher = matcher
        self.agent = agent_channel

    def _lists(self, ctx: CallContext) -> list[Checklist]:
        queue = ctx.metadata.get("queue")
        return [c for c in self.matcher.checklists if c.applies(queue if isinstance(queue, str) else None)]

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        if not t.is_final:
            return []
        st: dict[str, Any] = ctx.state.setdefault(self.name, {"done": {}, "announced": False})
        out = []
        for c in self._lists(ctx):
            done: dict[str, float] = st["done"].setdefault(c.id, {})
            new = [(i, s) for i, s in (self.matcher.ticks(c, t.text) if t.channel == self.agent else []) if i not in done]
            for item_id, _ in new:
                done[item_id] = t.end
            if new or not st["announced"]:
                items = [{"id": i.id, "label": i.label, "done": i.id in done, "at": done.get(i.id)} for i in c.items]
                out.append(Signal(t.call_id, "checklist", "progress", 1.0, self.name, self.version, evidence=evidence_from(t),
                                  attrs={"checklist": c.id, "title": c.title, "version": self.matcher.version, "items": items,
                                         "ticked": [i for i, _ in new],
                                         "left": [i["label"] for i in items if not i["done"]]}))  # fmt: skip
        st["announced"] = True
        return out
