"""A Twilio Media Streams *sender*: what Twilio itself sends when it forks a call to us.

Used by `callcue demo`, the latency benchmark and the tests, so all of them exercise exactly
the message sequence of Twilio's published spec: connected, start, media (base64 mu-law,
20 ms, inbound = customer / outbound = agent), stop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from websockets.asyncio.client import connect

from callcue.audio.codecs import Resampler, encode
from callcue.clients.audio_file import CallAudio
from callcue.platforms.twilio import twilio_signature

TRACK = {"customer": "inbound", "agent": "outbound"}


class TwilioMessages:
    """Builds the messages of one stream, keeping sequence numbers and chunk counters.

    `*_msg` return the message dicts (for callers that add their own framing or timing);
    the plain methods return them as the JSON text Twilio sends.
    """

    def __init__(self, call_sid: str | None = None, agent_id: str | None = "agent-1",
                 custom: dict[str, str] | None = None, stream_sid: str | None = None) -> None:
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.stream_sid = stream_sid or "MZ" + uuid.uuid4().hex
        self.account_sid = "AC" + uuid.uuid4().hex
        self.seq = 0
        self.chunks: dict[str, int] = {"inbound": 0, "outbound": 0}
        self.custom = {**({"agent_id": agent_id} if agent_id else {}), **(custom or {})}

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    def connected_msg(self) -> dict[str, Any]:
        return {"event": "connected", "protocol": "Call", "version": "1.0.0"}

    def start_msg(self, tracks: list[str]) -> dict[str, Any]:
        return {
            "event": "start", "sequenceNumber": self._next(),
            "start": {"accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
                      "tracks": tracks, "customParameters": self.custom,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
            "streamSid": self.stream_sid,
        }

    def media_msg(self, track: str, timestamp_ms: int, mulaw: bytes) -> dict[str, Any]:
        self.chunks[track] += 1
        return {
            "event": "media", "sequenceNumber": self._next(),
            "media": {"track": track, "chunk": str(self.chunks[track]), "timestamp": str(timestamp_ms),
                      "payload": base64.b64encode(mulaw).decode()},
            "streamSid": self.stream_sid,
        }

    def stop_msg(self) -> dict[str, Any]:
        return {"event": "stop", "sequenceNumber": self._next(),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid}

    def connected(self) -> str:
        return json.dumps(self.connected_msg())

    def start(self, tracks: list[str]) -> str:
        return json.dumps(self.start_msg(tracks))

    def media(self, track: str, timestamp_ms: int, mulaw: bytes) -> str:
        return json.dumps(self.media_msg(track, timestamp_ms, mulaw))

    def stop(self) -> str:
        return json.dumps(self.stop_msg())


def mulaw_frames(audio: CallAudio, ms: int = 20) -> Iterator[tuple[float, dict[str, bytes]]]:
    """(offset, {track: 20 ms mu-law at 8 kHz}) as Twilio would send them."""
    resamplers = {ch: Resampler(audio.sample_rate, 8000) for ch in audio.channels} if audio.sample_rate != 8000 else {}
    for offset, per_ch in audio.chunks(ms):
        out = {}
        for ch, pcm in per_ch.items():
            if ch in resamplers:
                pcm = resamplers[ch].process(pcm)
            if pcm:
                out[TRACK[ch]] = encode("PCMU", pcm)
        yield offset, out


async def stream_call(ws: Any, audio: CallAudio, msgs: TwilioMessages, speed: float = 1.0,
                      on_sent: Any = None, send_stop: bool = True) -> float:
    """Send a whole call over an open WebSocket at `speed` x real time (0: as fast as the socket
    takes it); returns the start wall time.

    `send_stop=False` leaves the call live after the audio (e.g. for a supervisor to act on it)."""
    await ws.send(msgs.connected())
    tracks = [TRACK[ch] for ch in audio.channels]
    await ws.send(msgs.start(tracks))
    t0 = time.time()
    for offset, frames in mulaw_frames(audio):
        delay = t0 + offset / speed - time.time() if speed > 0 else 0.0
        if delay > 0:
            await asyncio.sleep(delay)
        for track, payload in frames.items():
            await ws.send(msgs.media(track, int(offset * 1000), payload))
        if on_sent is not None:
            on_sent(offset)
    if send_stop:
        await ws.send(msgs.stop())
    return t0


#: the shipped config's demo account token (config/callcue.toml [platforms.twilio])
DEMO_TWILIO_AUTH_TOKEN = "demo-twilio-auth-token"
#: the shipped config's demo token for /ws/native (config/callcue.toml [platforms.native])
DEMO_NATIVE_TOKEN = "demo-native-token"


def twilio_headers(url: str, auth_token: str = DEMO_TWILIO_AUTH_TOKEN) -> dict[str, str]:
    """What Twilio puts on the upgrade: X-Twilio-Signature over the exact URL it connects to."""
    return {"X-Twilio-Signature": twilio_signature(url, auth_token)}


def connect_twilio(url: str, auth_token: str = DEMO_TWILIO_AUTH_TOKEN, **kw: Any) -> Any:
    """`websockets` connect to a Twilio ingress URL, signed as Twilio signs it."""
    headers = {**kw.pop("additional_headers", {}), **twilio_headers(url, auth_token)}
    return connect(url, additional_headers=headers, **kw)


def connect_native(url: str, token: str = DEMO_NATIVE_TOKEN, **kw: Any) -> Any:
    """`websockets` connect to the native ingress with its bearer token in the header."""
    headers = {**kw.pop("additional_headers", {}), "Authorization": f"Bearer {token}"}
    return connect(url, additional_headers=headers, **kw)
