"""`callcue eval knowledge`: retrieval and the show decision on labelled dialogue turns.

Input files in the shared format: `kb.jsonl` passages (or any folder `callcue kb import`
reads) and queries, one JSON object per line with `context` (earlier turns, `speaker` and
`text`), `utterance`, `knowledge_seeking` and `gold_passages`. Over the knowledge-seeking
turns it reports hit@1, hit@5 and MRR of a gold passage; over all turns the precision and
recall of the decision to show a card; and the time per query. A BM25 reference (the same
`bm25s` index, utterance plus the four turns before it as the query, no topic) runs beside.

`--train FILE` fits the learned re-ranker and the asking head on other labelled turns
first; `--cv K` instead reports K-fold cross-validation by dialogue (each fold scored by
parts fitted on the others), so no number is measured on what it was fitted on.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from callcue.knowledge import gate as gates
from callcue.knowledge.index import CANDIDATES, KnowledgeIndex
from callcue.knowledge.passages import Passage, read_path
from callcue.knowledge.training import fit, load_queries, turns_of

EmbedFn = Callable[[list[str]], np.ndarray]


def _cache_dir() -> Path:
    base = os.environ.get("CALLCUE_MODELS_DIR") or str(Path.home() / ".cache" / "callcue" / "models")
    return Path(base) / "kb-vectors"


def index_for(passages: list[Passage], embed: EmbedFn, version: int = 0) -> KnowledgeIndex:
    """The index, its passage vectors cached by content (12k passages take about 40 s to embed)."""
    digest = hashlib.sha256("\n".join(p.digest() for p in passages).encode()).hexdigest()[:24]
    f = _cache_dir() / f"{digest}.npy"
    if f.exists():
        vecs = np.load(f)
        if len(vecs) == len(passages):
            return KnowledgeIndex(passages, vecs, embed, version)
    idx = KnowledgeIndex.build(passages, embed, version)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp.npy")
    np.save(tmp, idx.vectors.astype(np.float32))
    tmp.replace(f)
    return idx


def _score(index: KnowledgeIndex, rows: list[dict[str, Any]], gate: gates.Gate) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        t0 = time.perf_counter()  # a live turn's cost: its vector, its topic, the search, the decision
        qv = index.embed([r["utterance"]])[0]
        hits = index.search(r["utterance"], topic=index.topic(turns_of(r)), k=CANDIDATES, query_vector=qv)
        shown = bool(hits) and gate.show(r["utterance"], hits[0].score, qv)
        elapsed = time.perf_counter() - t0
        ranked = [h.passage.passage_id for h in hits]
        gold = set(r["gold_passages"])
        first = next((k for k, pid in enumerate(ranked) if pid in gold), None)
        out.append({"ks": bool(r["knowledge_seeking"]), "first": first, "shown": shown, "s": elapsed})
    return out


def _bm25_reference(index: KnowledgeIndex, rows: list[dict[str, Any]]) -> dict[str, float]:
    firsts = []
    for r in rows:
        if not r["knowledge_seeking"]:
            continue
        q = " ".join(turns_of(r)[-5:])
        scores = index.lexical_scores(q)
        ranked = [index.passages[int(j)].passage_id for j in np.argsort(-scores, kind="stable")[:CANDIDATES]]
        gold = set(r["gold_passages"])
        firsts.append(next((k for k, pid in enumerate(ranked) if pid in gold), None))
    return _ranks(firsts)


def _ranks(firsts: list[int | None]) -> dict[str, float]:
    n = max(1, len(firsts))
    return {"n": len(firsts), "hit@1": sum(f is not None and f < 1 for f in firsts) / n,
            "hit@5": sum(f is not None and f < 5 for f in firsts) / n,
            "mrr": sum(1 / (f + 1) for f in firsts if f is not None) / n}  # fmt: skip


def summarise(scored: list[dict[str, Any]]) -> dict[str, Any]:
    ks = [s for s in scored if s["ks"]]
    tp = sum(s["shown"] and s["ks"] for s in scored)
    shown = sum(s["shown"] for s in scored)
    times = np.array([s["s"] for s in scored]) * 1000 if scored else np.zeros(1)
    return {**_ranks([s["first"] for s in ks]), "turns": len(scored),
            "show_precision": tp / shown if shown else float("nan"), "show_recall": tp / len(ks) if ks else float("nan"),
            "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}  # fmt: skip


def run(kb: Path, queries: Path, *, embed: EmbedFn, train: Path | None = None, cv: int = 0,
        gate: gates.Gate | None = None) -> dict[str, Any]:  # fmt: skip
    base = gate or gates.Gate()
    t0 = time.perf_counter()
    passages = read_path(kb)
    index = index_for(passages, embed)
    load_s = time.perf_counter() - t0
    rows = load_queries(queries)
    result: dict[str, Any] = {"kb": str(kb), "passages": len(passages), "queries": str(queries), "load_s": round(load_s, 1),
                              "entities": len(index.names.entities), "load_avg": os.getloadavg()[0]}  # fmt: skip
    # first, while no turn's vector is cached: each query's time includes embedding it
    result["plain"] = summarise(_score(index, rows, base))
    qvs = embed([r["utterance"] for r in rows])
    if train is not None:
        trows = load_queries(train)
        index.reranker, head = fit(index, trows, embed([r["utterance"] for r in trows]), base)
        result["trained"] = {**summarise(_score(index, rows, head)), "trained_on": str(train)}
        index.reranker = None
    elif cv > 1:
        groups = sorted({str(r["group"]) for r in rows})
        fold_of = {g: int(hashlib.sha1(g.encode()).hexdigest(), 16) % cv for g in groups}
        scored: list[dict[str, Any]] = []
        for f in range(cv):
            fit_i = [i for i, r in enumerate(rows) if fold_of[str(r["group"])] != f]
            test_i = [i for i, r in enumerate(rows) if fold_of[str(r["group"])] == f]
            index.reranker, head = fit(index, [rows[i] for i in fit_i], qvs[fit_i], base)
            scored += _score(index, [rows[i] for i in test_i], head)
        index.reranker = None
        result["cv"] = {**summarise(scored), "folds": cv}
    result["bm25_reference"] = _bm25_reference(index, rows)
    return result


def render(res: dict[str, Any]) -> str:
    def pct(x: float) -> str:
        return "  n/a" if x != x else f"{100 * x:5.1f}"

    lines = [f"Knowledge retrieval: {res['passages']} passages ({res['entities']} entities) from {res['kb']}; "
             f"index ready in {res['load_s']} s; load average {res['load_avg']:.2f}",
             "(time per query: the turn's vector, its topic, the search and the show decision, one core;"
             " in the rows after the first the turn's vector is already cached)",
             f"{'setting':<34} {'turns':>5} {'asked':>5} {'hit@1':>6} {'hit@5':>6} {'MRR':>6} {'show P':>7} {'show R':>7} "
             f"{'p50 ms':>7} {'p95 ms':>7}"]  # fmt: skip
    names = {"plain": "hybrid + topic (no training)", "trained": "+ re-ranker and asking head",
             "cv": f"+ re-ranker and head ({res.get('cv', {}).get('folds', '')}-fold CV)"}
    for key in ("plain", "trained", "cv"):
        if key in res:
            m = res[key]
            lines.append(f"{names[key]:<34} {m['turns']:>5} {m['n']:>5} {pct(m['hit@1']):>6} {pct(m['hit@5']):>6} "
                         f"{pct(m['mrr']):>6} {pct(m['show_precision']):>7} {pct(m['show_recall']):>7} "
                         f"{m['p50_ms']:>7.1f} {m['p95_ms']:>7.1f}")  # fmt: skip
    b = res["bm25_reference"]
    lines.append(f"{'BM25 reference (utterance + 4 turns)':<34} {'':>5} {b['n']:>5} {pct(b['hit@1']):>6} {pct(b['hit@5']):>6} "
                 f"{pct(b['mrr']):>6}")  # fmt: skip
    return "\n".join(lines)
