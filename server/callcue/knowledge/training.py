"""Labelled turns in, learned parts out: the re-ranker and the asking head of a KB version.

The turns are in the shared format (`context`, `utterance`, `knowledge_seeking`,
`gold_passages`); `callcue kb train` fits a version's parts on them and `callcue eval
knowledge --train/--cv` measures what fitting buys on turns it did not see.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from callcue.knowledge import gate as gates
from callcue.knowledge import rerank
from callcue.knowledge.index import KnowledgeIndex


def load_queries(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        for key in ("utterance", "knowledge_seeking"):
            if key not in r:
                raise ValueError(f"{path} line {n}: a query needs {key!r}")
        r.setdefault("context", [])
        r.setdefault("gold_passages", [])
        r.setdefault("group", r.get("id", str(n)))
        rows.append(r)
    return rows


def turns_of(r: dict[str, Any]) -> list[str]:
    return [str(c.get("text") or "") for c in r["context"]] + [str(r["utterance"])]


def fit(index: KnowledgeIndex, rows: list[dict[str, Any]], qvs: np.ndarray, base: gates.Gate) -> tuple[rerank.Reranker | None, gates.Gate]:
    examples = []
    for r, qv in zip(rows, qvs, strict=True):
        gold = set(r["gold_passages"])
        if not r["knowledge_seeking"] or not gold:
            continue
        c = index.candidates(r["utterance"], qv, index.topic(turns_of(r)))
        if c is None:
            continue
        labels = np.array([index.passages[int(i)].passage_id in gold for i in c.idx], dtype=np.int8)
        if labels.any():
            examples.append((qv, index.vectors[c.idx], c.dense, c.lexical, c.faq, labels))
    rer = rerank.train(examples) if examples else None
    y = np.array([bool(r["knowledge_seeking"]) for r in rows], dtype=np.int8)
    head = gates.train_head(qvs, [r["utterance"] for r in rows], y, base) if 0 < y.sum() < len(y) else base
    return rer, head


