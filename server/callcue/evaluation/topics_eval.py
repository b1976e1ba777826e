"""`callcue eval topics`: do emerging topics recover intents the configuration does not have?

On a real intent corpus (Banking77, CLINC150) some intents are held out of the "configured"
set. The configured intents are trained as a deployment would have them (10 examples each,
the shipped out-of-scope threshold 0.5); held-out and configured test utterances then go
through that classifier, and what it leaves uncovered is clustered exactly as the analytics
page does (`callcue.analytics.topics`: HDBSCAN, leaf selection). Reported per split:
- reach: the share of held-out utterances the classifier left uncovered (the rest it
  confidently filed under some configured intent, which no clustering can undo);
- purity and coverage of the clusters against the held-out labels (`purity_coverage`);
- discovered: held-out intents that are the majority of at least one cluster;
- k-means with k = the number of held-out intents on the same utterances, as a peer that is
  told the answer's size (its purity is the ceiling a lead would get by guessing k right).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

CORPORA = {"banking77": ("text/banking77/train.jsonl", 10), "clinc150": ("text/clinc150/train.jsonl", 15)}


def _rows(data: Path, rel: str) -> list[dict[str, Any]]:
    with (data / rel).open() as f:
        return [json.loads(line) for line in f]


def split(rows: list[dict[str, Any]], held: int, seed: int, shots: int = 10, test_per: int = 30) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    by: dict[str, list[str]] = {}
    for r in rows:
        by.setdefault(r["intent"], []).append(r["text"])
    labels = sorted(by)
    out = set(rng.choice(labels, held, replace=False).tolist())
    tr_x, tr_y, te_x, te_y = [], [], [], []
    for lab in labels:
        xs = list(by[lab])
        rng.shuffle(xs)
        if lab in out:
            te_x += xs[:test_per]
            te_y += [lab] * len(xs[:test_per])
        else:
            tr_x += xs[:shots]
            tr_y += [lab] * shots
            te_x += xs[shots:shots + test_per]
            te_y += [lab] * len(xs[shots:shots + test_per])
    return {"held_out": out, "train": (tr_x, tr_y), "test": (te_x, te_y)}


def run_split(rows: list[dict[str, Any]], held: int, seed: int, encoder: Any, *, threshold: float = 0.5,
              min_cluster_size: int = 5) -> dict[str, Any]:  # fmt: skip
    from sklearn.cluster import KMeans

    from callcue.analytics.topics import cluster_labels, purity_coverage
    from callcue.understand.intents import IntentClassifier

    s = split(rows, held, seed)
    tr_x, tr_y = s["train"]
    te_x, te_y = s["test"]
    t0 = time.perf_counter()
    clf = IntentClassifier(encoder, oos_threshold=threshold, seed=seed).fit(tr_x, tr_y)
    emb = encoder.embed(te_x)
    pred = clf.predict(te_x, embeddings=emb)
    unc = [i for i, p in enumerate(pred) if not p.in_scope]
    gold = [te_y[i] for i in unc]
    x = emb[unc]
    labels = cluster_labels(x, min_cluster_size=min_cluster_size)
    ours = purity_coverage(labels, gold, s["held_out"])
    held_total = sum(1 for y in te_y if y in s["held_out"])
    reached = sum(1 for y in gold if y in s["held_out"])
    km = KMeans(n_clusters=held, n_init=10, random_state=seed).fit_predict(x) if len(x) >= held else np.full(len(x), -1)
    peer = purity_coverage(np.asarray(km), gold, s["held_out"])
    clustered = labels != -1
    known_in = sum(1 for i, g in enumerate(gold) if clustered[i] and g not in s["held_out"])
    return {"seed": seed, "held_out": sorted(s["held_out"]), "configured": len(set(tr_y)), "test": len(te_x),
            "uncovered": len(unc), "reach": round(reached / held_total, 3) if held_total else None,
            "ours": ours, "kmeans": peer,
            "known_in_clusters": round(known_in / max(1, int(clustered.sum())), 3),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def run_topics_eval(data: Path, *, quick: bool = False, seeds: tuple[int, ...] = (0, 1, 2),
                    corpora: tuple[str, ...] = ("banking77", "clinc150")) -> dict[str, Any]:  # fmt: skip
    from callcue.understand.encoder import SentenceEncoder

    enc = SentenceEncoder.load()
    out: dict[str, Any] = {}
    for name in corpora:
        rel, held = CORPORA[name]
        rows = _rows(data, rel)
        out[name] = [run_split(rows, held, seed, enc) for seed in (seeds[:1] if quick else seeds)]
    return out


def format_report(res: dict[str, Any]) -> str:
    lines = ["Emerging topics vs held-out intents (configured intents: 10 examples each, OOS threshold 0.5;",
             "HDBSCAN leaf, min_cluster_size 5; k-means is told k = number of held-out intents)", ""]
    head = ["corpus", "seed", "held out", "uncovered", "reach", "clusters", "purity", "coverage", "discovered",
            "known in clusters", "k-means purity", "k-means coverage"]
    rows = []
    for name, splits in res.items():
        for s in splits:
            o, k = s["ours"], s["kmeans"]
            rows.append([name, s["seed"], len(s["held_out"]), s["uncovered"], s["reach"], o["clusters"], o["purity"],
                         o["coverage"], f"{o['discovered_intents']}/{o['held_out_intents']}", s["known_in_clusters"],
                         k["purity"], k["coverage"]])
    w = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r))
    return "\n".join(lines + [fmt(head), fmt(["-" * x for x in w]), *map(fmt, rows)])
