"""Understanding benchmark: per-detector latency on one CPU and a concurrent-call ramp.

Why a script beside `callcue eval latency`: the eval command answers "does 50 calls meet the
budget"; this one maps *where* it stops meeting it (a ramp of call counts), records the
machine and its load average (the box is shared, so a number without its load is
meaningless), and writes everything to JSON for bench/RESULTS.md. Both use the same functions
(callcue.evaluation.latency_eval), so the numbers agree.

    .venv/bin/python bench/understanding.py [--quick] [--ramp 10,25,50] [--asr] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def machine() -> dict[str, Any]:
    """nproc, CPU model, RAM and the load average now: what a reader needs to weigh the numbers."""
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(), "loadavg": os.getloadavg(),
            "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--quick", action="store_true", help="12 dialogues, 6 s per ramp step")
    ap.add_argument("--ramp", default="10,25,50", help="comma list of concurrent call counts")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per ramp step (default 20, quick 6)")
    ap.add_argument("--word-s", type=float, default=0.3, help="seconds between partials of one call")
    ap.add_argument("--asr", action="store_true", help="also run the ASR WER/RTF evaluation (minutes)")
    ap.add_argument("--out", type=Path, default=None, help="write all results as JSON here")
    a = ap.parse_args(argv)
    if not a.data.is_dir():
        print(f"error: data directory {a.data} not found (pass --data)", file=sys.stderr)
        return 2
    try:
        ramp = [int(x) for x in a.ramp.split(",") if x.strip()]
    except ValueError:
        print(f"error: --ramp must be a comma list of integers, got {a.ramp!r}", file=sys.stderr)
        return 2
    from callcue.evaluation import latency_eval as le

    out: dict[str, Any] = {"machine_before": machine(), "word_s": a.word_s}
    print(json.dumps(out["machine_before"]))
    det = le.detector_latency(a.data, quick=a.quick)
    out["detectors"] = det
    print(le.format_report(det, None), flush=True)
    out["ramp"] = []
    for n in ramp:
        conc = le.concurrent_latency(a.data, calls=n, seconds=a.seconds or (6.0 if a.quick else 20.0), word_s=a.word_s)
        conc["loadavg_after"] = os.getloadavg()
        out["ramp"].append(conc)
        print(le.format_report(None, conc) + f"\n  load average after: {conc['loadavg_after']}", flush=True)
    if a.asr:
        from callcue.evaluation.asr_eval import format_report, run_asr_eval

        out["asr"] = run_asr_eval(a.data, quick=a.quick)
        print(format_report(out["asr"]))
    out["machine_after"] = machine()
    print("\n| calls | updates/s | late updates | partial p50 ms | p95 | p99 | final p95 | budget |")
    print("|---|---|---|---|---|---|---|---|")
    for c in out["ramp"]:
        print(f"| {c['calls']} | {c['updates_per_s']} | {c['late_updates']} | {1000 * c['partial']['p50']:.1f} | "
              f"{1000 * c['partial']['p95']:.1f} | {1000 * c['partial']['p99']:.1f} | {1000 * c['final']['p95']:.1f} | "
              f"{'met' if c['meets_budget_p95'] else 'NOT met'} |")
    if a.out:
        a.out.write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
