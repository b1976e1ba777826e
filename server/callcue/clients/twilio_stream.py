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

from callcue.audio.codecs import Resampler, encode
from callcue.clients.audio_file import CallAudio

TRACK = {"customer": "inbound", "agent": "outbound"}


class TwilioMessages:
    """Builds the JSON messages of one stream, keeping sequence numbers and timestamps."""

    def __init__(self, call_sid: str | None = None, agent_id: str | None = "agent-1",
                 custom: dict[str, str] | None = None) -> None:
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.account_sid = "AC" + uuid.uuid4().hex
        self.seq = 0
        self.chunks: dict[str, int] = {"inbound": 0, "outbound": 0}
        self.custom = {**({"agent_id": agent_id} if agent_id else {}), **(custom or {})}

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, tracks: list[str]) -> str:
        return json.dumps({
            "event": "start", "sequenceNumber": self._next(),
            "start": {"accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
                      "tracks": tracks, "customParameters": self.custom,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
            "streamSid": self.stream_sid,
        })

    def media(self, track: str, timestamp_ms: int, mulaw: bytes) -> str:
        self.chunks[track] += 1
        return json.dumps({
            "event": "media", "sequenceNumber": self._next(),
            "media": {"track": track, "chunk": str(self.chunks[track]), "timestamp": str(timestamp_ms),
                      "payload": base64.b64encode(mulaw).decode()},
            "streamSid": self.stream_sid,
        })

    def stop(self) -> str:
        return json.dumps({"event": "stop", "sequenceNumber": self._next(),
                           "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                           "streamSid": self.stream_sid})


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
                      on_sent: Any = None) -> float:
    """Send a whole call over an open WebSocket at `speed` x real time; returns the start wall time."""
    await ws.send(msgs.connected())
    tracks = [TRACK[ch] for ch in audio.channels]
    await ws.send(msgs.start(tracks))
    t0 = time.time()
    for offset, frames in mulaw_frames(audio):
        delay = t0 + offset / speed - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for track, payload in frames.items():
            await ws.send(msgs.media(track, int(offset * 1000), payload))
        if on_sent is not None:
            on_sent(offset)
    await ws.send(msgs.stop())
    return t0
