"""Suggested replies for the moment: after each customer turn, the approved replies that fit
what they just said (knowledge/replies.py), as a `replies/suggested` signal the desktop shows
in its replies panel. A new signal only when the top replies change, so the panel is calm."""

from __future__ import annotations

from typing import Any

from callcue.events import Signal, Transcript
from callcue.knowledge.replies import ReplyBook
from callcue.understand.base import CallContext, Detector
from callcue.understand.common import evidence_from

#: a reply needs at least this fit to be offered
MIN_FIT = 0.3


class RepliesDetector(Detector):
    name = "replies"
    version = "1"
    produces = frozenset({"signal:replies"})
    consumes = frozenset({"signal:intent"})
    per_sentence = False

    def __init__(self, book: ReplyBook, customer_channel: str = "customer") -> None:
        self.book = book
        self.customer = customer_channel

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        if not t.is_final or t.channel != self.customer or not t.text.strip():
            return []
        intent = next((s.name for s in reversed(ctx.signals) if s.kind == "intent" and not s.retracted and s.evidence
                       and s.evidence.segment_id == t.segment_id and s.evidence.channel == t.channel), None)  # fmt: skip
        moment = f"{t.text} ({intent.replace('_', ' ')})" if intent else t.text
        ranked = [(r, s) for r, s in self.book.rank(moment, k=3) if s >= MIN_FIT]
        st: dict[str, Any] = ctx.state.setdefault(self.name, {"last": ()})
        ids = tuple(r.id for r, _ in ranked)
        if not ranked or ids == st["last"]:
            return []
        st["last"] = ids
        return [Signal(t.call_id, "replies", "suggested", max(0.0, min(1.0, ranked[0][1])), self.name, self.version,
                       evidence=evidence_from(t),
                       attrs={"replies_version": self.book.version,
                              "replies": [{"id": r.id, "text": r.text, "when": r.when, "score": round(s, 3)}
                                          for r, s in ranked]})]  # fmt: skip
