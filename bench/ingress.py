"""What the ingress layer costs, per platform, with recognition switched off.

For each platform, N concurrent streams (default 50) send real speech (JFK's line, telephone
band, looped) in real time, in the platform's own message sequence, to a spawned `callcue
serve` with `asr.engine = "off"`. Per platform it prints:

- server CPU µs per second of audio, over the streaming window, minus the idle server's CPU
  over an equal window (what remains is ingress + codec + resampling + VAD + call bookkeeping:
  compare with `native`, the thinnest protocol, to see a platform's own parsing cost);
- the sans-I/O parser alone, in this process: µs per second of audio (no network, no call);
- added latency per frame: the server's `callcue_ingress_frame_seconds` histogram (parse and
  hand-off of one frame to the call), p50/p95/p99 interpolated within buckets;
- frames sent, streams that failed, the 1-minute load average.

    python bench/ingress.py                       # every platform, 50 streams x 20 s
    python bench/ingress.py --streams 10 --seconds 10 --platforms twilio,audiohook

Linux only (reads /proc for the server's CPU). Writes only under a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import METRICS_AUTH, CpuProbe, SpawnedServer, _loadavg

from callcue.audio.codecs import encode
from callcue.clients.audio_file import read_call_audio
from callcue.clients.audiohook_client import (
    MONO_PCMU,
    AudioHookSession,
    connect_audiohook,
)
from callcue.clients.twilio_stream import TwilioMessages, connect_native, connect_twilio
from callcue.config import REPO_CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech" / "telephone_sim" / "jfk__jfk.wav"
PLATFORMS = ("native", "twilio", "audiohook", "vonage", "audiofork", "audiosocket", "webrtc")
FRAME_MS = 20


def bench_config(tmp: Path, audiosocket_port: int) -> Path:
    p = tmp / "ingress.toml"
    p.write_text(f"""
config_dir = "{REPO_CONFIG_DIR}"
[server]
max_calls = 1000
max_frame_bytes = 65536
[asr]
engine = "off"
[platforms]
idle_timeout_s = 60
[platforms.twilio]
auth_tokens = ["demo-twilio-auth-token"]
[platforms.native]
tokens = ["demo-native-token"]
[platforms.audiosocket]
port = {audiosocket_port}
[platforms.audiofork]
secrets = ["demo-audiofork-secret"]
[platforms.vonage]
secrets = ["demo-vonage-secret"]
[[platforms.audiohook.api_keys]]
api_key = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
client_secret = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
[logging]
level = "WARNING"
[[auth.tokens]]
token = "demo-agent-token"
user_id = "agent-1"
role = "agent"
""")
    return p


def speech_8k(seconds: float) -> np.ndarray:
    pcm = read_call_audio(SPEECH).channels["customer"]
    reps = int(np.ceil(seconds * 8000 / len(pcm)))
    return np.tile(pcm, reps)[: int(seconds * 8000)].astype(np.int16)


def frames_of(pcm: np.ndarray) -> list[bytes]:
    step = 8000 * FRAME_MS // 1000
    return [pcm[i:i + step].tobytes() for i in range(0, len(pcm) - step + 1, step)]


async def paced(frames: list[Any], send: Callable[[int, Any], Awaitable[None]]) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i, f in enumerate(frames):
        delay = t0 + i * FRAME_MS / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i, f)


# ------------------------------------------------------------------ one stream per platform
async def s_native(ws_url: str, frames: list[bytes], n: int, port: int) -> None:
    async with connect_native(f"{ws_url}/ws/native") as ws:
        cid = f"bench-native-{n}-{uuid.uuid4().hex[:6]}"
        await ws.send(json.dumps({"type": "start", "call_id": cid, "encoding": "L16", "sample_rate": 8000,
                                  "channels": ["customer"], "agent_id": "agent-1"}))
        await paced(frames, lambda i, f: ws.send(b"\x00" + f))
        await ws.send(json.dumps({"type": "stop", "call_id": cid}))
        await ws.wait_closed()


async def s_twilio(ws_url: str, frames: list[bytes], n: int, port: int) -> None:
    msgs = TwilioMessages(agent_id="agent-1")
    mulaw = [encode("PCMU", f) for f in frames]
    async with connect_twilio(f"{ws_url}/ws/twilio") as ws:
        await ws.send(msgs.connected())
        await ws.send(msgs.start(["inbound"]))
        await paced(mulaw, lambda i, f: ws.send(msgs.media("inbound", i * FRAME_MS, f)))
        await ws.send(msgs.stop())
        await ws.wait_closed()


async def s_audiohook(ws_url: str, frames: list[bytes], n: int, port: int) -> None:
    sid = str(uuid.uuid4())
    mulaw = [encode("PCMU", f) for f in frames]
    async with connect_audiohook(f"{ws_url}/ws/audiohook", sid) as ws:
        ah = AudioHookSession(ws, sid)
        await ah.open(str(uuid.uuid4()), [MONO_PCMU])

        async def send(i: int, f: bytes) -> None:
            await ah.audio(f)
            if i % 250 == 249:  # a ping every 5 s, as Genesys sends
                await ah.send("ping", {})
        await paced(mulaw, send)
        await ah.close("end")


async def s_vonage(ws_url: str, frames: list[bytes], n: int, port: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"{ws_url}/ws/vonage") as ws:
        await ws.send(json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=8000",
                                  "secret": "demo-vonage-secret", "call_uuid": str(uuid.uuid4()), "agent_id": "agent-1"}))
        await paced(frames, lambda i, f: ws.send(f))


async def s_audiofork(ws_url: str, frames: list[bytes], n: int, port: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"{ws_url}/ws/audiofork?secret=demo-audiofork-secret", subprotocols=["audio.jambonz.org"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"callSid": f"bench-fork-{n}-{uuid.uuid4().hex[:6]}", "sampleRate": 8000, "mixType": "mono"}))
        await paced(frames, lambda i, f: ws.send(f))


async def s_audiosocket(ws_url: str, frames: list[bytes], n: int, port: int) -> None:
    from callcue.platforms.audiosocket import frame

    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(0x01, uuid.uuid4().bytes))

    async def send(i: int, f: bytes) -> None:
        writer.write(frame(0x10, f))
        await writer.drain()
    await paced(frames, send)
    writer.close()


async def s_webrtc(ws_url: str, frames: list[bytes], n: int, port: int) -> None:
    import av
    from aiortc import (
        MediaStreamTrack,
        RTCConfiguration,
        RTCPeerConnection,
        RTCSessionDescription,
    )

    class Speech(MediaStreamTrack):
        """Real speech at 8 kHz, 20 ms frames in real time (encoded to Opus by aiortc)."""

        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.i = 0
            self.t0: float | None = None

        async def recv(self) -> av.AudioFrame:
            if self.i >= len(frames):
                self.stop()
                raise av.error.EOFError(0, "end")  # type: ignore[attr-defined]
            loop = asyncio.get_running_loop()
            self.t0 = self.t0 or loop.time()
            delay = self.t0 + self.i * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            pcm = np.frombuffer(frames[self.i], "<i2").reshape(1, -1)
            f = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            f.sample_rate, f.pts, f.time_base = 8000, self.i * 160, Fraction(1, 8000)
            self.i += 1
            return f

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = Speech()
    pc.addTrack(track)
    await pc.setLocalDescription(await pc.createOffer())
    http = ws_url.replace("ws://", "http://")
    async with httpx.AsyncClient(base_url=http, timeout=30) as c:
        r = await c.post("/webrtc/offer", json={"type": "offer", "sdp": pc.localDescription.sdp, "role": "customer"},
                         headers={"Authorization": "Bearer demo-agent-token"})
        r.raise_for_status()
        ans = r.json()
        await pc.setRemoteDescription(RTCSessionDescription(ans["sdp"], "answer"))
        while track.readyState != "ended":
            await asyncio.sleep(0.5)
        await c.delete(ans["location"], headers={"Authorization": "Bearer demo-agent-token"})
    await pc.close()


STREAMS = {"native": s_native, "twilio": s_twilio, "audiohook": s_audiohook, "vonage": s_vonage,
           "audiofork": s_audiofork, "audiosocket": s_audiosocket, "webrtc": s_webrtc}


# ------------------------------------------------------------------ measurements
def parser_cost_us_per_audio_s(platform: str, frames: list[bytes]) -> float | None:
    """The sans-I/O parser alone on this platform's wire frames: µs per second of audio."""
    from callcue.platforms.audiofork import AudioForkProtocol
    from callcue.platforms.audiohook import AudioHookProtocol
    from callcue.platforms.audiosocket import AudioSocketProtocol, frame
    from callcue.platforms.native import NativeProtocol
    from callcue.platforms.twilio import TwilioProtocol
    from callcue.platforms.vonage import VonageProtocol

    mulaw = [encode("PCMU", f) for f in frames]
    if platform == "twilio":
        msgs = TwilioMessages(agent_id="agent-1")
        p: Any = TwilioProtocol()
        wire: list[str | bytes] = [msgs.connected(), msgs.start(["inbound"])] + [msgs.media("inbound", i * 20, f) for i, f in enumerate(mulaw)]
    elif platform == "native":
        p = NativeProtocol()
        wire = [json.dumps({"type": "start", "call_id": "c", "encoding": "L16", "sample_rate": 8000, "channels": ["customer"]})]
        wire += [b"\x00" + f for f in frames]
    elif platform == "audiohook":
        sid = str(uuid.uuid4())
        p = AudioHookProtocol(session_id=sid, organization_id=None)
        wire = [json.dumps({"version": "2", "id": sid, "type": "open", "seq": 1, "serverseq": 0, "position": "PT0S",
                            "parameters": {"organizationId": str(uuid.uuid4()), "conversationId": str(uuid.uuid4()),
                                           "participant": {}, "media": [MONO_PCMU]}})] + list(mulaw)
    elif platform == "vonage":
        p = VonageProtocol(authorized=True)
        wire = [json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=8000"})] + list(frames)
    elif platform == "audiofork":
        p = AudioForkProtocol()
        wire = [json.dumps({"callSid": "c", "sampleRate": 8000})] + list(frames)
    elif platform == "audiosocket":
        p = AudioSocketProtocol()
        wire = [frame(0x01, uuid.uuid4().bytes)] + [frame(0x10, f) for f in frames]
    else:
        return None
    t0 = time.perf_counter()
    for w in wire:
        p.receive_text(w) if isinstance(w, str) else p.receive_bytes(w)
        p.data_to_send()
    return (time.perf_counter() - t0) * 1e6 / (len(frames) * FRAME_MS / 1000)


def histogram(metrics_text: str, platform: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of callcue_ingress_frame_seconds for a platform."""
    out = []
    for m in re.finditer(r'^callcue_ingress_frame_seconds_bucket\{le="([^"]+)",platform="([^"]+)"\} ([0-9.e+]+)$',
                         metrics_text, re.MULTILINE):
        if m.group(2) == platform:
            out.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(3))))
    return sorted(out)


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    target = q * buckets[-1][1]
    lo_b, lo_c = 0.0, 0.0
    for b, c in buckets:
        if c >= target:
            if b == float("inf"):
                return lo_b
            return lo_b + (b - lo_b) * ((target - lo_c) / (c - lo_c) if c > lo_c else 0.0)
        lo_b, lo_c = b, c
    return lo_b


async def measure(srv: SpawnedServer, platform: str, n: int, seconds: float, as_port: int) -> dict[str, Any]:
    frames = frames_of(speech_8k(seconds))
    probe = CpuProbe(srv.http_url, srv.proc.pid)
    async with httpx.AsyncClient(timeout=10) as c:
        before = histogram((await c.get(srv.http_url + "/metrics", headers=METRICS_AUTH)).text, platform)
        idle0 = await probe.read()
        await asyncio.sleep(3.0)
        idle_rate = ((await probe.read() or 0.0) - (idle0 or 0.0)) / 3.0
        cpu0, t0 = await probe.read(), time.monotonic()
        results = await asyncio.gather(*(STREAMS[platform](srv.ws_url, frames, i, as_port) for i in range(n)),
                                       return_exceptions=True)  # fmt: skip
        wall = time.monotonic() - t0
        await asyncio.sleep(1.0)  # let the last stops settle
        cpu1 = await probe.read()
        after = histogram((await c.get(srv.http_url + "/metrics", headers=METRICS_AUTH)).text, platform)
    failed = [r for r in results if isinstance(r, BaseException)]
    ok = n - len(failed)
    delta = [(b, c - dict(before).get(b, 0.0)) for b, c in after]
    audio_s = ok * len(frames) * FRAME_MS / 1000
    cpu = (cpu1 or 0.0) - (cpu0 or 0.0) - idle_rate * (wall + 1.0)
    return {"platform": platform, "streams": n, "ok": ok, "failed": [repr(f)[:160] for f in failed[:3]],
            "audio_s": audio_s, "server_cpu_us_per_audio_s": cpu * 1e6 / audio_s if audio_s else float("nan"),
            "parser_us_per_audio_s": parser_cost_us_per_audio_s(platform, frames[:1500]),
            "frames": delta[-1][1] if delta else 0.0,
            "added_ms": {q: quantile(delta, q) * 1000 for q in (0.5, 0.95, 0.99)}, "load_1m": _loadavg()}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| platform | streams ok | server CPU µs / audio-s | parser alone µs / audio-s | frames | added ms p50 | p95 | p99 | load 1m |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        parser = f"{r['parser_us_per_audio_s']:.0f}" if r["parser_us_per_audio_s"] is not None else "–"
        a = r["added_ms"]
        lines.append(f"| {r['platform']} | {r['ok']}/{r['streams']} | {r['server_cpu_us_per_audio_s']:.0f} | {parser} | "
                     f"{r['frames']:.0f} | {a[0.5]:.3f} | {a[0.95]:.3f} | {a[0.99]:.3f} | {r['load_1m']:.1f} |")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> int:
    from latency import free_port

    if not SPEECH.is_file():
        print(f"missing {SPEECH} (../shared/data beside the checkout)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="callcue-ingress-"))
    as_port = free_port()
    srv = SpawnedServer(bench_config(tmp, as_port), tmp / "server.log")
    rows = []
    try:
        await srv.wait_ready()
        for platform in args.platforms.split(","):
            row = await measure(srv, platform, args.streams, args.seconds, as_port)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        srv.stop()
    print(table(rows))
    if any(r["failed"] for r in rows):
        print(f"failures: see {tmp / 'server.log'}", file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--platforms", default=",".join(PLATFORMS))
    return asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
