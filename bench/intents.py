"""Latency of intent classification per utterance, on one core.

Why per utterance and one core: the detector runs on every partial transcript of every live
call, one utterance at a time, in an executor thread; batching across calls is not available
and the server shares two cores with everything else. So we measure exactly that call path:
`IntentClassifier.predict([text])` (embedding + TF-IDF + logistic regression + calibration),
and the embedding alone, over real customer utterances, after a warm-up.

Also reports throughput with N threads, to check that calls from several executor threads
scale (the ONNX session uses one intra-op thread per call).

Usage:  .venv/bin/python bench/intents.py [--data ../shared/data] [--n 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from callcue.understand.encoder import SentenceEncoder
from callcue.understand.intents import (
    IntentClassifier,
    default_config_path,
    load_intents,
)

REPO = Path(__file__).resolve().parents[1]


def utterances(data: Path, n: int) -> list[str]:
    """Real customer turns (MultiDoGo finance dev) of 3+ words: what the detector sees."""
    path = data / "dialogues" / "multidogo" / "finance_dev.jsonl"
    if not path.exists():
        raise SystemExit(f"{path} not found (pass --data)")
    out: list[str] = []
    for line in path.read_text().splitlines():
        for t in json.loads(line)["turns"]:
            if t["speaker"] == "customer" and len(t["text"].split()) >= 3:
                out.append(t["text"])
    rng = np.random.default_rng(0)
    return [out[i] for i in rng.choice(len(out), size=min(n, len(out)), replace=False)]


def timed(fn, texts: list[str]) -> np.ndarray:
    ms = []
    for t in texts:
        t0 = time.perf_counter()
        fn([t])
        ms.append((time.perf_counter() - t0) * 1e3)
    return np.array(ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    texts = utterances(args.data, args.n)
    t0 = time.perf_counter()
    enc = SentenceEncoder.load()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    clf = IntentClassifier.from_config(load_intents(default_config_path()), enc)
    fit_s = time.perf_counter() - t0
    for t in texts[:20]:  # warm-up: first runs allocate
        clf.predict([t])

    emb_ms = timed(enc.embed, texts)
    clf_ms = timed(clf.predict, texts)
    n_tok = [len(t.split()) for t in texts]

    def worker(chunk: list[str]) -> None:
        for t in chunk:
            clf.predict([t])

    t0 = time.perf_counter()
    worker(texts)
    one_thread = len(texts) / (time.perf_counter() - t0)
    chunks = [texts[i :: args.threads] for i in range(args.threads)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as ex:
        list(ex.map(worker, chunks))
    many = len(texts) / (time.perf_counter() - t0)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible; "
          f"load average {os.getloadavg()[0]:.1f} (other work on the box inflates these numbers)")
    print(f"utterances: {len(texts)} real customer turns, {np.mean(n_tok):.1f} words on average")
    print(f"encoder load + sha256: {load_s * 1e3:.0f} ms; starter classifier fit (incl. calibration): {fit_s * 1e3:.0f} ms")
    print(f"embed only        p50 {np.percentile(emb_ms, 50):6.2f} ms   p95 {np.percentile(emb_ms, 95):6.2f} ms")
    print(f"classify (full)   p50 {np.percentile(clf_ms, 50):6.2f} ms   p95 {np.percentile(clf_ms, 95):6.2f} ms")
    print(f"throughput: {one_thread:.0f} utt/s on 1 thread, {many:.0f} utt/s on {args.threads} threads")


if __name__ == "__main__":
    main()
