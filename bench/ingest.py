"""Recorded-call throughput: how many hours of recordings one box gets through per wall hour,
with ASR, and text threads without it.

Voice: real telephone-band recordings (../shared/data/speech/telephone_sim) and the shipped
two-party demo call, copied into a temporary folder and run by `callcue ingest`'s own code
(`callcue.clients.ingest.ingest`: the server's runtime, every detector, playbooks, store,
scorecard and summary) at `--jobs` 1 and 2. Printed per run: audio seconds, wall seconds,
audio hours per wall hour (x real time), audio seconds per CPU second of this process (the
per-core figure), and the 1-minute load. Text: sgd_banking dialogues as chat threads through
the same runtime with recognition off: threads and turns per second.

    python bench/ingest.py                  # voice at jobs 1,2 and 200 text threads
    python bench/ingest.py --jobs 1,2,4 --copies 2 --threads 400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
DEMO = HERE.parent / "server" / "callcue" / "data" / "demo_call.wav"


def voice(jobs: int, copies: int) -> dict[str, float]:
    from callcue.clients.demo import scratch_settings
    from callcue.clients.ingest import ingest

    tmp = Path(tempfile.mkdtemp(prefix="callcue-bench-ingest-"))
    folder = tmp / "rec"
    folder.mkdir()
    clips = sorted((SHARED / "speech" / "telephone_sim").glob("*.wav"))
    if not clips:
        raise SystemExit(f"needs {SHARED}/speech/telephone_sim (the shared data beside the checkout)")
    for k in range(copies):
        for c in clips:
            shutil.copy(c, folder / f"{k}_{c.name}")
        shutil.copy(DEMO, folder / f"{k}_demo_call.wav")
    files = sorted(folder.glob("*.wav"))
    cpu0, t0 = time.process_time(), time.perf_counter()
    results = asyncio.run(ingest(files, scratch_settings(tmp), jobs=jobs))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    audio = sum(r.get("audio_s", 0.0) for r in results)
    failed = sum(r["status"] == "failed" for r in results)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"jobs": jobs, "files": len(files), "failed": failed, "audio_s": audio, "wall_s": wall, "cpu_s": cpu,
            "x_realtime": audio / wall, "audio_per_cpu_s": audio / cpu, "load": os.getloadavg()[0]}  # fmt: skip


def text(n: int) -> dict[str, float]:
    from callcue.clients.demo import scratch_settings
    from callcue.transports.text_thread import run_text_interaction
    from callcue.wiring import assemble

    path = SHARED / "dialogues" / "sgd_banking" / "banks1_train.jsonl"
    threads = []
    with path.open() as f:
        for line in f:
            rec = json.loads(line)
            turns = [{"role": "customer" if t["speaker"] == "user" else "agent", "text": t["text"], "time": 6.0 * i}
                     for i, t in enumerate(rec.get("turns", [])) if t.get("text", "").strip()]  # fmt: skip
            if turns:
                threads.append(turns)
            if len(threads) >= n:
                break
    tmp = Path(tempfile.mkdtemp(prefix="callcue-bench-text-"))

    async def run() -> float:
        rt = await assemble(scratch_settings(tmp, asr_engine="off"))
        try:
            t0 = time.perf_counter()
            for i, turns in enumerate(threads):
                cid = await run_text_interaction(rt.calls, {"interaction_id": f"b{i}", "agent_id": "agent-1", "turns": turns})
                if rt.qa is not None:
                    await rt.qa.done(cid)
            return time.perf_counter() - t0
        finally:
            await rt.close()

    cpu0 = time.process_time()
    wall = asyncio.run(run())
    cpu = time.process_time() - cpu0
    shutil.rmtree(tmp, ignore_errors=True)
    nturns = sum(len(t) for t in threads)
    return {"threads": len(threads), "turns": nturns, "wall_s": wall, "cpu_s": cpu, "threads_per_s": len(threads) / wall,
            "turns_per_s": nturns / wall, "load": os.getloadavg()[0]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--copies", type=int, default=1, help="copies of the recording set")
    ap.add_argument("--threads", type=int, default=200, help="text threads (0: skip)")
    a = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)
    print("| jobs | files | audio s | wall s | audio h per wall h | audio s per CPU s | failed | load |")
    print("|---|---|---|---|---|---|---|---|")
    for j in (int(x) for x in a.jobs.split(",")):
        r = voice(j, a.copies)
        print(f"| {j} | {r['files']} | {r['audio_s']:.0f} | {r['wall_s']:.1f} | {r['x_realtime']:.2f} | "
              f"{r['audio_per_cpu_s']:.2f} | {r['failed']} | {r['load']:.1f} |", flush=True)
    if a.threads:
        t = text(a.threads)
        print(f"\ntext: {t['threads']} threads, {t['turns']} turns in {t['wall_s']:.1f} s: {t['threads_per_s']:.1f} threads/s, "
              f"{t['turns_per_s']:.0f} turns/s, {t['cpu_s']:.1f} CPU s, load {t['load']:.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
