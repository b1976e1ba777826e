"""Agent desktop speed, measured in the browser: hint sent -> card painted, and frame time with
a 60-minute call's transcript on the page.

A real server runs in-process (SQLite under a temporary folder) with one live call opened in
its call manager; the call's events go through the real Sink (stored, numbered, sent in
order) and `/ws/agent` to the real agent desktop in headless Chromium (`desktop_probe.mjs`,
playwright-core from client_js). The driver writes a 60-minute transcript (both channels, the
turns of real banking dialogues from ../shared/data/dialogues/sgd_banking, one final every 1.5 s
of call time, as a long call produces), waits until the page shows it, then for `--seconds`
streams what a live call adds (a partial every 0.2 s, a final every 1.5 s, a hint every 2 s)
while the page samples its frame times and stamps each hint card's paint. Printed per width:

- hint created -> card painted p50/p95/p99 (server `emitted_at` to the page's paint, one
  clock: the same machine), which includes the store commit before sending;
- frame time p50/p95/p99 and frames over 50 ms, long tasks (> 50 ms) during the live part;
- time for the page to show the 60-minute history (late join of a long call).

    python bench/desktop.py                       # 1280x720 and 380x720
    python bench/desktop.py --widths 1280 --seconds 30 --minutes 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from callgen import load_dialogues

from callcue.clients.demo import running_server, scratch_settings
from callcue.events import Hint, Transcript
from callcue.platforms.base import CallStart

HERE = Path(__file__).resolve().parent
PROBE = HERE / "desktop_probe.mjs"
SHARED = HERE.parent.parent / "shared" / "data" / "dialogues" / "sgd_banking" / "banks1_train.jsonl"


def pct(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    s = sorted(xs)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(round(p * (len(s) - 1))))]

    return {"n": len(s), "p50": q(0.50), "p95": q(0.95), "p99": q(0.99)}


def turns(limit: int) -> list[tuple[str, str]]:
    """(channel, text) of real dialogue turns, repeated as needed to fill the call."""
    if not SHARED.exists():
        raise SystemExit(f"needs {SHARED} (the shared data beside the checkout)")
    out: list[tuple[str, str]] = []
    for d in load_dialogues(SHARED):
        out += [(t.channel, t.text) for t in d.turns]
        if len(out) >= limit:
            break
    while len(out) < limit:
        out += out[: limit - len(out)]
    return out[:limit]


class Probe:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def read(self, event: str, timeout: float = 300) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                err = (await self.proc.stderr.read()).decode()[-2000:] if self.proc.stderr else ""
                raise RuntimeError(f"probe exited: {err}")
            msg = json.loads(line)
            if msg.get("event") == "error":
                print(f"  page error: {msg['message']}", file=sys.stderr)
            if msg.get("event") == event:
                return msg

    async def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()


async def one_width(width: int, height: int, minutes: float, seconds: float, shots: Path | None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="callcue-desktop-"))
    # the transcript is written by the driver: no recognizer needed
    settings = scratch_settings(tmp, asr_engine="off")
    async with running_server(settings) as (base, app):
        rt = app.state.runtime.get()
        call_id = f"desk-{width}"
        await rt.calls.start(CallStart(call_id=call_id, encoding="L16", sample_rate=8000, channels=("customer", "agent"),
                                       agent_id="agent-1", platform="bench", metadata={}))  # fmt: skip
        n = int(minutes * 60 / 1.5)
        seg = {"customer": 0, "agent": 0}
        t = 0.0
        for ch, text in turns(n):
            seg[ch] += 1
            await rt.sink.transcript(Transcript(call_id, ch, seg[ch], 0, text, True, t, t + 1.4, engine="bench"))
            t += 1.5
        env = {**os.environ, "CALLCUE_URL": base.replace("ws://", "http://"), "CALLCUE_TOKEN": "demo-agent-token",
               "WIDTH": str(width), "HEIGHT": str(height)}  # fmt: skip
        proc = await asyncio.create_subprocess_exec("node", str(PROBE), env=env, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
        probe = Probe(proc)
        try:
            await probe.read("ready", 60)
            await probe.send(cmd="loaded", segments=n)
            loaded = await probe.read("loaded")
            if shots:
                await probe.send(cmd="shot", path=str(shots / f"desktop-60min-{width}.png"))
                await probe.read("shot")

            async def live() -> None:
                k, words = 0, ["so", "I", "would", "like", "to", "check", "the", "balance", "on", "my", "savings", "account", "please"]
                end = time.monotonic() + seconds
                live_t = t
                while time.monotonic() < end:
                    k += 1
                    ch = "customer" if (k // 8) % 2 == 0 else "agent"
                    if k % 8 == 7:
                        seg[ch] += 1
                        await rt.sink.transcript(Transcript(call_id, ch, seg[ch], 0, " ".join(words), True, live_t, live_t + 1.4))
                        live_t += 1.5
                    else:  # a partial: sent at once, unnumbered, as the pipeline sends them
                        await rt.sink.transcript(Transcript(call_id, ch, seg[ch] + 1, k % 8, " ".join(words[: 2 + k % 8]), False,
                                                            live_t, live_t + 0.2 * (k % 8)))  # fmt: skip
                    if k % 10 == 0:
                        await rt.sink.hint(Hint(call_id, f"Hint {k}", "Offer the retention plan", "Would you like to hear about our plan?",
                                                severity=("info", "warning", "critical")[k % 3], source="bench@1"))  # fmt: skip
                    await asyncio.sleep(0.2)

            await probe.send(cmd="sample", seconds=seconds)
            streaming = asyncio.create_task(live())
            sampled = await probe.read("sampled", seconds + 120)
            await streaming
            if shots:
                await probe.send(cmd="shot", path=str(shots / f"desktop-live-{width}.png"))
                await probe.read("shot")
            await probe.send(cmd="quit")
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
        await rt.calls.stop(call_id, "bench_done")
    frames = sampled["frames"][1:]
    hint_ms = [1000 * (h["painted_at"] - h["emitted_at"]) for h in sampled["hints"] if h["emitted_at"]]
    return {"width": width, "segments": loaded["segments"], "load_ms": loaded["ms"], "frames": pct(frames),
            "slow_frames": sum(1 for f in frames if f > 50), "frame_count": len(frames),
            "long_tasks": pct(sampled["long_tasks"]), "hint_ms": pct(hint_ms),
            "mean_frame": statistics.fmean(frames) if frames else float("nan")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="1280,380")
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the call history on the page")
    ap.add_argument("--seconds", type=float, default=20.0, help="live streaming while frames are sampled")
    ap.add_argument("--shots", default=None, help="folder for screenshots")
    a = ap.parse_args()
    shots = Path(a.shots) if a.shots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {a.minutes:g}-minute history, {a.seconds:g} s live")
    print("| width | segments | history shown ms | hint created→painted n p50 p95 p99 ms | frame p50 p95 p99 ms | frames > 50 ms | long tasks n p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for w in (int(x) for x in a.widths.split(",")):
        r = asyncio.run(one_width(w, a.height, a.minutes, a.seconds, shots))
        h, f, lt = r["hint_ms"], r["frames"], r["long_tasks"]
        print(f"| {w} | {r['segments']} | {r['load_ms']} | {h['n']} {h['p50']:.0f} {h['p95']:.0f} {h['p99']:.0f} | "
              f"{f['p50']:.1f} {f['p95']:.1f} {f['p99']:.1f} | {r['slow_frames']}/{r['frame_count']} | "
              f"{lt['n']} {lt['p95']:.0f} |", flush=True)
    print(f"load at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
