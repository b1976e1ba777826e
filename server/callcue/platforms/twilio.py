"""Sans-I/O parser for Twilio Media Streams (the messages Twilio sends to our WebSocket).

Why sans-I/O: the server owns the socket; this object only turns one text frame into
platform-neutral events, so every quirk (string sequence numbers, per-track chunk counters,
late tracks, lost frames) is tested here without a network.

Twilio's sequence (docs: twilio.com/docs/voice/media-streams/websocket-messages):
``connected`` -> ``start`` -> ``media``* / ``dtmf`` / ``mark`` -> ``stop``. Every message but
``connected`` carries a top-level ``sequenceNumber`` (a decimal *string*, 1 = first message,
counting all events) and ``streamSid``. ``media.track`` is ``inbound`` (the caller, our
``customer`` channel) or ``outbound`` (what Twilio sends to the caller, our ``agent`` channel);
``media.chunk`` counts up per track from "1"; ``media.timestamp`` is milliseconds since the
stream started; ``media.payload`` is base64 mu-law, 8 kHz, mono (usually 20 ms = 160 bytes).

Call clock: each track keeps how many samples it has emitted. A frame whose timestamp lies
ahead of that position (lost frames, a track that starts late) is preceded by mu-law silence
(0xFF) and a `GapFilled`; a frame that is older than the last one (duplicate or out of order,
by chunk number) is dropped and counted, because a real-time pipeline cannot rewind. So the
bytes of a channel always equal its call-clock position and ASR word times stay true.

Errors: see docs/protocol-twilio.md for the table. Unknown event names are *not* errors:
Twilio adds events over time, so they are logged, counted and ignored (returning ``[]``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from callcue import wire
from callcue.audio.codecs import encode
from callcue.events import Channel
from callcue.platforms.base import (
    AudioIn,
    CallStart,
    CallStop,
    Dtmf,
    GapFilled,
    Handshake,
    IngressEvent,
    Mark,
    Platform,
    ProtocolError,
    json_object,
)

log = logging.getLogger(__name__)

__all__ = ["TRACK_CHANNEL", "TrackState", "TwilioCounters", "TwilioProtocol"]

#: Twilio track name -> our channel
TRACK_CHANNEL: dict[str, Channel] = {"inbound": "customer", "outbound": "agent"}
RATE = 8000
MULAW_SILENCE = b"\xff"
DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(slots=True)
class TwilioCounters:
    """Per-connection health numbers, exported as metrics by the server."""

    messages: int = 0
    frames: int = 0  # media frames accepted
    bytes: int = 0  # audio payload bytes accepted (not counting synthesized silence)
    gaps: int = 0
    gap_seconds: float = 0.0
    dropped: int = 0  # duplicate / out-of-order / fully overlapping media frames
    trimmed_bytes: int = 0  # bytes cut from partially overlapping frames
    sequence_gaps: int = 0  # messages missing according to sequenceNumber
    unknown_events: int = 0
    errors: int = 0


@dataclass(slots=True)
class TrackState:
    channel: Channel
    samples: int = 0  # samples emitted so far (payload + silence) = call-clock position
    last_chunk: int | None = None
    last_frame_bytes: int = 0
    frames: int = 0


@dataclass(slots=True)
class _Stream:
    call_id: str
    stream_sid: str
    tracks: dict[str, TrackState] = field(default_factory=dict)


class TwilioProtocol:
    """One instance per WebSocket connection from Twilio.

    Args:
        max_message_bytes: text frames larger than this are refused with 1009 (Twilio media
            frames are ~400 bytes; 64 KiB leaves room for large customParameters).
        gap_tolerance_ms: timestamp differences up to this are treated as clock rounding, not
            loss (Twilio timestamps are whole milliseconds).
        max_gap_seconds: a single timestamp jump larger than this is refused (1007) instead of
            synthesizing unbounded silence from one hostile frame.
    """

    def __init__(self, *, max_message_bytes: int = 64 * 1024, gap_tolerance_ms: int = 2, max_gap_seconds: float = 300.0,
                 gap_slack_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be > 0, got {max_message_bytes}")
        self.max_message_bytes = max_message_bytes
        self.gap_tolerance_samples = gap_tolerance_ms * RATE // 1000
        self.max_gap_samples = round(max_gap_seconds * RATE)
        # silence we synthesize for a stream may not run ahead of the time it has been open
        # (plus slack): Twilio streams in real time, so a frame claiming more is an attack
        # that would make us decode minutes of silence per 400-byte frame
        self.gap_slack_s = gap_slack_s
        self._clock = clock
        self._opened = clock()
        self.counters = TwilioCounters()
        self.state: str = "new"  # new -> connected -> started -> stopped | failed
        self.protocol_version: str | None = None
        self._stream: _Stream | None = None
        self._last_seq: int | None = None
        self._out: list[str] = []
        self._handlers = {
            "connected": self._on_connected,
            "start": self._on_start,
            "media": self._on_media,
            "dtmf": self._on_dtmf,
            "mark": self._on_mark,
            "stop": self._on_stop,
        }

    # -- public ------------------------------------------------------------------------
    @property
    def call_id(self) -> str | None:
        return self._stream.call_id if self._stream else None

    def track_state(self, track: str) -> TrackState | None:
        return self._stream.tracks.get(track) if self._stream else None

    def receive_text(self, text: str) -> list[IngressEvent]:
        """Parse one text frame. Raises `ProtocolError` (fatal unless stated) on bad input."""
        try:
            return self._receive(text)
        except ProtocolError as e:
            self.counters.errors += 1
            if e.fatal:
                self.state = "failed"
            raise

    #: the virtual agent's audio back on a bidirectional `<Connect><Stream>`: mu-law 8 kHz
    speak_rate = RATE

    def play(self, pcm16: bytes, mark: str | None = None) -> float:
        """Queue audio for the caller as `media` messages (one per second of audio), then a
        `mark` Twilio echoes when it has played; returns the seconds queued."""
        if self._stream is None or self.state != "started":
            return 0.0
        ulaw = encode("PCMU", pcm16)
        sid = self._stream.stream_sid
        for i in range(0, len(ulaw), RATE):
            self._out.append(json.dumps({"event": "media", "streamSid": sid,
                                         "media": {"payload": base64.b64encode(ulaw[i : i + RATE]).decode()}}))  # fmt: skip
        if mark:
            self._out.append(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": mark}}))
        return len(ulaw) / RATE

    def clear(self) -> None:
        """Barge-in: Twilio drops the audio it has not played yet."""
        if self._stream is not None and self.state == "started":
            self._out.append(json.dumps({"event": "clear", "streamSid": self._stream.stream_sid}))

    def data_to_send(self) -> list[str | bytes]:
        """The virtual agent's media, marks and clears, in order (listen-only: nothing)."""
        out, self._out = self._out, []
        return list(out)

    def receive_eof(self) -> list[IngressEvent]:
        """The socket closed. A call that never got `stop` still has to end downstream."""
        if self.state == "started" and self._stream is not None:
            self.state = "stopped"
            return [CallStop(self._stream.call_id, "disconnected")]
        return []

    def receive_bytes(self, data: bytes) -> list[IngressEvent]:
        """Twilio only sends text frames; a binary frame is a different protocol."""
        self.counters.errors += 1
        self.state = "failed"
        raise ProtocolError(1003, f"Twilio Media Streams sends JSON text frames, got a {len(data)}-byte binary frame")

    # -- parsing -----------------------------------------------------------------------
    def _receive(self, text: str) -> list[IngressEvent]:
        if self.state == "failed":
            raise ProtocolError(1008, "connection already failed; no further messages accepted")
        msg = json_object(text, self.max_message_bytes, "message")
        self.counters.messages += 1
        event = msg.get("event")
        if not isinstance(event, str) or not event:
            raise ProtocolError(1007, "message has no string field 'event'")
        if self.state == "stopped":
            raise ProtocolError(1008, f"'{event}' after 'stop'")
        if event != "connected":
            self._check_sequence(msg, event)
        handler = self._handlers.get(event)
        if handler is None:
            self.counters.unknown_events += 1
            log.warning("twilio: ignoring unknown event %r (call %s)", event[:40], self.call_id)
            return []
        return handler(msg)

    def _check_sequence(self, msg: dict[str, Any], event: str) -> None:
        if "sequenceNumber" not in msg:
            return  # tolerated: not all Twilio-compatible platforms send it on every event
        seq = _int_field(msg["sequenceNumber"], "sequenceNumber")
        if self._last_seq is not None and seq > self._last_seq + 1:
            self.counters.sequence_gaps += seq - self._last_seq - 1
        if self._last_seq is None or seq > self._last_seq:
            self._last_seq = seq

    def _on_connected(self, msg: dict[str, Any]) -> list[IngressEvent]:
        if self.state != "new":
            raise ProtocolError(1008, f"'connected' received in state {self.state}")
        version = msg.get("version")
        self.protocol_version = version if isinstance(version, str) else None
        self.state = "connected"
        return []

    def _on_start(self, msg: dict[str, Any]) -> list[IngressEvent]:
        if self.state == "started":
            raise ProtocolError(1008, "second 'start' on one stream")
        start = _obj(msg, "start", "start")
        call_sid = _str(start, "callSid", "start.callSid")
        stream_sid = _str(start, "streamSid", "start.streamSid")
        top_sid = msg.get("streamSid")
        if top_sid is not None and top_sid != stream_sid:
            raise ProtocolError(1007, "streamSid differs from start.streamSid")
        fmt = _obj(start, "mediaFormat", "start.mediaFormat")
        enc, rate, ch = fmt.get("encoding"), fmt.get("sampleRate"), fmt.get("channels")
        if enc != "audio/x-mulaw":
            raise ProtocolError(1003, f"unsupported start.mediaFormat.encoding {enc!r} (need 'audio/x-mulaw')")
        if rate != RATE or isinstance(rate, bool):
            raise ProtocolError(1003, f"unsupported start.mediaFormat.sampleRate {rate!r} (need 8000)")
        if ch != 1 or isinstance(ch, bool):
            raise ProtocolError(1003, f"unsupported start.mediaFormat.channels {ch!r} (need 1)")
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list) or not tracks or not all(isinstance(t, str) for t in tracks):
            raise ProtocolError(1007, "start.tracks must be a non-empty list of strings")
        bad = [t for t in tracks if t not in TRACK_CHANNEL]
        if bad or len(set(tracks)) != len(tracks):
            raise ProtocolError(1007, f"start.tracks {tracks!r}: expected distinct values of 'inbound', 'outbound'")
        params = start.get("customParameters", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ProtocolError(1007, "start.customParameters must be an object")
        agent_id = params.get("agent_id")
        if agent_id is not None and not isinstance(agent_id, str):
            raise ProtocolError(1007, "start.customParameters.agent_id must be a string")
        account_sid = start.get("accountSid")
        try:
            params = wire.clean_tree(params, "start.customParameters", depth=4, max_items=200)
            if agent_id:
                wire.ident(agent_id, "start.customParameters.agent_id")
            if account_sid is not None:
                wire.ident(account_sid, "start.accountSid")
        except wire.WireError as e:
            raise ProtocolError(1007, str(e)) from None
        self._stream = _Stream(call_id=call_sid, stream_sid=stream_sid)
        for t in tracks:
            self._stream.tracks[t] = TrackState(TRACK_CHANNEL[t])
        self.state = "started"
        channels = tuple(ch for ch in ("customer", "agent") if any(TRACK_CHANNEL[t] == ch for t in tracks))
        return [
            CallStart(
                call_id=call_sid,
                encoding="PCMU",
                sample_rate=RATE,
                channels=channels,  # type: ignore[arg-type]
                agent_id=agent_id or None,
                platform="twilio",
                join="exact",
                metadata={
                    "stream_sid": stream_sid,
                    "account_sid": account_sid,
                    "tracks": list(tracks),
                    "custom_parameters": params,
                    "protocol_version": self.protocol_version,
                },
            )
        ]

    def _require_started(self, event: str) -> _Stream:
        if self._stream is None or self.state != "started":
            raise ProtocolError(1008, f"'{event}' before 'start'")
        return self._stream

    def _check_sid(self, msg: dict[str, Any], stream: _Stream) -> None:
        sid = msg.get("streamSid")
        if sid is not None and sid != stream.stream_sid:
            raise ProtocolError(1008, f"streamSid {str(sid)[:40]!r} does not match this stream")

    def _on_media(self, msg: dict[str, Any]) -> list[IngressEvent]:
        stream = self._require_started("media")
        self._check_sid(msg, stream)
        media = _obj(msg, "media", "media")
        track_name = media.get("track", "inbound")
        if not isinstance(track_name, str) or track_name not in TRACK_CHANNEL:
            raise ProtocolError(1007, f"media.track {str(track_name)[:40]!r}: expected 'inbound' or 'outbound'")
        track = stream.tracks.get(track_name)
        if track is None:
            raise ProtocolError(1008, f"media on track {track_name!r} that start.tracks did not announce")
        b64 = media.get("payload")
        if not isinstance(b64, str):
            raise ProtocolError(1007, "media.payload must be a base64 string")
        try:
            payload = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ProtocolError(1007, f"media.payload is not valid base64: {e}") from None
        chunk = _int_field(media["chunk"], "media.chunk") if "chunk" in media else None
        ts_ms = _int_field(media["timestamp"], "media.timestamp") if "timestamp" in media else None

        if chunk is not None and track.last_chunk is not None and chunk <= track.last_chunk:
            self.counters.dropped += 1
            log.debug("twilio: dropped %s chunk %s (last %s)", track_name, chunk, track.last_chunk)
            return []
        events: list[IngressEvent] = []
        at: int | None = None
        if ts_ms is not None:
            at = ts_ms * RATE // 1000
        elif chunk is not None and track.last_chunk is not None:
            # no timestamp (some Twilio-compatible platforms): estimate from missing chunks
            at = track.samples + (chunk - track.last_chunk - 1) * track.last_frame_bytes
        if at is not None:
            delta = at - track.samples
            if delta > self.gap_tolerance_samples:
                if delta > self.max_gap_samples:
                    raise ProtocolError(1007, f"media jumps {delta / RATE:.1f}s ahead of track {track_name!r} (timestamp {ts_ms}, chunk {chunk})")
                budget = self._clock() - self._opened + self.gap_slack_s
                if self.counters.gap_seconds + delta / RATE > budget:
                    raise ProtocolError(1008, f"media timestamps run {self.counters.gap_seconds + delta / RATE:.0f}s of gaps "
                                              f"ahead of a stream open {self._clock() - self._opened:.0f}s")
                reason = "track started late" if track.frames == 0 else "timestamp jump"
                if chunk is not None and track.last_chunk is not None and chunk > track.last_chunk + 1:
                    reason = f"{chunk - track.last_chunk - 1} chunk(s) missing"
                events.append(GapFilled(stream.call_id, track.channel, delta / RATE, reason))
                events.append(AudioIn(stream.call_id, track.channel, MULAW_SILENCE * delta, track.samples / RATE))
                track.samples += delta
                self.counters.gaps += 1
                self.counters.gap_seconds += delta / RATE
            elif delta < -self.gap_tolerance_samples:
                overlap = -delta
                if overlap >= len(payload):
                    self.counters.dropped += 1
                    track.last_chunk = chunk if chunk is not None else track.last_chunk
                    return events
                payload = payload[overlap:]
                self.counters.trimmed_bytes += overlap
        if chunk is not None:
            track.last_chunk = chunk
        if payload:
            events.append(AudioIn(stream.call_id, track.channel, payload, track.samples / RATE))
            track.samples += len(payload)
            track.last_frame_bytes = len(payload)
        track.frames += 1
        self.counters.frames += 1
        self.counters.bytes += len(payload)
        return events

    def _on_dtmf(self, msg: dict[str, Any]) -> list[IngressEvent]:
        stream = self._require_started("dtmf")
        self._check_sid(msg, stream)
        dtmf = _obj(msg, "dtmf", "dtmf")
        digit = dtmf.get("digit")
        if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
            raise ProtocolError(1007, f"dtmf.digit {str(digit)[:10]!r}: expected one of 0-9 * # A-D")
        return [Dtmf(stream.call_id, digit.upper())]

    def _on_mark(self, msg: dict[str, Any]) -> list[IngressEvent]:
        stream = self._require_started("mark")
        self._check_sid(msg, stream)
        mark = _obj(msg, "mark", "mark")
        return [Mark(stream.call_id, _str(mark, "name", "mark.name"))]

    def _on_stop(self, msg: dict[str, Any]) -> list[IngressEvent]:
        stream = self._require_started("stop")
        self._check_sid(msg, stream)
        stop = msg.get("stop")
        if stop is not None:
            if not isinstance(stop, dict):
                raise ProtocolError(1007, "stop must be an object")
            sid = stop.get("callSid")
            if sid is not None and sid != stream.call_id:
                raise ProtocolError(1008, "stop.callSid does not match start.callSid")
        self.state = "stopped"
        return [CallStop(stream.call_id, "stop")]


# -- field helpers ---------------------------------------------------------------------
def _obj(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    v = parent.get(key)
    if not isinstance(v, dict):
        raise ProtocolError(1007, f"field '{path}' must be an object" if key in parent else f"missing field '{path}'")
    return v


def _str(parent: dict[str, Any], key: str, path: str) -> str:
    v = parent.get(key)
    if not isinstance(v, str) or not v:
        raise ProtocolError(1007, f"field '{path}' must be a non-empty string" if key in parent else f"missing field '{path}'")
    try:
        return wire.ident(v, path)  # type: ignore[return-value]
    except wire.WireError as e:
        raise ProtocolError(1007, str(e)) from None


def _int_field(v: Any, path: str) -> int:
    """Twilio sends counters as decimal strings; accept ints too, nothing else."""
    if isinstance(v, bool):
        raise ProtocolError(1007, f"field '{path}' must be a decimal string, got a boolean")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 15:
        n = int(v)
    else:
        raise ProtocolError(1007, f"field '{path}' must be a decimal string, got {str(v)[:20]!r}")
    if n < 0:
        raise ProtocolError(1007, f"field '{path}' must be >= 0, got {n}")
    return n


def twilio_signature(url: str, auth_token: str, params: dict[str, str] | None = None) -> str:
    """X-Twilio-Signature as Twilio documents it: base64 of HMAC-SHA1, keyed with the account's
    auth token, over the full URL followed by each POST parameter's name and value sorted by
    name (a WebSocket upgrade has none)."""
    params = params or {}
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _url_forms(url: str) -> list[str]:
    """The URL as Twilio may have signed it: the wss:// form of a ws:// request (TLS ended
    at a proxy) and with or without the scheme's default port."""
    parts = urlsplit(url)
    out = []
    for scheme in dict.fromkeys((parts.scheme, {"ws": "wss", "wss": "ws", "http": "https", "https": "http"}.get(parts.scheme, parts.scheme))):
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        default = {"wss": 443, "https": 443, "ws": 80, "http": 80}.get(scheme)
        netlocs = [parts.netloc]
        if parts.port is None and default:
            netlocs.append(f"{host}:{default}")
        elif parts.port == default:
            netlocs.append(host)
        for n in netlocs:
            out.append(urlunsplit((scheme, n, parts.path, parts.query, "")))
    return out


def authenticate(hs: Handshake, cfg: Any) -> str | None:
    """None when the upgrade carries a valid X-Twilio-Signature for one of the accounts."""
    if not cfg.validate_signature:
        return None
    sig = hs.headers.get("x-twilio-signature")
    if not sig:
        return "missing X-Twilio-Signature"
    urls = _url_forms(cfg.public_url) if cfg.public_url else []
    urls += _url_forms(hs.url)
    ok = False
    for token in cfg.auth_tokens:
        for u in urls:
            ok |= hmac.compare_digest(twilio_signature(u, token).encode(), sig.encode())
    return None if ok else "X-Twilio-Signature does not match this URL for any configured account"


PLATFORM = Platform("twilio", "/ws/twilio", lambda max_bytes, cfg, hs: TwilioProtocol(max_message_bytes=max_bytes),
                    authenticate=authenticate)
