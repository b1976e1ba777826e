"""Live checklists: ordered steps of a good call that tick themselves as the agent says them.

Why by meaning: agents do not read scripts word for word ("you're through to Daniel" greets
as well as "this is Daniel"); each item's example phrasings are embedded once and an agent's
sentence ticks the item it is close enough to. An item can tick out of order (the agent
verified before greeting); the desktop shows what is left, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from callcue.knowledge.index import EmbedFn

#: an agent's sentence ticks an item when this close to one of its examples
TICK_AT = 0.6


class ChecklistError(ValueError):
    pass


@dataclass(frozen=True)
class Item:
    id: str
    label: str
    say: tuple[str, ...]


@dataclass(frozen=True)
class Checklist:
    id: str
    title: str
    items: tuple[Item, ...]
    queues: tuple[str, ...] = ()

    def applies(self, queue: str | None) -> bool:
        return not self.queues or (queue is not None and queue in self.queues)


def load_checklists(path: Path) -> tuple[str, list[Checklist]]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ChecklistError(f"{path}: {e}") from None
    out = []
    for c in doc.get("checklists") or []:
        try:
            items = tuple(Item(str(i["id"]), str(i["label"]), tuple(str(s) for s in i["say"])) for i in c["items"])
            out.append(Checklist(str(c["id"]), str(c.get("title") or c["id"]), items, tuple(c.get("queues") or ())))
        except (KeyError, TypeError) as e:
            raise ChecklistError(f"{path}: checklist {c!r:.60}: needs id and items with id, label and say ({e})") from None
        if not items or any(not i.say for i in items):
            raise ChecklistError(f"{path}: checklist {c.get('id')}: every item needs example phrasings (say)")
    return str(doc.get("version") or "1"), out


class ChecklistMatcher:
    def __init__(self, checklists: list[Checklist], version: str, embed: EmbedFn) -> None:
        self.checklists = checklists
        self.version = version
        self.embed = embed
        self._examples = {c.id: [(item.id, embed(list(item.say))) for item in c.items] for c in checklists}

    def ticks(self, checklist: Checklist, text: str, qv: np.ndarray | None = None) -> list[tuple[str, float]]:
        """Items this agent turn ticks, with how close it came; each sentence judged alone."""
        sents = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if len(s.split()) >= 2]
        if not sents:
            return []
        vecs = self.embed(sents)
        items = self._examples[checklist.id]
        sims = np.stack([(vecs @ ex.T).max(axis=1) for _, ex in items], axis=1)  # sentence x item
        found: dict[str, float] = {}
        for row in sims:  # a sentence ticks at most the one item it is closest to
            j = int(np.argmax(row))
            if row[j] >= TICK_AT:
                found[items[j][0]] = max(found.get(items[j][0], 0.0), float(row[j]))
        return list(found.items())
