"""Knowledge assist: the passage that answers what the customer is asking, found while they
are still talking, as a `knowledge/answer` signal that the knowledge playbook turns into a
card on the agent's desktop (decide/actions/knowledge.py).

Why a detector and a playbook, not a side channel: the card is then a decision like any
other, under the same guardrails (a per-call cap and cooldown, a pause switch, a threshold
agents' feedback calibrates), audited with the signal behind it and the KB version, stored
before it is sent and replayed to a desktop that joins late.

Per call it keeps what the conversation is about (knowledge/topics.py: both parties' finals),
and the passages already shown: none is shown twice in a call (an agent's own search is
how to see one again), and a question whose best answer is already on screen gets a second
card only if it is nearly as good (`NEARLY`), never a weaker, unrelated one. A customer's question is judged on its final, or earlier on a
partial that already ends with a question mark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from callcue.events import Signal, Transcript
from callcue.knowledge.index import Filters, KnowledgeIndex
from callcue.knowledge.service import KnowledgeBase
from callcue.knowledge.topics import Topic
from callcue.understand.base import CallContext, Detector
from callcue.understand.common import evidence_from

log = logging.getLogger(__name__)

#: a partial is judged early only when it is already a whole question this long
EARLY_WORDS = 4
#: when the best passage was shown already, the next is shown only if its score is this close
NEARLY = 0.08


@dataclass
class _CallKnowledge:
    version: int
    topic: Topic
    heard: set[tuple[str, int]] = field(default_factory=set)
    judged: set[tuple[str, int]] = field(default_factory=set)
    shown: set[str] = field(default_factory=set)


class KnowledgeDetector(Detector):
    name = "knowledge"
    version = "1"
    produces = frozenset({"signal:knowledge"})
    consumes = frozenset({"signal:intent"})  # a stated request ("I want to cancel") seeks knowledge too
    per_sentence = False

    def __init__(self, kb: KnowledgeBase, customer_channel: str = "customer") -> None:
        self.kb = kb
        self.customer = customer_channel

    def _state(self, ctx: CallContext, index: KnowledgeIndex) -> _CallKnowledge:
        st = ctx.state.get(self.name)
        if not isinstance(st, _CallKnowledge) or st.version != index.version:
            old = st.topic.weights if isinstance(st, _CallKnowledge) else {}
            st = _CallKnowledge(index.version, Topic(index.names, {e: w for e, w in old.items() if e in index.names.entities}),
                                shown=st.shown if isinstance(st, _CallKnowledge) else set())  # fmt: skip
            ctx.state[self.name] = st
        return st

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        index = self.kb.index
        if index is None or not t.text.strip():
            return []
        st = self._state(ctx, index)
        key = (t.channel, t.segment_id)
        if t.is_final and key not in st.heard:
            st.heard.add(key)
            st.topic.hear(t.text)
        if t.channel != self.customer or key in st.judged:
            return []
        if not t.is_final and not (t.text.rstrip().endswith("?") and len(t.text.split()) >= EARLY_WORDS):
            return []
        st.judged.add(key)
        topic = st.topic
        if not t.is_final:  # the question itself may name what it is about
            topic = Topic(index.names, dict(st.topic.weights))
            topic.hear(t.text)
        gate = self.kb.gate
        qv = index.embed([t.text])[0]
        query = t.text
        intent = None
        if gate.asking(t.text, qv) < gate.min_ask:
            # not a question, but maybe a stated request ("I want to cancel my account"):
            # the request's intent says what to look up
            intent = self._intent(t, ctx)
            if intent is None:
                return []
            query = f"{t.text} ({intent.replace('_', ' ')})"
            qv = index.embed([query])[0]
        meta = ctx.metadata
        filters = Filters(product=_str(meta.get("product")), queue=_str(meta.get("queue")), language=_str(meta.get("language")))
        priors = self.kb.priors
        hits = index.search(query, topic=topic, filters=filters, k=4, query_vector=qv)
        if priors:  # agents' verdicts on a passage nudge it up or down
            hits.sort(key=lambda h: -(h.score + 0.1 * priors.get(h.passage.passage_id, 0.0)))
        if hits and hits[0].passage.passage_id in st.shown:
            # the best answer is on the agent's screen already: another only if nearly as good
            top = hits[0].score
            hits = [h for h in hits if h.passage.passage_id not in st.shown and h.score >= top - NEARLY]
        if not hits or hits[0].score < gate.min_score or (intent is None and not gate.show(t.text, hits[0].score, qv)):
            return []
        best = hits[0]
        st.shown.add(best.passage.passage_id)
        p = best.passage
        start, end = index.span(p, t.text, qv)
        attrs: dict[str, Any] = {
            "passage_id": p.passage_id, "doc_id": p.doc_id, "title": p.title, "section": p.section, "passage": p.text,
            "url": p.url, "span": [start, end], "why": list(best.why), "kb_version": index.version,
            "score": round(best.score, 4), "entity": best.entity,
            "alternatives": [{"passage_id": h.passage.passage_id, "title": h.passage.title, "section": h.passage.section,
                              "score": round(h.score, 4)} for h in hits[1:3]],
        }  # fmt: skip
        return [Signal(t.call_id, "knowledge", "answer", max(0.0, min(1.0, best.score)), self.name, self.version,
                       evidence=evidence_from(t), attrs=attrs)]  # fmt: skip


    @staticmethod
    def _intent(t: Transcript, ctx: CallContext) -> str | None:
        """A request intent the intent detector raised on this very turn (it runs first)."""
        for s in reversed(ctx.signals):
            ev = s.evidence
            if s.kind == "intent" and not s.retracted and ev is not None and ev.channel == t.channel \
                    and ev.segment_id == t.segment_id and s.confidence >= 0.6:  # fmt: skip
                return s.name
        return None


def _str(v: Any) -> str | None:
    return str(v) if isinstance(v, (str, int)) and str(v) else None
