"""Understanding latency: per detector on one core, and per partial under 50 concurrent calls.

Why real dialogue turns replayed word by word: the detectors' cost depends on text length and
on per-call state (debouncing, history, digit runs across utterances), and a live recognizer
re-sends a growing partial for every new word before the final. So each customer/agent turn of
MultiDoGo and SGD becomes partials of 1, 2, ... n words and then a final, on the call clock.

Two measurements:

* `detector_latency`: every transcript update through the redactor and then each detector in
  server order, timed one by one, with the whole process pinned to one CPU
  (`os.sched_setaffinity` on every thread of the process, so onnxruntime's threads too). This
  is the cost of each piece, free of queueing.
* `concurrent_latency`: a real assembled runtime (shipped config, real detect pool, playbook decision
  engine on a scratch SQLite) and 50 real `Call`s; each call pushes its updates through its own
  `call.pipeline` (redact -> detect in the pool -> decide -> sink) at speaking pace, and the
  time `push` takes is the understanding time of that update, queueing for the pool included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from callcue.events import Channel, Transcript, Word
from callcue.pipeline.call import Call
from callcue.understand.base import CallContext

WORD_S = 0.3  # seconds per spoken word (~200 words/min): the pace partials arrive at
BUDGET_S = 0.050


@dataclass(frozen=True, slots=True)
class Turn:
    channel: Channel
    text: str


def load_conversations(data_dir: Path, *, limit: int | None = None) -> list[list[Turn]]:
    """SGD Banks_1 dialogues (user -> customer, system -> agent) interleaved with MultiDoGo
    dev conversations (customer turns only), so both channels and several domains appear."""
    data_dir = Path(data_dir)
    sgd = data_dir / "dialogues" / "sgd_banking" / "banks1_train.jsonl"
    mdg = sorted((data_dir / "dialogues" / "multidogo").glob("*_dev.jsonl"))
    if not sgd.is_file() and not mdg:
        raise FileNotFoundError(f"no dialogues under {data_dir / 'dialogues'} (sgd_banking, multidogo)")
    a: list[list[Turn]] = []
    if sgd.is_file():
        for line in sgd.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                a.append([Turn("customer" if t["speaker"] == "user" else "agent", t["text"])
                          for t in d["turns"] if t["text"].strip()])
    b: list[list[Turn]] = []
    for p in mdg:
        for line in p.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                b.append([Turn("customer", t["text"]) for t in d["turns"]
                          if t["speaker"] == "customer" and t["text"].strip()])
    convs = [c for pair in zip(a, b) for c in pair] + a[len(b):] + b[len(a):]
    convs = [c for c in convs if c]
    return convs[:limit] if limit else convs


def updates(call_id: str, turns: list[Turn], word_s: float = WORD_S) -> Iterator[tuple[float, Transcript]]:
    """(call-clock time, transcript) for every growing partial and the final of every turn."""
    clock = 0.5
    for seg, turn in enumerate(turns, start=1):
        words = turn.text.split()
        start = clock
        timed = [Word(w, start + i * word_s, start + (i + 1) * word_s - 0.05, 0.9) for i, w in enumerate(words)]
        for k in range(1, len(words) + 1):
            yield timed[k - 1].end, Transcript(call_id, turn.channel, seg, k - 1, " ".join(words[:k]), False,
                                               start, timed[k - 1].end, timed[:k], 0.8, "replay")
        end = timed[-1].end + 0.3
        yield end, Transcript(call_id, turn.channel, seg, len(words), turn.text, True, start, timed[-1].end,
                              timed, 0.9, "replay")
        clock = end + 0.7


def percentiles(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=float)
    if not a.size:
        return {"n": 0, "mean": float("nan"), "p50": float("nan"), "p95": float("nan"), "p99": float("nan"),
                "max": float("nan")}
    return {"n": int(a.size), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


@contextlib.contextmanager
def one_cpu(cpu: int | None = None) -> Iterator[int]:
    """Pin every thread of this process to one CPU, restore afterwards.

    Per thread because Linux affinity is per thread and onnxruntime / executor threads that
    already exist would otherwise keep running on the other core.
    """
    before = os.sched_getaffinity(0)
    target = min(before) if cpu is None else cpu
    if target not in before:
        raise ValueError(f"CPU {target} is not available to this process (allowed: {sorted(before)})")
    tids = [int(t) for t in os.listdir("/proc/self/task")]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, {target})
    try:
        yield target
    finally:
        for tid in [int(t) for t in os.listdir("/proc/self/task")]:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, before)


def _build_detectors() -> list[Any]:
    """The server's detector list, built by the same function the server uses."""
    from callcue.config import load_settings
    from callcue.understand.suite import _load_sync

    return list(_load_sync(load_settings()).detectors)


def detector_latency(data_dir: str | Path, *, quick: bool = False, cpu: int | None = None) -> dict[str, Any]:
    """p50/p95/p99 of the redactor and each detector per transcript update, partials and finals
    apart, one CPU. Blocking (it is the measurement)."""
    from callcue.privacy.redactor import Redactor

    convs = load_conversations(Path(data_dir), limit=12 if quick else 400)
    detectors = _build_detectors()
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)

    def run_call(i: int, turns: list[Turn], record: bool) -> None:
        call_id = f"lat-{i}"
        ctx = CallContext(call_id=call_id, agent_id="agent-1", metadata={"channels": ["customer", "agent"]})
        ctx.history = deque(maxlen=50)  # type: ignore[assignment]  # as DetectProcessor sets it
        seen: deque[Any] = ctx.state.setdefault("signals", deque(maxlen=500))
        redactor = Redactor(call_id)
        for _, t in updates(call_id, turns):
            kind = "final" if t.is_final else "partial"
            t0 = time.perf_counter()
            masked, red_sigs = redactor.redact(t)
            t1 = time.perf_counter()
            seen.extend(red_sigs)
            if masked.is_final:
                ctx.history.append(masked)
            per = {"redact": t1 - t0}
            for d in detectors:
                s0 = time.perf_counter()
                found = d.detect(masked, ctx)
                per[d.name] = time.perf_counter() - s0
                seen.extend(found)
            if record:
                for name, v in per.items():
                    samples[(name, kind)].append(v)
                samples[("total", kind)].append(sum(per.values()))

    with one_cpu(cpu) as pinned:
        run_call(-1, convs[0], record=False)  # warm-up: first encoder run, regex caches
        t0 = time.perf_counter()
        for i, turns in enumerate(convs):
            run_call(i, turns, record=True)
        wall = time.perf_counter() - t0
    names = ["redact", *[d.name for d in detectors], "total"]
    return {
        "cpu": pinned, "conversations": len(convs), "wall_s": round(wall, 1),
        "updates": {k: len(samples[("total", k)]) for k in ("partial", "final")},
        "detectors": [f"{d.name}@{getattr(d, 'version', '?')}" for d in detectors],
        "rows": {n: {k: percentiles(samples[(n, k)]) for k in ("partial", "final")} for n in names},
    }


async def _concurrent(data_dir: Path, calls: int, seconds: float, seed: int, word_s: float) -> dict[str, Any]:
    from callcue.config import StorageConfig, load_settings
    from callcue.platforms.base import CallStart
    from callcue.wiring import assemble

    convs = load_conversations(data_dir)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="callcue-latency-") as tmp:
        settings = load_settings()
        settings = settings.model_copy(update={"storage": StorageConfig(url=f"sqlite:///{tmp}/latency.db")})
        rt = await assemble(settings)
        samples: dict[str, list[float]] = {"partial": [], "final": []}
        behind: list[float] = []
        try:
            started = [await rt.calls.start(CallStart(
                call_id=f"lat-{i}", encoding="PCMU", sample_rate=8000, channels=("customer", "agent"),
                agent_id="agent-1", platform="native")) for i in range(calls)]

            async def drive(i: int) -> None:
                call = started[i]
                assert isinstance(call, Call)  # no `join`: a call of its own, never a leg
                # each call talks through random conversations until time is up
                await asyncio.sleep(rng.uniform(0, 2.0))
                t_start = time.perf_counter()
                offset = 0.0
                segments = 0  # segment ids keep counting up across conversations, as in one call
                while True:
                    turns = convs[rng.randrange(len(convs))]
                    last = 0.0
                    for at, t in updates(call.call_id, turns, word_s):
                        t.segment_id += segments
                        t.start += offset
                        t.end += offset
                        due = t_start + offset + at
                        if due - t_start > seconds:
                            return
                        wait = due - time.perf_counter()
                        if wait > 0:
                            await asyncio.sleep(wait)
                        else:
                            behind.append(-wait)
                        t.audio_received_at = time.time()
                        s0 = time.perf_counter()
                        await call.pipeline.push(t)
                        samples["final" if t.is_final else "partial"].append(time.perf_counter() - s0)
                        last = at
                    offset += last + 1.0
                    segments += len(turns)

            t0 = time.perf_counter()
            await asyncio.gather(*(drive(i) for i in range(calls)))
            wall = time.perf_counter() - t0
        finally:
            await rt.close()
    n = len(samples["partial"]) + len(samples["final"])
    return {
        "calls": calls, "seconds": seconds, "word_s": word_s, "wall_s": round(wall, 1), "updates": n,
        "updates_per_s": round(n / wall, 1) if wall else 0.0, "cores": os.cpu_count(),
        "detect_pool_threads": rt.detect_pool._max_workers,
        "decision_engine": rt.engine is not None,
        "partial": percentiles(samples["partial"]), "final": percentiles(samples["final"]),
        "late_updates": len(behind), "late_p95_s": percentiles(behind)["p95"] if behind else 0.0,
        "budget_s": BUDGET_S,
        "meets_budget_p95": percentiles(samples["partial"])["p95"] <= BUDGET_S,
    }


def concurrent_latency(data_dir: str | Path, *, calls: int = 50, seconds: float = 30.0, seed: int = 0,
                       word_s: float = WORD_S) -> dict[str, Any]:
    """Understanding time per update with `calls` calls talking at once, one partial per `word_s`
    seconds per call (blocking; runs its own event loop)."""
    if calls < 1 or seconds <= 0 or word_s <= 0:
        raise ValueError(f"calls must be >= 1, seconds > 0 and word_s > 0; got {calls=} {seconds=} {word_s=}")
    return asyncio.run(_concurrent(Path(data_dir), calls, seconds, seed, word_s))


def _ms(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{1000 * x:.2f}"


def format_report(det: dict[str, Any] | None, conc: dict[str, Any] | None) -> str:
    out: list[str] = []
    if det is not None:
        out.append(f"Per-detector latency per transcript update, ms (one CPU: all threads pinned to CPU {det['cpu']} "
                   f"with sched_setaffinity; {det['conversations']} dialogues replayed word by word: "
                   f"{det['updates']['partial']} partials, {det['updates']['final']} finals; {det['wall_s']} s)")
        head = ["stage", "partial mean", "partial p50", "partial p95", "partial p99", "final p50", "final p95", "final p99"]
        rows = [[n, _ms(r["partial"]["mean"]), _ms(r["partial"]["p50"]), _ms(r["partial"]["p95"]), _ms(r["partial"]["p99"]),
                 _ms(r["final"]["p50"]), _ms(r["final"]["p95"]), _ms(r["final"]["p99"])] for n, r in det["rows"].items()]
        w = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
        line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r))
        out += [line(head), line(["-" * x for x in w]), *map(line, rows)]
    if conc is not None:
        p, f = conc["partial"], conc["final"]
        out.append(
            f"\nUnderstanding time per update under {conc['calls']} concurrent calls (real runtime + Call pipelines: "
            f"redact -> detect pool ({conc['detect_pool_threads']} threads, {conc['cores']} cores) -> decide"
            f"{' (playbook engine)' if conc['decision_engine'] else ''} -> sink; {conc['updates']} updates in "
            f"{conc['wall_s']} s = {conc['updates_per_s']}/s; each call: one partial per {conc['word_s']} s of speech, "
            "a final 0.3 s after the last word, 0.7 s between turns)")
        out.append(f"  partial: p50 {_ms(p['p50'])} ms  p95 {_ms(p['p95'])} ms  p99 {_ms(p['p99'])} ms  "
                   f"max {_ms(p['max'])} ms  (n={p['n']})")
        out.append(f"  final  : p50 {_ms(f['p50'])} ms  p95 {_ms(f['p95'])} ms  p99 {_ms(f['p99'])} ms  "
                   f"max {_ms(f['max'])} ms  (n={f['n']})")
        out.append(f"  updates sent late by the driver: {conc['late_updates']} (p95 {_ms(conc['late_p95_s'])} ms)")
        out.append(f"  50 ms budget (partial p95): {'MET' if conc['meets_budget_p95'] else 'NOT MET'}")
    return "\n".join(out)
