"""Platform-neutral call events, the parser interface every platform implements, and the
platform registration a transport serves.

Every platform adapter (Twilio, native, later Genesys, Vonage, ...) turns bytes/text into
these, so the call manager never sees a platform quirk. Audio stays in its wire encoding
here; decoding happens in the audio stage, which is the one place codecs live.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from callcue import wire
from callcue.audio.codecs import BYTES_PER_SAMPLE
from callcue.config import PlatformLimits
from callcue.events import Channel

Encoding = Literal["L16", "PCMU", "PCMA"]
#: the one encodings table lives with the codecs (audio/codecs.py: bytes per sample); the
#: platforms accept exactly what the codecs decode
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(BYTES_PER_SAMPLE)
SUPPORTED_RATES: tuple[int, ...] = (8000, 16000)


@dataclass(slots=True)
class CallStart:
    call_id: str
    encoding: Encoding
    sample_rate: int
    channels: tuple[Channel, ...]
    agent_id: str | None = None
    platform: str = "native"
    metadata: dict[str, Any] = field(default_factory=dict)
    #: a call that may arrive on several connections (Twilio's two <Stream>s, Asterisk's two
    #: AudioSocket legs, an AudioHook continued session): "exact" joins with the channels as
    #: declared, "next_free" takes the first channel the call does not have yet; None refuses
    #: a second stream for a live call
    join: Literal["exact", "next_free"] | None = None


@dataclass(slots=True)
class AudioIn:
    """One frame of encoded audio for one channel.

    `offset` is where the frame starts on the call clock in seconds when the platform tells
    us (Twilio's timestamp); None means "right after the previous frame of this channel".
    """

    call_id: str
    channel: Channel
    payload: bytes
    offset: float | None = None


@dataclass(slots=True)
class GapFilled:
    """The parser detected missing audio (sequence/timestamp jump) and synthesized silence."""

    call_id: str
    channel: Channel
    missing_seconds: float
    reason: str


@dataclass(slots=True)
class Dtmf:
    call_id: str
    digit: str


@dataclass(slots=True)
class Mark:
    call_id: str
    name: str


@dataclass(slots=True)
class CallStop:
    """This connection's part of the call is over. `linger` says the platform will come back
    (AudioHook `close` with reason `reconnect`, a connection lost mid-call): the call waits
    for the continued stream instead of ending, so no audio time is lost."""

    call_id: str
    reason: str = "stop"
    linger: bool = False


@dataclass(slots=True)
class Paused:
    """The platform stopped sending audio on purpose (hold, secure pause): no idle timeout."""

    call_id: str


@dataclass(slots=True)
class Resumed:
    call_id: str


@dataclass(slots=True)
class EndUtterance:
    """The platform says the utterance in progress ends here (AudioHook: the client paused,
    or changed the language): open speech segments are finalized and speech that goes on
    starts a new one."""

    call_id: str


@dataclass(slots=True)
class TextTurn:
    """A turn typed, not spoken (a chat message on the native protocol): it enters the
    pipeline where an ASR final does. `at`/`end` are seconds on the call clock (None: now)."""

    call_id: str
    channel: Channel
    text: str
    at: float | None = None
    end: float | None = None


@dataclass(slots=True)
class Heartbeat:
    """A keep-alive (AudioHook `ping`): the peer is there even when no audio flows."""


@dataclass(slots=True)
class CloseConnection:
    """The protocol is finished with this connection (AudioHook after `closed`, a probe):
    the transport sends what is queued, then closes with this code."""

    code: int = 1000
    reason: str = ""


IngressEvent = (CallStart | AudioIn | GapFilled | Dtmf | Mark | CallStop | Paused | Resumed | EndUtterance | Heartbeat
                | CloseConnection | TextTurn)


class ProtocolError(Exception):
    """A frame the peer sent that we must reject.

    `close_code` follows RFC 6455: 1003 unsupported data (bad encoding/rate), 1007 invalid
    payload (bad JSON/base64/wrong type), 1008 policy violation (unknown call, auth, order),
    1009 message too big. `fatal` frames close the connection; non-fatal ones are logged and
    counted while the call goes on.
    """

    def __init__(self, close_code: int, reason: str, *, fatal: bool = True) -> None:
        super().__init__(reason)
        self.close_code = close_code
        # RFC 6455 limits a close reason to 123 bytes of UTF-8
        self.reason = reason.encode()[:123].decode(errors="ignore")
        self.fatal = fatal


def json_object(text: str, max_bytes: int, what: str = "message") -> dict[str, Any]:
    """Size-check and parse one JSON text frame into an object, or raise the right close code.

    Shared by every JSON-speaking platform parser so they all reject the same way: 1009 past
    the size limit (measured in UTF-8 bytes, without encoding short frames at all), 1007 for
    anything that is not a JSON object.
    """
    if len(text) > max_bytes or (len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes):
        raise ProtocolError(1009, f"{what} exceeds {max_bytes} bytes (the frame size limit)")
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ProtocolError(1007, f"invalid JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(1007, f"message must be a JSON object, got {type(msg).__name__}")
    if _SURROGATE_ESCAPE.search(text):
        try:
            wire.clean_tree(msg, what, depth=64, max_items=1_000_000)
        except wire.WireError as e:
            raise ProtocolError(1007, f"invalid payload: {e}") from None
    return msg


# a \uD800-\uDFFF escape: the only way JSON text can carry a lone surrogate
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class PlatformParser(Protocol):
    """A sans-I/O platform protocol: bytes in, call events out, no sockets.

    Every method may raise `ProtocolError`; `receive_eof` is called once when the peer is
    gone, so a call that never said `stop` still ends. `data_to_send` returns the frames the
    platform expects back (handshake replies, pongs), which the transport writes in order.
    """

    def receive_text(self, text: str) -> list[IngressEvent]: ...
    def receive_bytes(self, data: bytes) -> list[IngressEvent]: ...
    def receive_eof(self) -> list[IngressEvent]: ...
    def data_to_send(self) -> list[str | bytes]: ...


# ---------------------------------------------------------------- optional parser hooks
# A parser declares a hook by having the method; `ParserHooks.of` finds them once per
# connection, so the transport dispatches on declared capabilities instead of probing.


@runtime_checkable
class SignalsErrors(Protocol):
    """A parser whose platform has its own error message (AudioHook `disconnect`): a refusal
    from the call side (capacity, a conflicting stream) is answered in the platform's terms
    instead of a bare close. `fail` queues that message and says whether the connection
    stays open for the platform's closing handshake."""

    def fail(self, error: ProtocolError) -> bool: ...


@runtime_checkable
class ClosesInTurn(Protocol):
    """A parser whose platform gets a last reply after the call's final words are flushed
    (AudioHook `closed`): `finish_close` queues it."""

    def finish_close(self) -> None: ...


@runtime_checkable
class TakesControl(Protocol):
    """A platform session that can be asked to stop and restart sending audio, and takes
    the call's finals back (AudioHook `pause`/`resume` and transcript events)."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def transcript(self, t: Any) -> None: ...


@runtime_checkable
class SpeaksBack(Protocol):
    """A session that carries audio to the caller (Twilio `<Connect><Stream>`, AudioSocket,
    the native protocol, WebRTC): the virtual agent plays 16-bit PCM at `speak_rate` (0: no
    audio on this session now, e.g. a chat) and clears what is still queued (barge-in)."""

    speak_rate: int

    def play(self, pcm16: bytes, mark: str | None = None) -> float: ...
    def clear(self) -> None: ...


@runtime_checkable
class TypesBack(Protocol):
    """A session that carries text to the customer (the native protocol's chats): the virtual
    agent's lines."""

    def reply_text(self, text: str) -> None: ...


@runtime_checkable
class ContinuesClock(Protocol):
    """A continued session whose stream clock restarts at 0 where the call's already ran:
    the transport sets `clock_base` to the call's clock when the session joins."""

    clock_base: float


@dataclass(frozen=True, slots=True)
class ParserHooks:
    fail: SignalsErrors | None
    finish_close: ClosesInTurn | None
    control: TakesControl | None
    clock: ContinuesClock | None
    speaker: SpeaksBack | None = None
    typist: TypesBack | None = None

    @classmethod
    def of(cls, parser: object) -> ParserHooks:
        return cls(parser if isinstance(parser, SignalsErrors) else None,
                   parser if isinstance(parser, ClosesInTurn) else None,
                   parser if isinstance(parser, TakesControl) else None,
                   parser if isinstance(parser, ContinuesClock) else None,
                   parser if isinstance(parser, SpeaksBack) else None,
                   parser if isinstance(parser, TypesBack) else None)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Handshake:
    """What a transport knows of a connection before the first frame: the URL the request
    came to (scheme, host, path, query), its headers (lower-case names) and the peer."""

    url: str
    headers: Mapping[str, str]
    client: str | None = None

    @property
    def query(self) -> dict[str, str]:
        """The URL's query parameters, first value of each."""
        from urllib.parse import parse_qs, urlsplit

        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items() if v}


#: (handshake, this platform's config section) -> why it is refused, or None to let it in
Authenticate = Callable[[Handshake, Any], "str | None"]
#: (max frame bytes, config section, handshake) -> a fresh parser for one connection
MakeParser = Callable[[int, Any, Handshake], PlatformParser]
#: (why, max frame bytes, config section, handshake) -> a parser that tells a refused peer
#: why in the platform's own terms (AudioHook: `disconnect` with reason `unauthorized`)
MakeRefusal = Callable[[str, int, Any, Handshake], PlatformParser]


@dataclass(frozen=True, slots=True)
class Platform:
    """How a transport serves one platform: its name, where, a fresh parser per connection,
    and how a connection proves it is that platform (its authentication, on by default)."""

    name: str
    path: str
    make_parser: MakeParser
    authenticate: Authenticate | None = None
    transport: Literal["websocket", "tcp", "http"] = "websocket"
    subprotocols: tuple[str, ...] = ()
    #: None: a refused connection is closed with 1008 before its first frame
    refusal: MakeRefusal | None = None
    #: the model of its `[platforms.NAME]` section when the config module does not type it
    #: (a platform added as one module); None: only the limits every platform has
    config_model: type[PlatformLimits] | None = None
