"""Knowledge assist, measured: retrieval quality and time per query on the shared labelled
sets, with the BM25 reference beside, and the time from a customer's final to the knowledge
card on a subscriber of a live server.

1. `callcue eval knowledge` on each set under ../shared/data/knowledge (DSTC11 track 5 dev,
   DSTC10 track 2 spoken dev): hit@1, hit@5, MRR, show precision/recall, p50/p95 per query
   (cold: each turn's vector computed in the timing).
2. A server assembled from the shipped config (temporary SQLite): `--calls` concurrent calls,
   each pushing customer questions the demo KB answers, one final every `--gap` seconds;
   final pushed -> card received by a supervisor-style subscriber, p50/p95/p99.

The 1-minute load average is recorded before and after each part.

    python bench/knowledge.py                       # both parts
    python bench/knowledge.py --skip-eval --calls 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
SHARED = HERE.parent.parent / "shared" / "data" / "knowledge"
QUESTIONS = ["How long does a replacement card take to arrive?", "Is there a fee to close my account?",
             "Can I still dispute a charge after thirty days?", "What are your opening hours on Saturday?",
             "How much is the overdraft fee?", "Can I pay by card over the phone?", "I was charged twice, what can you do?",
             "I want to speak to a manager about a complaint."]  # fmt: skip


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q)) if xs else float("nan")


def run_eval() -> dict:
    from callcue.evaluation.knowledge_eval import render, run
    from callcue.understand.encoder import SentenceEncoder

    enc = SentenceEncoder.load()
    out = {}
    for name in ("dstc11_track5", "dstc10_track2_spoken"):
        d = SHARED / name
        if not (d / "kb.jsonl").exists():
            continue
        load_before = os.getloadavg()[0]
        res = run(d / "kb.jsonl", d / "dev.jsonl", embed=enc.embed)
        res["load_before"], res["load_after"] = load_before, os.getloadavg()[0]
        print(render(res), flush=True)
        out[name] = res
    return out


async def run_live(calls: int, questions: int, gap: float) -> dict:
    from serverkit import make_settings

    from callcue.egress.hub import Principal, Subscriber
    from callcue.events import Transcript, Word
    from callcue.platforms.base import CallStart
    from callcue.wiring import assemble

    with tempfile.TemporaryDirectory() as tmp:
        rt = await assemble(make_settings(Path(tmp)))
        sub = Subscriber(Principal("bench", "supervisor"), queue_size=100_000)
        sub.all_calls = True
        rt.hub.register(sub)
        pushed: dict[tuple[str, int], float] = {}
        lat: list[float] = []
        load_before = os.getloadavg()[0]

        async def one(c: int) -> None:
            cid = f"kbbench-{c}"
            call = await rt.calls.start(CallStart(cid, "PCMU", 8000, ("customer", "agent"), agent_id="agent-1"))
            for q in range(questions):
                text = QUESTIONS[(c + q) % len(QUESTIONS)]
                words = [Word(w, 1.0 + 10 * q + 0.3 * i, 1.25 + 10 * q + 0.3 * i, 0.9) for i, w in enumerate(text.split())]
                t = Transcript(cid, "customer", q + 1, 1, text, True, words[0].start, words[-1].end, words=words,
                               confidence=0.9, audio_received_at=time.time())  # fmt: skip
                pushed[(cid, q + 1)] = time.perf_counter()
                await call.text(t)
                await asyncio.sleep(gap)
            await rt.calls.stop(cid)

        async def collect() -> None:
            while True:
                ev = await sub.queue.get()
                if ev.get("type") == "hint" and (ev.get("attrs") or {}).get("card") == "knowledge":
                    # a call asks its next question only after `gap`: the card answers its latest
                    latest = max((k for k in pushed if k[0] == ev["call_id"]), key=lambda k: pushed[k], default=None)
                    if latest is not None:
                        lat.append(time.perf_counter() - pushed[latest])

        col = asyncio.create_task(collect())
        t0 = time.perf_counter()
        await asyncio.gather(*(one(c) for c in range(calls)))
        await asyncio.sleep(0.5)
        col.cancel()
        wall = time.perf_counter() - t0
        await rt.close()
    res = {"calls": calls, "questions_per_call": questions, "gap_s": gap, "cards": len(lat), "asked": calls * questions,
           "final_to_card_ms": {"p50": 1000 * pct(lat, 50), "p95": 1000 * pct(lat, 95), "p99": 1000 * pct(lat, 99)},
           "wall_s": round(wall, 1), "load_before": load_before, "load_after": os.getloadavg()[0], "cores": os.cpu_count()}  # fmt: skip
    print(json.dumps(res, indent=2), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=8)
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--gap", type=float, default=2.0, help="seconds between a call's questions")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    out: dict = {}
    if not a.skip_eval:
        out["eval"] = run_eval()
    if not a.skip_live:
        out["live"] = asyncio.run(run_live(a.calls, a.questions, a.gap))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
