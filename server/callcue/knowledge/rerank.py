"""A learned re-ranker: a logistic head over the encoder's question-passage interaction.

Why this and not a cross-encoder: no cross-encoder's weights install offline from the
package registries, and the encoder's vectors are already computed. The head sees the
element-wise product of question and passage vectors (which aspects both are about), the
cosine, the BM25 share and whether the passage is an FAQ, so it learns, from a KB's own
labelled turns or agents' feedback, what "answers" means there. Its weights are a few
hundred numbers, stored with the KB version they were trained for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Reranker:
    coef: np.ndarray  # (dim + 3,)
    intercept: float
    trained_on: int = 0  # labelled turns

    def score(self, qv: np.ndarray, pv: np.ndarray, dense: np.ndarray, lexical: np.ndarray, faq: np.ndarray) -> np.ndarray:
        return features(qv, pv, dense, lexical, faq) @ self.coef + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {"coef": [round(float(x), 6) for x in self.coef], "intercept": float(self.intercept),
                "trained_on": self.trained_on}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reranker:
        return cls(np.asarray(d["coef"], dtype=np.float32), float(d["intercept"]), int(d.get("trained_on", 0)))


def features(qv: np.ndarray, pv: np.ndarray, dense: np.ndarray, lexical: np.ndarray, faq: np.ndarray) -> np.ndarray:
    return np.hstack([pv * qv, dense[:, None], lexical[:, None], faq[:, None]]).astype(np.float32)


def train(examples: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
          c: float = 1.0) -> Reranker:  # fmt: skip
    """`examples`: per labelled turn (query vector, candidate vectors, dense, lexical, faq,
    labels); candidates are what retrieval offered, labels which of them answer."""
    from sklearn.linear_model import LogisticRegression

    x = np.vstack([features(q, p, d, lx, f) for q, p, d, lx, f, _ in examples])
    y = np.concatenate([lab for *_, lab in examples])
    if y.min() == y.max():
        raise ValueError("the labelled turns need both answering and other passages among the candidates")
    m = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(x, y)
    return Reranker(m.coef_[0].astype(np.float32), float(m.intercept_[0]), len(examples))
