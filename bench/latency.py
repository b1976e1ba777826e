"""End-to-end latency benchmark: N concurrent calls over Twilio Media Streams, one agent client.

Why end to end: the numbers an agent feels are "the customer said a word -> it is on my
screen" and "the customer said they want to cancel -> the hint is on my screen". Both
include the WebSocket ingress, decoding, VAD, ASR, detectors, decision layer and egress,
so we measure them the way a client sees them: wall-clock receive times on a /ws/agent
subscriber, against the wall-clock time the audio holding that word was *sent*.

Calls come from bench/callgen.py, so every word and trigger has a true call-clock time.
The benchmark is bounded (each call is cut at --max-call-seconds, each round ends
--settle seconds after the last stop) and loopback-only unless told otherwise.

    python bench/latency.py --spawn --calls 2
    python bench/latency.py --url ws://127.0.0.1:8080 --ramp 1,2,4,8
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import difflib
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soxr
import websockets

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # stdlib G.711 until 3.13; the audioop-lts backport keeps the name

sys.path.insert(0, str(Path(__file__).resolve().parent))
import callgen

from callcue.clients.twilio_stream import TwilioMessages, twilio_headers

REPO = Path(__file__).resolve().parents[1]
SHARED_DIALOGUES = REPO.parent / "shared" / "data" / "dialogues"
FRAME_S = 0.020
FRAME_SAMPLES = 160  # 20 ms of 8 kHz mu-law, what Twilio sends
TRACKS = ("inbound", "outbound")  # Twilio: inbound = caller = customer, outbound = agent
#: the shipped config's scraper token ([auth] metrics_tokens)
METRICS_AUTH = {"Authorization": "Bearer demo-metrics-token"}
HINT_KEYWORDS = {
    "cancel_account": ("cancel", "close", "churn", "retention", "retain", "leav"),
    "escalation": ("escalat", "manager", "supervisor", "handoff", "transfer"),
}
# Dialogues with a customer trigger, so hint latency has samples beyond the demo call.
DEFAULT_SPECS = (
    "demo",
    "multidogo/finance_dev.jsonl:16185399-3102-47a9-84cc-35c5cb3e09e0",
    "multidogo/finance_dev.jsonl:ce42e9e1-4fa9-4e28-8229-805e2238ea07",
    "multidogo/media_dev.jsonl:26950c7b-4f5d-46ac-8dda-9892fde9a44f",
    "multidogo/finance_dev.jsonl:07fd8c5d-adc9-4a81-8f57-a09d7264f5d5",
)


# ---------------------------------------------------------------- call audio


@dataclass(slots=True)
class CallAudio:
    """One call ready to stream: per-track mu-law frames and the timeline they came from."""

    name: str
    timeline: dict[str, Any]
    frames: dict[str, list[bytes]]  # track -> 160-byte mu-law frames

    @property
    def n_frames(self) -> int:
        return max(len(f) for f in self.frames.values())

    @property
    def duration(self) -> float:
        return self.n_frames * FRAME_S


def call_from_pcm(name: str, pcm: np.ndarray, sample_rate: int, timeline: dict[str, Any], max_seconds: float | None = None) -> CallAudio:
    """Cut a callgen call into Twilio frames (8 kHz mu-law, 20 ms, customer inbound / agent outbound)."""
    if pcm.dtype != np.int16 or pcm.ndim != 2:
        raise ValueError("pcm must be int16 shaped (samples, channels)")
    if sample_rate != 8000:
        pcm = np.stack(
            [np.clip(soxr.resample(pcm[:, c].astype(np.float32), sample_rate, 8000), -32768, 32767).astype(np.int16) for c in range(pcm.shape[1])],
            axis=1,
        )
    if max_seconds is not None:
        pcm = pcm[: int(max_seconds * 8000)]
        timeline = _cut_timeline(timeline, max_seconds)
    n = len(pcm) - len(pcm) % FRAME_SAMPLES
    frames: dict[str, list[bytes]] = {}
    for c, channel in enumerate(timeline["channels"]):
        track = TRACKS[callgen_channel_index(channel)]
        ulaw = audioop.lin2ulaw(np.ascontiguousarray(pcm[:n, c]).tobytes(), 2)
        frames[track] = [ulaw[i : i + FRAME_SAMPLES] for i in range(0, n, FRAME_SAMPLES)]
    return CallAudio(name, timeline, frames)


def callgen_channel_index(channel: str) -> int:
    if channel not in ("customer", "agent"):
        raise ValueError(f"unknown channel {channel!r}")
    return 0 if channel == "customer" else 1


def _cut_timeline(tl: dict[str, Any], max_seconds: float) -> dict[str, Any]:
    """Keep only what is fully inside the streamed audio, so nothing unsent is expected."""
    out = dict(tl)
    out["turns"] = [t for t in tl["turns"] if t["end"] <= max_seconds]
    out["triggers"] = [t for t in tl.get("triggers", []) if t["end"] <= max_seconds]
    out["duration"] = min(tl["duration"], max_seconds)
    return out


def prepare_calls(specs: Sequence[str], cache_dir: Path, max_seconds: float | None) -> list[CallAudio]:
    """Render each spec once ("demo" or "<file under dialogues/>:<index|id>", or a .wav with its .json)."""
    out = []
    for spec in specs:
        if spec == "demo":
            wav = callgen.DEMO_WAV
            if not wav.exists():
                callgen.build_demo(wav)
        elif spec.endswith(".wav"):
            wav = Path(spec)
        else:
            rel, _, pick = spec.rpartition(":")
            if not rel:
                rel, pick = spec, "0"
            src = Path(rel) if Path(rel).is_file() else SHARED_DIALOGUES / rel
            wav = cache_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", f"{src.stem}_{pick}") + ".wav")
            if not wav.exists():
                callgen.generate(src, pick, wav, sample_rate=8000, stereo=True)
        pcm, sr = callgen.read_wav(wav)
        tl = json.loads(wav.with_suffix(".json").read_text())
        if pcm.shape[1] == 1:  # customer-only mono call
            pcm = np.concatenate([pcm, np.zeros_like(pcm)], axis=1)
            tl = {**tl, "channels": ["customer", "agent"]}
        out.append(call_from_pcm(spec, pcm, sr, tl, max_seconds))
    return out


# ---------------------------------------------------------------- Twilio wire messages


def twilio_messages(call: CallAudio, call_sid: str, stream_sid: str, agent_id: str) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """(frame index or None, message) in Twilio Media Streams order, built by the same
    `TwilioMessages` the demo and the tests send: `connected`, `start`, per 20 ms one `media`
    per track, then `stop`. Frame index k means "send at stream start + k * 20 ms".
    """
    msgs = TwilioMessages(call_sid, agent_id, stream_sid=stream_sid)
    yield None, msgs.connected_msg()
    yield None, msgs.start_msg(list(call.frames))
    for k in range(call.n_frames):
        for track, frames in call.frames.items():
            if k < len(frames):
                yield k, msgs.media_msg(track, k * 20, frames[k])
    yield None, msgs.stop_msg()


@dataclass(slots=True)
class StreamResult:
    call_sid: str
    call: CallAudio
    sent_at: np.ndarray  # wall time each frame index left this process
    error: str = ""

    def audio_sent_at(self, t: float) -> float:
        """Wall time by which the audio up to call time `t` had been sent."""
        k = int(np.clip(np.ceil(t / FRAME_S - 1e-6) - 1, 0, len(self.sent_at) - 1))
        return float(self.sent_at[k])


async def stream_call(base_url: str, call: CallAudio, call_sid: str, agent_id: str, start_delay: float = 0.0) -> StreamResult:
    """Send one call at real-time pace, scheduling on absolute times so jitter never accumulates."""
    await asyncio.sleep(start_delay)
    sent = np.zeros(call.n_frames)
    res = StreamResult(call_sid, call, sent)
    stream_sid = "MZ" + call_sid[2:]
    try:
        url = base_url + "/ws/twilio"
        # signed as Twilio signs it, with the shipped config's demo account token
        async with websockets.connect(url, max_size=2**20, open_timeout=10,
                                      additional_headers=twilio_headers(url)) as ws:
            t0 = time.monotonic()
            wall0 = time.time()
            last_k = -1
            for k, msg in twilio_messages(call, call_sid, stream_sid, agent_id):
                if k is not None and k != last_k:
                    delay = t0 + k * FRAME_S - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    sent[k] = wall0 + (time.monotonic() - t0)
                    last_k = k
                await ws.send(json.dumps(msg))
            await asyncio.sleep(0.2)  # let the stop land before the close
    except (OSError, websockets.WebSocketException) as e:
        res.error = f"{type(e).__name__}: {e}"
    return res


# ---------------------------------------------------------------- agent client


@dataclass(slots=True)
class AgentRecorder:
    """A /ws/agent subscriber that timestamps everything it receives."""

    url: str
    token: str
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    user_id: str = ""
    _ws: Any = None
    _task: asyncio.Task | None = None

    async def start(self) -> None:
        self._ws = await websockets.connect(
            self.url + "/ws/agent",
            subprotocols=["callcue.v1.json"],
            additional_headers={"Authorization": f"Bearer {self.token}"},
            max_size=2**22,
            open_timeout=10,
        )
        hello = json.loads(await asyncio.wait_for(self._ws.recv(), 10))
        if hello.get("type") != "hello":
            raise RuntimeError(f"/ws/agent: expected hello, got {hello}")
        self.user_id = str(hello.get("user_id", ""))
        await self._ws.send(json.dumps({"type": "subscribe", "call_id": "*"}))
        ack = json.loads(await asyncio.wait_for(self._ws.recv(), 10))
        if ack.get("type") != "subscribed":
            raise RuntimeError(f"/ws/agent: subscribe refused: {ack}")
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                now = time.time()
                self.events.append((now, json.loads(raw)))
        except websockets.ConnectionClosed:
            pass

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            await asyncio.wait_for(self._task, 5)


# ---------------------------------------------------------------- analysis


def norm_words(text: str) -> list[str]:
    """Lower-case words without punctuation; tokens with digits are dropped because the
    recognizer spells numbers out ("5,118" vs "five thousand ...") and would never match."""
    out = []
    for tok in text.lower().replace("-", " ").split():
        if any(ch.isdigit() for ch in tok):
            continue
        w = re.sub(r"[^a-z']", "", tok).strip("'")
        if w:
            out.append(w)
    return out


def _expected_words(tl: dict[str, Any], channel: str) -> list[dict[str, Any]]:
    words = []
    for turn in tl["turns"]:
        if turn["channel"] != channel:
            continue
        for w in turn["words"]:
            if any(ch.isdigit() for ch in w["text"]):
                continue
            n = norm_words(w["text"])
            if len(n) == 1:
                words.append({"w": n[0], "start": w["start"], "end": w["end"]})
    return words


def word_latencies(res: StreamResult, events: list[tuple[float, dict[str, Any]]], slack_s: float = 1.0) -> tuple[list[float], int]:
    """(latencies, expected word count): for every timeline word, the first transcript
    (partial or final) of its channel that contains it, matched in order with difflib
    among the words the transcript's call-clock span could cover."""
    lat: list[float] = []
    expected_total = 0
    for channel in ("customer", "agent"):
        expected = _expected_words(res.call.timeline, channel)
        expected_total += len(expected)
        first_seen: dict[int, float] = {}
        for recv_t, ev in events:
            if ev.get("type") != "transcript" or ev.get("call_id") != res.call_sid or ev.get("channel") != channel:
                continue
            hyp = norm_words(ev.get("text", ""))
            if not hyp:
                continue
            s, e = float(ev.get("start", 0.0)) - slack_s, float(ev.get("end", 1e9)) + slack_s
            idx = [i for i, w in enumerate(expected) if w["start"] >= s and w["end"] <= e]
            if not idx:
                continue
            ref = [expected[i]["w"] for i in idx]
            sm = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False)
            for block in sm.get_matching_blocks():
                for j in range(block.size):
                    first_seen.setdefault(idx[block.a + j], recv_t)
        for i, t in first_seen.items():
            lat.append(t - res.audio_sent_at(expected[i]["end"]))
    return lat, expected_total


def _hint_matches(rule: str, hint: dict[str, Any], signal_names: dict[str, str]) -> bool:
    keys = HINT_KEYWORDS.get(rule, (rule,))
    names = " ".join(signal_names.get(s, "") for s in hint.get("signal_ids", []))
    blob = " ".join(str(hint.get(k, "")) for k in ("title", "body", "source", "suggested_reply")) + " " + names
    blob += " " + json.dumps(hint.get("attrs", {}))
    return any(k in blob.lower() for k in keys)


def hint_latencies(res: StreamResult, events: list[tuple[float, dict[str, Any]]]) -> tuple[list[float], int]:
    """(latencies, trigger count): trigger utterance end (audio sent) -> first matching hint
    received after the trigger phrase began. Can be negative: a hint raised from a partial
    may arrive before the customer finishes the sentence."""
    signal_names = {
        ev["signal_id"]: f"{ev.get('kind', '')}:{ev.get('name', '')}"
        for _t, ev in events
        if ev.get("type") == "signal" and ev.get("call_id") == res.call_sid and "signal_id" in ev
    }
    hints = [(t, ev) for t, ev in events if ev.get("type") == "hint" and ev.get("call_id") == res.call_sid]
    out = []
    used: set[str] = set()
    triggers = res.call.timeline.get("triggers", [])
    for trig in triggers:
        not_before = res.audio_sent_at(trig["start"])
        for t, h in hints:
            if t >= not_before and h.get("hint_id") not in used and _hint_matches(trig["rule"], h, signal_names):
                used.add(h.get("hint_id", ""))
                out.append(t - res.audio_sent_at(trig["end"]))
                break
    return out, len(triggers)


def pct(values: Sequence[float]) -> dict[str, float]:
    if not len(values):
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    a = np.asarray(values, dtype=float)
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99))}


# ---------------------------------------------------------------- server CPU


class CpuProbe:
    """Server CPU seconds: /proc/<pid>/stat when we spawned it, else /metrics."""

    def __init__(self, http_url: str, pid: int | None) -> None:
        self.http_url, self.pid = http_url, pid

    async def read(self) -> float | None:
        if self.pid is not None:
            try:
                fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        try:
            async with httpx.AsyncClient(timeout=5) as c:
                r = await c.get(self.http_url + "/metrics", headers=METRICS_AUTH)
            m = re.search(r"^process_cpu_seconds_total\s+([0-9.eE+-]+)", r.text, re.MULTILINE)
            return float(m.group(1)) if m else None
        except httpx.HTTPError:
            return None


# ---------------------------------------------------------------- one round


@dataclass(slots=True)
class RoundResult:
    n_calls: int
    words: dict[str, float]
    word_recall: float
    hints: dict[str, float]
    hint_recall: float
    cpu_per_call_s: float | None
    call_seconds: float
    errors: list[str]
    loadavg_1m: float = float("nan")  # the host's load when the round ended: shared machines skew latency
    # the server's own view (transcript emitted_at - audio_received_at): separates recognition
    # time from transport, VAD hangover and client-side receive delay
    server_transcript: dict[str, float] = field(default_factory=lambda: pct([]))


def server_side_latencies(call_sids: set[str], events: list[tuple[float, dict[str, Any]]]) -> list[float]:
    return [
        float(ev["emitted_at"]) - float(ev["audio_received_at"])
        for _t, ev in events
        if ev.get("type") == "transcript" and ev.get("call_id") in call_sids
        and ev.get("audio_received_at") and ev.get("emitted_at")
    ]


async def run_round(base_url: str, http_url: str, token: str, agent_id: str | None, calls: list[CallAudio], n: int,
                    settle_s: float, cpu: CpuProbe, run_tag: str, events_path: Path | None = None,
                    repeat: int = 1) -> RoundResult:
    """N concurrent calls, `repeat` times back to back (pooled), so small N still yields
    enough trigger samples for a percentile; repetitions rotate through the call list."""
    agent = AgentRecorder(base_url, token)
    await agent.start()
    aid = agent_id or agent.user_id or "agent-1"
    cpu0 = await cpu.read()
    results: list[StreamResult] = []
    for rep in range(repeat):
        jobs = []
        for i in range(n):
            call = calls[(rep * n + i) % len(calls)]
            sid = "CA" + f"{run_tag}{n:03d}{rep:03d}{i:04d}".rjust(32, "0")[-32:]
            # stagger starts so 20 ms frames of different calls do not arrive in lockstep
            jobs.append(stream_call(base_url, call, sid, aid, start_delay=(i * 0.137) % 1.0))
        results += await asyncio.gather(*jobs)
    await asyncio.sleep(settle_s)
    cpu1 = await cpu.read()
    await agent.stop()
    if events_path is not None:  # raw evidence behind the numbers, for audits and debugging
        _write_events(events_path, agent.events)
    all_w: list[float] = []
    all_h: list[float] = []
    exp_w = exp_h = 0
    for r in results:
        w, nw = word_latencies(r, agent.events)
        h, nh = hint_latencies(r, agent.events)
        all_w += w
        all_h += h
        exp_w += nw
        exp_h += nh
    call_seconds = sum(r.call.duration for r in results)
    cpu_ratio = (cpu1 - cpu0) / call_seconds if cpu0 is not None and cpu1 is not None and call_seconds else None
    return RoundResult(
        n, pct(all_w), len(all_w) / exp_w if exp_w else float("nan"), pct(all_h), len(all_h) / exp_h if exp_h else float("nan"),
        cpu_ratio, call_seconds, [f"{r.call_sid}: {r.error}" for r in results if r.error],
        _loadavg(),
        pct(server_side_latencies({r.call_sid for r in results}, agent.events)),
    )


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def _write_events(path: Path, events: list[tuple[float, dict[str, Any]]]) -> None:
    path.write_text("".join(json.dumps({"recv": t, **ev}) + "\n" for t, ev in events))


def format_table(rounds: list[RoundResult]) -> str:
    head = f"{'calls':>5} | {'metric':<28} | {'n':>5} | {'p50':>7} | {'p95':>7} | {'p99':>7} | found"
    lines = [head, "-" * len(head)]
    for r in rounds:
        for label, d, recall in (("word end -> first partial (s)", r.words, r.word_recall),
                                 ("trigger end -> hint (s)", r.hints, r.hint_recall),
                                 ("server: audio in -> transcript", r.server_transcript, float("nan"))):
            found = "" if math.isnan(recall) else f"{recall:.0%}"
            lines.append(f"{r.n_calls:>5} | {label:<28} | {d['n']:>5} | {d['p50']:>7.3f} | {d['p95']:>7.3f} | {d['p99']:>7.3f} | {found}")
        cpu = f"{r.cpu_per_call_s:.3f}" if r.cpu_per_call_s is not None else "n/a"
        lines.append(f"{r.n_calls:>5} | {'server CPU s per call-second':<28} | {cpu:>5} | {'':>7} | {'':>7} | {'':>7} | {r.call_seconds:.0f} call-s, load {r.loadavg_1m:.1f}")
        for e in r.errors:
            lines.append(f"      ! {e}")
    return "\n".join(lines)


# ---------------------------------------------------------------- spawning a server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SpawnedServer:
    """`callcue serve` on a free loopback port, stopped (by its own pid) when we are done."""

    def __init__(self, config: Path | None, log_path: Path, storage_url: str | None = None,
                 ready_path: str = "/healthz") -> None:  # fmt: skip
        """`storage_url` (default: its own SQLite beside the log, never the checkout's var/);
        `ready_path` is polled by `wait_ready` (a cluster node answers /readyz once it joined)."""
        self.port = free_port()
        self.ready_path = ready_path
        exe = Path(sys.executable).parent / "callcue"
        storage_url = storage_url or f"sqlite:///{log_path.parent / 'bench-server.db'}"
        cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--storage-url", storage_url]
        if not config or "audiosocket" not in Path(config).read_text():  # the shipped port (9092) may be a running demo's
            cmd += ["--audiosocket-port", "0"]
        if config:
            cmd += ["--config", str(config)]
        self.log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the server; closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=str(REPO))
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"callcue serve exited with {self.proc.returncode}; see {self.log.name}")
                try:
                    if (await c.get(self.http_url + self.ready_path)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
        raise RuntimeError(f"callcue serve not ready after {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


# ---------------------------------------------------------------- main


async def amain(args: argparse.Namespace) -> int:
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="callcue-bench-"))
    cache.mkdir(parents=True, exist_ok=True)
    specs = args.call or [s for s in DEFAULT_SPECS if s == "demo" or (SHARED_DIALOGUES / s.split(":")[0]).exists()]
    calls = prepare_calls(specs, cache, args.max_call_seconds)
    listing = ", ".join(f"{c.name} ({c.duration:.0f} s, {len(c.timeline['triggers'])} triggers)" for c in calls)
    print(f"calls: {listing}", flush=True)
    server: SpawnedServer | None = None
    if args.spawn:
        server = SpawnedServer(args.config, cache / "server.log")
        base, http = server.ws_url, server.http_url
    else:
        base = args.url.rstrip("/")
        http = "http" + base[2:] if base.startswith("ws") else base
    rounds: list[RoundResult] = []
    try:
        if server:
            await server.wait_ready()
        cpu = CpuProbe(http, server.proc.pid if server else None)
        plan = [int(x) for x in args.ramp.split(",")] if args.ramp else [args.calls]
        tag = f"{int(time.time()) % 100000:05d}"
        for n in plan:
            r = await run_round(base, http, args.token, args.agent_id, calls, n, args.settle, cpu, tag,
                                events_path=cache / f"events_n{n}.jsonl", repeat=args.repeat)
            rounds.append(r)
            print(format_table([r]), flush=True)
            if args.ramp and not args.keep_going and not (r.hints["n"] and r.hints["p95"] < args.hint_budget):
                break
    finally:
        if server:
            server.stop()
    print("\n" + format_table(rounds))
    if args.ramp:
        ok = []
        for r in rounds:  # the largest N of the unbroken run of passing rounds from the smallest
            if not (r.hints["n"] and r.hints["p95"] < args.hint_budget):
                break
            ok.append(r.n_calls)
        print(f"\nlargest N with p95 trigger->hint < {args.hint_budget:.1f} s: {max(ok) if ok else 'none'}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([dataclasses.asdict(r) for r in rounds], indent=1))
    return 0 if all(not r.errors for r in rounds) else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--url", default="ws://127.0.0.1:8080", help="server base URL (default ws://127.0.0.1:8080)")
    where.add_argument("--spawn", action="store_true", help="start `callcue serve` on a free loopback port")
    ap.add_argument("--config", type=Path, default=None, help="config for --spawn (default: the server's own default)")
    ap.add_argument("--token", default="demo-agent-token", help="bearer token for /ws/agent")
    ap.add_argument("--agent-id", default=None, help="customParameters.agent_id (default: the token's user_id)")
    ap.add_argument("--calls", type=int, default=1, help="concurrent calls (ignored with --ramp)")
    ap.add_argument("--ramp", default=None, help="comma list of N, e.g. 1,2,4,8: stops at the first N over budget")
    ap.add_argument("--repeat", type=int, default=1, help="run each N this many times back to back and pool the samples")
    ap.add_argument("--keep-going", action="store_true", help="--ramp: run every N even after one is over budget")
    ap.add_argument("--hint-budget", type=float, default=1.0, help="p95 trigger->hint budget for --ramp, seconds")
    ap.add_argument("--call", action="append", help="call spec: demo | <file under shared dialogues>:<index|id> | x.wav (+x.json); repeat")
    ap.add_argument("--max-call-seconds", type=float, default=60.0, help="cut each call here (bounds the run)")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds to wait for late events after the last stop")
    ap.add_argument("--cache-dir", default=None, help="where generated calls and the server log go")
    ap.add_argument("--json-out", default=None, help="also write the rounds as JSON")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.calls < 1 or args.repeat < 1:
        print("latency: --calls and --repeat must be >= 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(amain(args))
    except (RuntimeError, OSError, ValueError) as e:
        print(f"latency: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
