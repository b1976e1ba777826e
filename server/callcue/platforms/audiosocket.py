"""Sans-I/O parser for Asterisk AudioSocket (docs.asterisk.org, Channel Drivers: AudioSocket).

Why its own shape: AudioSocket is raw TCP, a byte stream with no message boundaries, so the
parser buffers and cuts frames itself: a 1-byte type, a 2-byte big-endian payload length,
then the payload. Asterisk sends the call's UUID (0x01, 16 bytes) first, then signed-linear
16-bit mono audio (0x10 = 8 kHz; 0x11-0x18 = 12, 16, 24, 32, 44.1, 48, 96, 192 kHz), DTMF
digits (0x03, one ASCII byte), an error (0xff, optional code) or a hangup (0x00), and it
usually just closes the socket at hangup. It drops the call on anything from us but audio
or hangup, so the only thing this parser sends is the virtual agent's voice: audio frames of
the call's own kind and rate, 20 ms each.

Why the parser paces that audio: Asterisk writes each frame it reads to the channel at once,
so a burst would play too fast or be dropped; `data_to_send` hands out only the frames due by
the clock (a little ahead), and the transport asks again every 20 ms while audio is queued.
A barge-in (`clear`) drops what was not sent: the caller hears at most the lead.

One connection is one channel: the call starts on the first audio frame (that is when its
rate is known) with the UUID as its call id. The first connection with a UUID is the
customer; a second connection with the same UUID (the other leg, e.g. AudioSocket on both
sides of a Dial) joins that call as the agent.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from callcue.platforms.base import (
    AudioIn,
    CallStart,
    CallStop,
    Dtmf,
    Handshake,
    IngressEvent,
    Platform,
    ProtocolError,
)

HANGUP, UUID, DTMF, ERROR = 0x00, 0x01, 0x03, 0xFF
#: audio kinds -> sample rate (signed linear 16-bit mono little-endian)
AUDIO_RATES: dict[int, int] = {0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000,
                               0x15: 44100, 0x16: 48000, 0x17: 96000, 0x18: 192000}  # fmt: skip
HEADER = 3
DTMF_DIGITS = frozenset("0123456789*#ABCD")
#: the virtual agent's audio goes out in 20 ms frames, at most this far ahead of the clock
FRAME_S = 0.020
LEAD_S = 0.060


class AudioSocketProtocol:
    def __init__(self, *, max_message_bytes: int = 64 * 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_payload = min(max_message_bytes, 0xFFFF)
        self._buf = bytearray()
        self.call_id: str | None = None
        self.rate: int | None = None
        self.kind: int | None = None  # the audio kind Asterisk sends: the bot answers in it
        self.state = "new"  # new -> identified -> started -> stopped | failed
        self._clock = clock
        self._speak: deque[bytes] = deque()
        self._next_at: float | None = None

    # -- the virtual agent's voice -------------------------------------------------------
    @property
    def speak_rate(self) -> int:
        return self.rate or 8000

    def play(self, pcm16: bytes, mark: str | None = None) -> float:
        """Queue 16-bit PCM at `speak_rate` for the caller; returns the seconds queued."""
        if self.state != "started" or not pcm16:
            return 0.0
        step = int(self.speak_rate * FRAME_S) * 2
        for i in range(0, len(pcm16), step):
            chunk = pcm16[i : i + step]
            self._speak.append(chunk + b"\0" * (step - len(chunk)))
        return len(pcm16) / 2 / self.speak_rate

    def clear(self) -> None:
        """Barge-in: what was not sent yet is dropped."""
        self._speak.clear()
        self._next_at = None

    @property
    def speaking(self) -> bool:
        """Audio still queued: the transport asks for the next frames every 20 ms."""
        return bool(self._speak)

    def receive_text(self, text: str) -> list[IngressEvent]:
        raise ProtocolError(1003, "AudioSocket is a binary protocol")

    def receive_bytes(self, data: bytes) -> list[IngressEvent]:
        if self.state in ("stopped", "failed"):
            raise ProtocolError(1008, f"bytes after the stream {'ended' if self.state == 'stopped' else 'failed'}")
        self._buf += data
        out: list[IngressEvent] = []
        try:
            while len(self._buf) >= HEADER:
                kind, length = self._buf[0], int.from_bytes(self._buf[1:3], "big")
                if length > self.max_payload:
                    raise ProtocolError(1009, f"frame of {length} bytes exceeds {self.max_payload} (the frame size limit)")
                if len(self._buf) < HEADER + length:
                    break
                payload = bytes(self._buf[HEADER:HEADER + length])
                del self._buf[:HEADER + length]
                out += self._frame(kind, payload)
                if self.state == "stopped":
                    break
        except ProtocolError:
            self.state = "failed"
            raise
        return out

    def receive_eof(self) -> list[IngressEvent]:
        """Asterisk closes the socket at hangup, usually without sending 0x00 first."""
        if self.state == "started" and self.call_id is not None:
            self.state = "stopped"
            return [CallStop(self.call_id, "hangup")]
        return []

    def data_to_send(self) -> list[str | bytes]:
        """The bot's audio frames due by now (never anything but audio: Asterisk would drop
        the call)."""
        if not self._speak or self.state != "started" or self.kind is None:
            self._next_at = None
            return []
        now = self._clock()
        if self._next_at is None or self._next_at < now - LEAD_S:  # (re)starting: from now, no catching up
            self._next_at = now
        out: list[str | bytes] = []
        while self._speak and self._next_at <= now + LEAD_S:
            out.append(frame(self.kind, self._speak.popleft()))
            self._next_at += FRAME_S
        return out

    def _frame(self, kind: int, payload: bytes) -> list[IngressEvent]:
        if kind == UUID:
            if self.state != "new":
                raise ProtocolError(1008, "a second UUID frame on one connection")
            if len(payload) != 16:
                raise ProtocolError(1007, f"UUID frame of {len(payload)} bytes (need 16)")
            self.call_id = str(uuid.UUID(bytes=payload))
            self.state = "identified"
            return []
        if kind == HANGUP:
            if self.state == "started" and self.call_id is not None:
                self.state = "stopped"
                return [CallStop(self.call_id, "hangup")]
            self.state = "stopped"
            return []
        if self.call_id is None:
            raise ProtocolError(1008, f"frame type 0x{kind:02x} before the UUID")
        if kind in AUDIO_RATES:
            rate = AUDIO_RATES[kind]
            if len(payload) % 2:
                raise ProtocolError(1007, f"audio payload of {len(payload)} bytes is not whole 16-bit samples")
            events: list[IngressEvent] = []
            if self.state == "identified":
                self.rate = rate
                self.kind = kind
                self.state = "started"
                events.append(CallStart(call_id=self.call_id, encoding="L16", sample_rate=rate, channels=("customer",),
                                        platform="audiosocket", metadata={"uuid": self.call_id},
                                        join="next_free"))  # fmt: skip
            elif rate != self.rate:
                raise ProtocolError(1003, f"audio rate changed from {self.rate} to {rate} Hz mid-stream")
            if payload:
                events.append(AudioIn(self.call_id, "customer", payload))
            return events
        if kind == DTMF:
            digit = payload[:1].decode("ascii", "replace").upper()
            if len(payload) != 1 or digit not in DTMF_DIGITS:
                raise ProtocolError(1007, "DTMF frame must carry one of 0-9 * # A-D")
            return [Dtmf(self.call_id, digit)] if self.state == "started" else []
        if kind == ERROR:
            code = payload.hex() or "none"
            was = self.state
            self.state = "stopped"
            return [CallStop(self.call_id, f"asterisk_error:{code}")] if was == "started" else []
        raise ProtocolError(1003, f"unknown AudioSocket frame type 0x{kind:02x}")


def authenticate(hs: Handshake, cfg: Any) -> str | None:
    """AudioSocket carries no credentials: only listed source addresses may stream."""
    try:
        peer = ipaddress.ip_address(hs.client or "")
    except ValueError:
        return "unknown source address"
    for net in cfg.allowed_sources:
        if peer in ipaddress.ip_network(net, strict=False):
            return None
    return f"source {peer} is not in [platforms.audiosocket] allowed_sources"


def frame(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket frame (what Asterisk sends; used by tests and tools)."""
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


PLATFORM = Platform("audiosocket", "", lambda max_bytes, cfg, hs: AudioSocketProtocol(max_message_bytes=max_bytes),
                    authenticate=authenticate, transport="tcp")
