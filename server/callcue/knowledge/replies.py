"""Suggested replies: approved lines, ranked for the moment of the call.

Why approved lines and not generated text: what an agent reads out is the bank speaking;
every line on offer was written or reviewed by a person (`config/replies.yaml`). Lines that
agents already say often are mined from stored agent turns into a review file
(`callcue kb mine-replies`), never offered until someone approves them.

Ranking: the customer's latest words (and the request intent the call just raised, if any)
against each reply's `when` and text, by meaning; usage nudges it (a reply agents copy often
rises, one they dismiss sinks), counted from the audit trail's `reply_feedback` entries.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from callcue.knowledge.index import EmbedFn


class RepliesError(ValueError):
    pass


@dataclass(frozen=True)
class Reply:
    id: str
    when: str
    text: str


def load_replies(path: Path) -> tuple[str, list[Reply]]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RepliesError(f"{path}: {e}") from None
    out = []
    for i, r in enumerate(doc.get("replies") or []):
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) and r[k].strip() for k in ("id", "when", "text")):
            raise RepliesError(f"{path}: reply {i} needs id, when and text")
        out.append(Reply(r["id"], r["when"].strip(), r["text"].strip()))
    if len({r.id for r in out}) != len(out):
        raise RepliesError(f"{path}: reply ids must be unique")
    return str(doc.get("version") or "1"), out


class ReplyBook:
    def __init__(self, replies: list[Reply], version: str, embed: EmbedFn) -> None:
        self.replies = replies
        self.version = version
        self.embed = embed
        self._when = embed([r.when for r in replies]) if replies else np.zeros((0, 384), dtype=np.float32)
        self._text = embed([r.text for r in replies]) if replies else np.zeros((0, 384), dtype=np.float32)
        self._lock = threading.Lock()
        self.copied: Counter[str] = Counter()
        self.dismissed: Counter[str] = Counter()

    def used(self, reply_id: str, action: str) -> None:
        with self._lock:
            (self.copied if action == "copied" else self.dismissed)[reply_id] += 1

    def rank(self, moment: str, k: int = 3, qv: np.ndarray | None = None) -> list[tuple[Reply, float]]:
        if not self.replies or not moment.strip():
            return []
        q = qv if qv is not None else self.embed([moment])[0]
        score = 0.7 * (self._when @ q) + 0.3 * (self._text @ q)
        with self._lock:
            usage = np.array([(self.copied[r.id] - self.dismissed[r.id]) / (self.copied[r.id] + self.dismissed[r.id] + 5)
                              for r in self.replies], dtype=np.float32)  # fmt: skip
        score = score + 0.1 * usage
        order = np.argsort(-score)[:k]
        return [(self.replies[int(i)], float(score[int(i)])) for i in order]


_NORM = re.compile(r"[^a-z' ]")


def mine_agent_lines(lines: list[str], min_count: int = 3, limit: int = 50) -> list[dict[str, Any]]:
    """Sentences agents said at least `min_count` times (case and punctuation aside), most
    frequent first: candidates for review, with one verbatim example each. Lines holding
    digits or masks are left out (they were about one customer)."""
    seen: Counter[str] = Counter()
    example: dict[str, str] = {}
    for line in lines:
        for sent in re.split(r"(?<=[.!?])\s+", line.strip()):
            if re.search(r"[\d*#]", sent) or not 4 <= len(sent.split()) <= 30:
                continue
            key = " ".join(_NORM.sub(" ", sent.lower()).split())
            seen[key] += 1
            example.setdefault(key, sent)
    return [{"text": example[k], "count": n} for k, n in seen.most_common(limit) if n >= min_count]
