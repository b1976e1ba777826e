"""How long the analytics questions take on a contact centre's month of calls.

Seeds a temporary SQLite store (or `--url` PostgreSQL) with N synthetic fact rows (drivers,
queues, agents and customers drawn from fixed distributions, a third of customers calling
again within two weeks) and M uncovered utterances: real Banking77 customer utterances
(../shared/data), embedded with the intent detector's encoder as the post-call step does.
Then times each report through `Analytics` (the code the REST routes call): p50/p95/p99 over
repeated runs, with the 1-minute load. The topics report runs HDBSCAN over all M utterances.

    python bench/analytics.py                     # 20000 calls, 3000 utterances
    python bench/analytics.py --calls 50000 --utterances 5000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
DRIVERS = ["billing_dispute", "cancel_account", "refund_request", "lost_stolen_card", "card_replacement", "address_change",
           "payment_arrangement", "technical_problem", "upgrade_interest", "complaint", None]  # fmt: skip


def facts(n: int, now: float, rng: np.random.Generator) -> list[dict]:
    out = []
    for i in range(n):
        t = now - rng.uniform(0, 30) * 86400
        cust = f"k{int(rng.integers(0, n * 2 // 3))}"
        out.append({"call_id": f"c{i}", "agent_id": f"agent-{int(rng.integers(0, 60))}",
                    "queue": ["cards", "billing", "retention", "tech"][int(rng.integers(0, 4))], "customer_key": cust,
                    "channel": "voice", "started_at": t, "handle_s": float(rng.gamma(4, 80)),
                    "driver": DRIVERS[int(rng.integers(0, len(DRIVERS)))], "intents": [],
                    "outcome": ["resolved", "follow_up", "escalated", "unknown", "churned"][int(rng.integers(0, 5))],
                    "transfers": int(rng.random() < 0.1), "escalated": int(rng.random() < 0.08),
                    "long_holds": int(rng.random() < 0.05), "dead_air": int(rng.poisson(0.3)),
                    "negative_end": int(rng.random() < 0.15), "csat_estimate": float(rng.uniform(1, 5)),
                    "qa_score": float(rng.uniform(40, 100)), "hint_group": ["accepted", "dismissed", "no_verdict", "none_shown"][int(rng.integers(0, 4))],
                    "playbooks": ["retention_offer"] if rng.random() < 0.3 else []})  # fmt: skip
    return out


async def main(a: argparse.Namespace) -> None:
    from callcue.analytics.service import Analytics
    from callcue.analytics.store import AnalyticsStore, pack
    from callcue.store.db import Database
    from callcue.understand.encoder import SentenceEncoder

    tmp = Path(tempfile.mkdtemp(prefix="callcue-bench-analytics-"))
    db = await Database.connect(a.url or f"sqlite:///{tmp}/a.db")
    store = AnalyticsStore(db)
    await store.init()
    rng = np.random.default_rng(0)
    now = time.time()
    rows = facts(a.calls, now, rng)
    texts = [json.loads(x)["text"] for x in (SHARED / "text" / "banking77" / "train.jsonl").open()]
    texts = [texts[i] for i in rng.choice(len(texts), a.utterances, replace=False)]
    enc = SentenceEncoder.load()
    t0 = time.perf_counter()
    emb = enc.embed(texts)
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    async with db.transaction():
        for f in rows:
            await db.execute("INSERT INTO call_facts (call_id, agent_id, queue, customer_key, channel, started_at, handle_s, driver,"
                             " outcome, qa_score, csat_estimate, fact, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (f["call_id"], f["agent_id"], f["queue"], f["customer_key"], "voice", f["started_at"], f["handle_s"],
                              f["driver"], f["outcome"], f["qa_score"], f["csat_estimate"], json.dumps(f), now))  # fmt: skip
        await db.executemany("INSERT INTO topic_utterances (call_id, segment_id, ts, text, embedding, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                             [(f"c{i}", 1, now - i, t, pack(e), now) for i, (t, e) in enumerate(zip(texts, emb, strict=True))])
    seed_s = time.perf_counter() - t0
    an = Analytics(store, enc.embed)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {a.calls} calls, {a.utterances} utterances "
          f"({'PostgreSQL' if a.url else 'SQLite'}); embedding {a.utterances / embed_s:.0f}/s, seeding {seed_s:.1f} s")
    print("| report | p50 ms | p95 ms | p99 ms | runs | load |\n|---|---|---|---|---|---|")
    for name, fn, args in (("drivers by day", an.drivers, {"days": 30, "by": "day"}),
                           ("friction by driver", an.friction, {"days": 30}),
                           ("kpis by day", an.kpis, {"days": 30}),
                           ("topics", an.topics, {"days": 30})):  # fmt: skip
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            out = await fn(args)
            times.append(1000 * (time.perf_counter() - t0))
        p = np.percentile(times, [50, 95, 99])
        extra = f" ({len(out['topics'])} topics)" if name == "topics" else ""
        print(f"| {name}{extra} | {p[0]:.0f} | {p[1]:.0f} | {p[2]:.0f} | {a.runs} | {os.getloadavg()[0]:.1f} |", flush=True)
    await db.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--utterances", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--url", default="", help="a PostgreSQL URL instead of a temporary SQLite file")
    asyncio.run(main(ap.parse_args()))
