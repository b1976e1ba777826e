"""Hybrid retrieval over one KB version: lexical (BM25, `bm25s`) and dense (the MiniLM encoder
the intent detector already ships), fused, restricted to what the conversation is about.

Why both: the dense encoder matches meaning ("can I still get my money back" ~ "refunds
after 30 days") and shrugs off a misrecognised word; BM25 matches the rare exact word a
passage hinges on (a product name, "overdraft"). Why the topic restriction: see topics.py.
An optional learned re-ranker (rerank.py), trained from labelled turns or agents' feedback,
reorders the fused candidates.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import bm25s
import numpy as np

from callcue.knowledge.passages import Passage
from callcue.knowledge.rerank import Reranker
from callcue.knowledge.topics import EntityNames, Topic, topic_of

EmbedFn = Callable[[list[str]], np.ndarray]

#: weight of the max-normalised BM25 score beside the dense cosine
LEXICAL_WEIGHT = 0.1
#: candidates the re-ranker and the span finder look at
CANDIDATES = 50
_WORD = re.compile(r"[a-z0-9']+")
_STOP = frozenset(
    ["a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "for", "with", "from", "by", "about", "as", "is", "are", "was", "were", "be", "been", "am", "do", "does", "did", "can", "could", "would", "should", "will", "shall", "may", "might", "must", "i", "me", "my", "we", "our", "you", "your", "they", "them", "their", "it", "its", "this", "that", "these", "those", "there", "here", "what", "which", "who", "whom", "how", "when", "where", "why", "not", "no", "yes", "ok", "okay", "uh", "um", "hi", "hello", "please", "thanks", "thank", "so", "just", "also", "any", "some", "have", "has", "had", "get", "got"])  # fmt: skip


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float
    dense: float
    lexical: float
    entity: str | None = None
    why: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Candidates:
    idx: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    fused: np.ndarray
    faq: np.ndarray
    focus: set[str]


@dataclass(frozen=True)
class Filters:
    """What a call may be shown: a passage that names a product, queue or language shows only
    where the call matches it; one outside its validity dates never shows."""

    product: str | None = None
    queue: str | None = None
    language: str | None = None
    day: date | None = None

    def allows(self, p: Passage) -> bool:
        for key in ("product", "queue", "language"):
            want, has = getattr(self, key), p.meta.get(key)
            if want and has and str(has).lower() != want.lower():
                return False
        return p.valid_on(self.day or date.today())


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1]


class KnowledgeIndex:
    def __init__(self, passages: Sequence[Passage], vectors: np.ndarray, embed: EmbedFn, version: int,
                 reranker: Reranker | None = None) -> None:  # fmt: skip
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors")
        self.passages = list(passages)
        self.version = version
        self.embed = embed
        self.reranker = reranker
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._bm25 = bm25s.BM25()
        corpus = [f"{p.title} {p.section} {p.text}" for p in self.passages]
        self._bm25.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
        self._by_entity: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(self.passages):
            if p.entity:
                self._by_entity[p.entity].append(i)
        self.names = EntityNames(self._by_entity)
        self._faq = np.array([p.meta.get("doc_type") == "faq" for p in self.passages], dtype=np.float32)
        self._index_of = {p.passage_id: i for i, p in enumerate(self.passages)}
        self._dated = np.array([i for i, p in enumerate(self.passages) if p.meta.get("valid_from") or p.meta.get("valid_to")],
                               dtype=np.int64)  # fmt: skip

    @classmethod
    def build(cls, passages: Sequence[Passage], embed: EmbedFn, version: int, reranker: Reranker | None = None) -> KnowledgeIndex:
        vecs = embed([f"{p.title}. {p.section}. {p.text}" if p.section else f"{p.title}. {p.text}" for p in passages])
        return cls(passages, vecs, embed, version, reranker)

    def __len__(self) -> int:
        return len(self.passages)

    def passage(self, passage_id: str) -> Passage | None:
        i = self._index_of.get(passage_id)
        return None if i is None else self.passages[i]

    def topic(self, turns: Sequence[str]) -> Topic:
        return topic_of(self.names, turns)

    def candidates(self, utterance: str, qv: np.ndarray, topic: Topic | None = None,
                   filters: Filters | None = None) -> Candidates | None:  # fmt: skip
        """The fused top candidates (before any re-ranking), or None when nothing may show."""
        focus = topic.focus() if topic is not None else []
        idx = np.array([i for e, _ in focus for i in self._by_entity.get(e, [])], dtype=np.int64)
        if idx.size == 0:
            idx = np.arange(len(self.passages))
        f = filters or Filters()
        if f.product or f.queue or f.language:
            idx = np.array([i for i in idx if f.allows(self.passages[i])], dtype=np.int64)
        elif self._dated.size:  # an article outside its validity dates never shows
            day = f.day or date.today()
            expired = [int(i) for i in self._dated if not self.passages[int(i)].valid_on(day)]
            if expired:
                idx = np.setdiff1d(idx, np.array(expired, dtype=np.int64), assume_unique=True)
        if idx.size == 0:
            return None
        lex = self.lexical_scores(utterance)[idx]
        lex_n = lex / lex.max() if lex.size and lex.max() > 0 else np.zeros_like(lex)
        dense = self.vectors[idx] @ qv
        fused = dense + LEXICAL_WEIGHT * lex_n
        top = np.argsort(-fused)[:CANDIDATES]
        return Candidates(idx[top], dense[top], lex_n[top], fused[top], self._faq[idx[top]], {e for e, _ in focus})

    def lexical_scores(self, text: str) -> np.ndarray:
        """BM25 of every passage for `text`."""
        tokens = bm25s.tokenize([text], stopwords="en", show_progress=False, return_ids=False)[0]
        if not tokens:
            return np.zeros(len(self.passages), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)

    def search(self, utterance: str, *, topic: Topic | None = None, filters: Filters | None = None, k: int = 5,
               query_vector: np.ndarray | None = None) -> list[Hit]:  # fmt: skip
        """The best passages for this turn, in the conversation `topic` (None: anywhere)."""
        t0 = time.perf_counter()
        qv = query_vector if query_vector is not None else self.embed([utterance])[0]
        t1 = time.perf_counter()
        c = self.candidates(utterance, qv, topic, filters)
        if c is None:
            return []
        order = np.arange(len(c.idx))
        if self.reranker is not None and order.size:
            rer = self.reranker.score(qv, self.vectors[c.idx], c.dense, c.lexical, c.faq)
            order = np.argsort(-rer, kind="stable")
        t2 = time.perf_counter()
        q_words = set(content_words(utterance))
        hits = []
        for j in order[:k]:
            p = self.passages[int(c.idx[j])]
            p_words = set(content_words(f"{p.title} {p.section} {p.text}"))
            why = tuple(sorted(w for w in q_words if w in p_words or any(x.startswith(w[:5]) for x in p_words if len(w) >= 5)))
            hits.append(Hit(p, float(c.fused[j]), float(c.dense[j]), float(c.lexical[j]), p.entity or None,
                            why + ((f"about {p.entity}",) if p.entity and p.entity in c.focus else ()),
                            {"embed_s": t1 - t0, "rank_s": t2 - t1}))  # fmt: skip
        return hits

    def span(self, passage: Passage, utterance: str, query_vector: np.ndarray | None = None) -> tuple[int, int]:
        """Where in the passage the answer is: the sentence closest in meaning to the turn."""
        sents = [(m.start(), m.end()) for m in re.finditer(r"[^.!?]+[.!?]*", passage.text) if m.group().strip()]
        if len(sents) <= 1:
            return (0, len(passage.text))
        qv = query_vector if query_vector is not None else self.embed([utterance])[0]
        sv = self.embed([passage.text[a:b] for a, b in sents])
        a, b = sents[int(np.argmax(sv @ qv))]
        while a < b and passage.text[a].isspace():
            a += 1
        return (a, b)


def describe(hit: Hit) -> dict[str, Any]:
    p = hit.passage
    return {"passage_id": p.passage_id, "doc_id": p.doc_id, "title": p.title, "section": p.section, "text": p.text,
            "url": p.url, "score": round(hit.score, 4), "dense": round(hit.dense, 4), "lexical": round(hit.lexical, 4),
            "entity": hit.entity, "why": list(hit.why)}  # fmt: skip
