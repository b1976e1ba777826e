"""Sans-I/O parser for the CallCue native ingress protocol (spec: docs/protocol-native.md).

Why our own protocol next to Twilio's: PBXs, SIPREC bridges and test clients want to send raw
PCM or G.711 without base64 (a third more bytes and a JSON parse per 20 ms), and want both
call legs on one socket. So control messages are JSON text frames and audio is binary frames
with a one-byte header naming the channel. WebSocket is ordered and lossless, so unlike Twilio
there are no sequence numbers: each channel's call clock is simply the bytes received.

The protocol is ours, so it is strict: an unknown message type or field value closes the
connection with a reason naming the field, and clients find bugs on day one instead of in
production.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from callcue import wire
from callcue.audio.codecs import BYTES_PER_SAMPLE, encode
from callcue.auth import bearer_token, token_matches
from callcue.events import CHANNELS, Channel
from callcue.platforms.base import (
    SUPPORTED_ENCODINGS,
    SUPPORTED_RATES,
    AudioIn,
    CallStart,
    CallStop,
    Dtmf,
    Handshake,
    IngressEvent,
    Mark,
    Platform,
    ProtocolError,
    TextTurn,
    json_object,
)

__all__ = ["HEADER_BYTES", "NativeCounters", "NativeProtocol", "encode_audio_frame"]

HEADER_BYTES = 1
ID_RE = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
DTMF_DIGITS = frozenset("0123456789*#ABCD")
MESSAGE_TYPES = ("start", "stop", "dtmf", "mark", "text")
MAX_TEXT = 8000


@dataclass(slots=True)
class NativeCounters:
    messages: int = 0  # text frames
    frames: int = 0  # audio frames accepted
    bytes: int = 0  # audio payload bytes accepted (header excluded)
    errors: int = 0
    per_channel_bytes: dict[str, int] = field(default_factory=dict)


def encode_audio_frame(channel_index: int, payload: bytes) -> bytes:
    """Build one binary audio frame (for clients, simulators and tests)."""
    if not 0 <= channel_index <= 1:
        raise ValueError(f"channel index must be 0 or 1, got {channel_index}")
    return bytes([channel_index]) + payload


class NativeProtocol:
    """One instance per native ingress WebSocket connection.

    `max_message_bytes` bounds text and binary frames alike (1009 when exceeded); 64 KiB is
    ~2 s of 16 kHz L16, far more than the 20-100 ms frames clients should send.
    """

    def __init__(self, *, max_message_bytes: int = 64 * 1024) -> None:
        if max_message_bytes <= HEADER_BYTES:
            raise ValueError(f"max_message_bytes must be > {HEADER_BYTES}, got {max_message_bytes}")
        self.max_message_bytes = max_message_bytes
        self.counters = NativeCounters()
        self.state: str = "new"  # new -> started -> stopped | failed
        self.start: CallStart | None = None
        self._out: list[str | bytes] = []

    @property
    def call_id(self) -> str | None:
        return self.start.call_id if self.start else None

    # -- public ------------------------------------------------------------------------
    def receive_text(self, text: str) -> list[IngressEvent]:
        """Parse one JSON control frame; raises `ProtocolError` (always fatal)."""
        return self._guard(self._text, text)

    def receive_bytes(self, data: bytes) -> list[IngressEvent]:
        """Parse one binary audio frame; raises `ProtocolError` (always fatal)."""
        return self._guard(self._bytes, data)

    #: binary frames to the client whose first byte is this carry the virtual agent's voice
    BOT_AUDIO = 2

    @property
    def speak_rate(self) -> int:
        """The start's rate when the call has audio (the bot answers in the start's encoding);
        0 for a chat: nothing is synthesized."""
        return self.start.sample_rate if self.start is not None and self.start.channels and self.state == "started" else 0

    def play(self, pcm16: bytes, mark: str | None = None) -> float:
        """The virtual agent's voice: binary frames `[2][audio]` in the start's encoding and
        rate, 100 ms each, then `{"type": "mark", "name": ...}`; the client plays them in order."""
        rate = self.speak_rate
        if not rate or self.start is None:
            return 0.0
        step = rate // 10 * 2
        for i in range(0, len(pcm16), step):
            self._out.append(bytes([self.BOT_AUDIO]) + encode(self.start.encoding, pcm16[i : i + step]))
        if mark:
            self._out.append(json.dumps({"type": "mark", "name": mark}))
        return len(pcm16) / 2 / rate

    def clear(self) -> None:
        """Barge-in: `{"type": "clear"}`, the client drops what it has not played."""
        if self.state == "started":
            self._out = [o for o in self._out if not (isinstance(o, bytes) and o[:1] == bytes([self.BOT_AUDIO]))]
            self._out.append(json.dumps({"type": "clear"}))

    def reply_text(self, text: str) -> None:
        """The virtual agent's line in a chat: `{"type": "bot", "text": ...}`."""
        if self.state == "started":
            self._out.append(json.dumps({"type": "bot", "text": text}))

    def data_to_send(self) -> list[str | bytes]:
        """The virtual agent's lines, when a flow answers the interaction (else nothing)."""
        out, self._out = self._out, []
        return out

    def receive_eof(self) -> list[IngressEvent]:
        """The socket closed. A call that never got `stop` still has to end downstream."""
        if self.state == "started" and self.start is not None:
            self.state = "stopped"
            return [CallStop(self.start.call_id, "disconnected")]
        return []

    def _guard(self, fn: Any, arg: Any) -> list[IngressEvent]:
        try:
            if self.state == "failed":
                raise ProtocolError(1008, "connection already failed; no further frames accepted")
            return fn(arg)
        except ProtocolError:
            self.counters.errors += 1
            self.state = "failed"
            raise

    # -- text --------------------------------------------------------------------------
    def _text(self, text: str) -> list[IngressEvent]:
        msg = json_object(text, self.max_message_bytes, "text frame")
        self.counters.messages += 1
        kind = msg.get("type")
        if not isinstance(kind, str):
            raise ProtocolError(1007, "missing string field 'type'")
        if kind not in MESSAGE_TYPES:
            raise ProtocolError(1007, f"unknown type {kind[:40]!r}; expected one of {', '.join(MESSAGE_TYPES)}")
        if self.state == "stopped":
            raise ProtocolError(1008, f"'{kind}' after 'stop'")
        if kind == "start":
            return self._start(msg)
        if self.start is None:
            raise ProtocolError(1008, f"'{kind}' before 'start'")
        call_id = self.start.call_id
        if kind == "stop":
            reason = msg.get("reason", "stop")
            if not isinstance(reason, str) or len(reason) > 200:
                raise ProtocolError(1007, "field 'reason' must be a string of at most 200 characters")
            self.state = "stopped"
            return [CallStop(call_id, reason)]
        if kind == "dtmf":
            digit = msg.get("digit")
            if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
                raise ProtocolError(1007, f"field 'digit' {str(digit)[:10]!r}: expected one of 0-9 * # A-D")
            return [Dtmf(call_id, digit.upper())]
        if kind == "text":
            return [self._turn(call_id, msg)]
        name = msg.get("name")  # mark
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ProtocolError(1007, "field 'name' must be a non-empty string of at most 200 characters")
        return [Mark(call_id, name)]

    def _turn(self, call_id: str, msg: dict[str, Any]) -> TextTurn:
        """A chat turn: {"type": "text", "channel", "text", "time"?, "end"?} (seconds on the call clock)."""
        channel = msg.get("channel")
        if channel not in CHANNELS:
            raise ProtocolError(1007, "field 'channel' must be 'customer' or 'agent'")
        text = msg.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise ProtocolError(1007, f"field 'text' must be a non-empty string of at most {MAX_TEXT} characters")
        times = []
        for k in ("time", "end"):
            v = msg.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 86400 * 7):
                raise ProtocolError(1007, f"field '{k}' must be seconds from the start of the call")
            times.append(None if v is None else float(v))
        if times[0] is not None and times[1] is not None and times[1] < times[0]:
            raise ProtocolError(1007, "field 'end' is before 'time'")
        return TextTurn(call_id, channel, text.strip(), times[0], times[1])

    def _start(self, msg: dict[str, Any]) -> list[IngressEvent]:
        if self.state != "new":
            raise ProtocolError(1008, "second 'start' on one connection")
        call_id = msg.get("call_id")
        if not isinstance(call_id, str) or not ID_RE.fullmatch(call_id):
            raise ProtocolError(1007, "field 'call_id' must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")
        agent_id = msg.get("agent_id")
        if agent_id is not None and (not isinstance(agent_id, str) or not ID_RE.fullmatch(agent_id)):
            raise ProtocolError(1007, "field 'agent_id' must be null or 1-128 characters of A-Z a-z 0-9 . _ : @ -")
        channels = msg.get("channels", ["customer"])
        if channels == []:  # a text-only interaction (chat): turns, no audio
            msg = {"encoding": "L16", "sample_rate": 8000, **msg}
        if (
            not isinstance(channels, list)
            or not 0 <= len(channels) <= 2
            or any(c not in CHANNELS for c in channels)
            or len(set(channels)) != len(channels)
        ):
            raise ProtocolError(1007, "field 'channels' must list 0 (text only) to 2 distinct values of 'customer', 'agent'")
        encoding = msg.get("encoding")
        if not isinstance(encoding, str):
            raise ProtocolError(1007, "missing string field 'encoding'")
        if encoding not in SUPPORTED_ENCODINGS:
            raise ProtocolError(1003, f"unsupported encoding {encoding[:20]!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
        rate = msg.get("sample_rate")
        if not isinstance(rate, int) or isinstance(rate, bool):
            raise ProtocolError(1007, "field 'sample_rate' must be an integer")
        if rate not in SUPPORTED_RATES:
            raise ProtocolError(1003, f"unsupported sample_rate {rate}; supported: {', '.join(map(str, SUPPORTED_RATES))}")
        metadata = msg.get("metadata", {})
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise ProtocolError(1007, "field 'metadata' must be an object")
        try:
            metadata = wire.clean_tree(metadata, "metadata", depth=8, max_items=500)
        except wire.WireError as e:
            raise ProtocolError(1007, str(e)) from None
        self.start = CallStart(
            call_id=call_id,
            encoding=encoding,  # type: ignore[arg-type]
            sample_rate=rate,
            channels=tuple(channels),
            agent_id=agent_id,
            platform="native",
            metadata=metadata,
        )
        self.counters.per_channel_bytes = {c: 0 for c in channels}
        self.state = "started"
        return [self.start]

    # -- binary ------------------------------------------------------------------------
    def _bytes(self, data: bytes) -> list[IngressEvent]:
        if len(data) > self.max_message_bytes:
            raise ProtocolError(1009, f"binary frame of {len(data)} bytes exceeds {self.max_message_bytes} (the frame size limit)")
        if self.state == "new":
            raise ProtocolError(1008, "audio before 'start'")
        if self.state == "stopped":
            raise ProtocolError(1008, "audio after 'stop'")
        assert self.start is not None
        if len(data) <= HEADER_BYTES:
            raise ProtocolError(1007, f"audio frame of {len(data)} byte(s) has no payload after the {HEADER_BYTES}-byte header")
        index = data[0]
        if index >= len(self.start.channels):
            raise ProtocolError(1007, f"channel index {index} not in start.channels {list(self.start.channels)}")
        payload = bytes(data[HEADER_BYTES:])
        width = BYTES_PER_SAMPLE[self.start.encoding]
        if len(payload) % width:
            raise ProtocolError(1007, f"L16 payload of {len(payload)} bytes is not a whole number of 16-bit samples")
        channel: Channel = self.start.channels[index]
        done = self.counters.per_channel_bytes[channel]
        offset = done / (width * self.start.sample_rate)
        self.counters.per_channel_bytes[channel] = done + len(payload)
        self.counters.frames += 1
        self.counters.bytes += len(payload)
        return [AudioIn(self.start.call_id, channel, payload, offset)]


def authenticate(hs: Handshake, cfg: Any) -> str | None:
    """A bearer token on the upgrade (`Authorization` header), never in the URL."""
    if token_matches(bearer_token(hs.headers), cfg.tokens):
        return None
    return "missing or invalid bearer token (Authorization: Bearer <token>)"


PLATFORM = Platform("native", "/ws/native", lambda max_bytes, cfg, hs: NativeProtocol(max_message_bytes=max_bytes),
                    authenticate=authenticate)
