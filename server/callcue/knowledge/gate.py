"""When to show knowledge: only for a turn that seeks it, and only when the best passage is
close enough. An agent flooded with cards stops reading them.

Two parts: is the customer *asking* (a question's form: a wh-word or an auxiliary first, a
request for information, a question mark), and does the KB *answer* (the best passage's
fused score over a threshold). A learned head over the encoder's vector of the turn can
replace the form test where labelled turns exist (`train`), as the evaluation measures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

_ASK = re.compile(
    r"^(?:(?:uh|um|ok|okay|so|and|also|oh|well|yes|yeah|great|thanks|hi|hello|but|sure|alright|perfect)[ ,]+)*"
    r"(?:what|what's|whats|which|who|whom|whose|when|where|why|how|is|are|was|were|do|does|did|can|could|would|will|"
    r"should|shall|may|have|has|any|tell me|i (?:want|need|would like) to know|i wonder|i was wondering|"
    r"i'd like to know|please tell|could you tell|do you know|is it true)\b", re.I)  # fmt: skip
_INFO = re.compile(r"\b(how (?:much|long|many|do|can|does)|is there|are there|do they|does it|can i|am i able|"
                   r"what (?:is|are|time|about)|allowed|available|policy|fee|charge|offer|provide|have (?:a|any))\b", re.I)  # fmt: skip


def seeks_knowledge(text: str) -> float:
    """How much a turn reads as a request for information (0-1), by its form."""
    t = " ".join(text.strip().split())
    if not t:
        return 0.0
    score = 0.0
    for sentence in re.split(r"(?<=[.!?])\s+", t):
        s = 0.0
        if sentence.endswith("?"):
            s += 0.4
        if _ASK.search(sentence):
            s += 0.6
        if _INFO.search(sentence):  # anywhere: recognised speech has no "?" and wanders in
            s += 0.5
        score = max(score, s)
    return min(1.0, score)


@dataclass(frozen=True)
class Gate:
    """`min_score`: the best passage's fused score a card needs; `min_ask`: how question-like
    the turn must be. A learned head (`coef`, `intercept` over the turn's vector and the
    form score) replaces the form test when present."""

    min_score: float = 0.45
    min_ask: float = 0.5
    coef: np.ndarray | None = None
    intercept: float = 0.0

    def asking(self, text: str, qv: np.ndarray | None = None) -> float:
        form = seeks_knowledge(text)
        if self.coef is None or qv is None:
            return form
        z = float(np.dot(self.coef[:-1], qv) + self.coef[-1] * form + self.intercept)
        return 1.0 / (1.0 + np.exp(-z))

    def show(self, text: str, best_score: float, qv: np.ndarray | None = None) -> bool:
        return best_score >= self.min_score and self.asking(text, qv) >= self.min_ask

    def to_dict(self) -> dict[str, Any]:
        return {"min_score": self.min_score, "min_ask": self.min_ask, "intercept": self.intercept,
                "coef": None if self.coef is None else [round(float(x), 6) for x in self.coef]}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Gate:
        coef = d.get("coef")
        return cls(float(d.get("min_score", 0.45)), float(d.get("min_ask", 0.5)),
                   None if coef is None else np.asarray(coef, dtype=np.float32), float(d.get("intercept", 0.0)))  # fmt: skip


def train_head(vectors: np.ndarray, texts: list[str], labels: np.ndarray, base: Gate) -> Gate:
    """A logistic head on the turn's vector and its form score, from labelled turns."""
    from sklearn.linear_model import LogisticRegression

    x = np.hstack([vectors, np.array([[seeks_knowledge(t)] for t in texts], dtype=np.float32)])
    m = LogisticRegression(C=1.0, max_iter=3000, class_weight="balanced").fit(x, labels)
    return Gate(base.min_score, 0.5, m.coef_[0].astype(np.float32), float(m.intercept_[0]))
