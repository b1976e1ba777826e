"""What every transport does with a platform parser's events, whatever carries the bytes.

A transport (WebSocket today; raw TCP and WebRTC beside it) owns the socket and hands each
frame to the parser; this session applies the parser's events to the calls. It gets what it
needs passed in: somewhere calls start and stop (`CallSink`) and somewhere rejections are
recorded (`RejectionRecorder`), never the application's state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from callcue import metrics
from callcue.auth import FailureLimiter
from callcue.events import Channel, Transcript
from callcue.platforms.base import (
    AudioIn,
    CallStart,
    CallStop,
    CloseConnection,
    Dtmf,
    EndUtterance,
    GapFilled,
    Handshake,
    Heartbeat,
    IngressEvent,
    Mark,
    ParserHooks,
    Paused,
    Platform,
    PlatformParser,
    ProtocolError,
    Resumed,
    SpeaksBack,
    TakesControl,
    TextTurn,
    TypesBack,
)

log = logging.getLogger(__name__)
#: longest a platform's closing reply waits for the call's last words to be recognized
CLOSE_WAIT_S = 5.0


class LiveCall(Protocol):
    call_id: str

    @property
    def ended(self) -> bool: ...

    @property
    def channels(self) -> Mapping[Channel, Any]: ...
    async def audio(self, channel: Channel, payload: bytes) -> None: ...
    async def text(self, t: Transcript) -> None: ...
    def dtmf(self) -> None: ...
    async def end_utterance(self) -> None: ...


class CallSink(Protocol):
    async def start(self, start: CallStart) -> LiveCall: ...
    async def stop(self, call_id: str, reason: str = "stop", leg: object = None, linger: bool = False) -> None: ...
    def attach_remote(self, call_id: str, remote: TakesControl) -> None: ...
    def detach_remote(self, call_id: str, remote: TakesControl) -> None: ...
    def attach_outlet(self, call_id: str, speaker: SpeaksBack | None, typist: TypesBack | None,
                      flush: Callable[[], Awaitable[None]]) -> None: ...  # fmt: skip
    def detach_outlet(self, call_id: str) -> None: ...


RejectionRecorder = Callable[[str, "str | None", int, str], None]  # platform, call id, close code, reason


class IngressSession:
    """One connection's call: at most one start, audio for its declared channels, one stop."""

    def __init__(self, parser: PlatformParser, platform: str, calls: CallSink, rejected: RejectionRecorder,
                 send: Callable[[list[str | bytes]], Awaitable[None]] | None = None,
                 start_metadata: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        self.parser = parser
        #: replies go out before the events are applied (a `pong` or `closed` must not wait
        #: for a call to flush its recognizer)
        self.send = send
        self._frame_seconds = metrics.INGRESS_FRAME.labels(platform)  # per frame: look the child up once
        self.platform = platform
        #: what the listener adds to each call's start (AudioSocket's flow port names the flow)
        self.start_metadata = dict(start_metadata or {})
        self.calls = calls
        self.rejected = rejected
        self.call: LiveCall | None = None
        self.end_reason = "disconnected"
        self.stopped = False
        #: set when the protocol is done with the connection (after AudioHook `closed`)
        self.close_request: CloseConnection | None = None
        #: the platform paused the audio on purpose: the idle timeout does not run meanwhile
        self.paused = False
        self._stopping: asyncio.Future[None] | None = None
        #: monotonic time of the last audio or keep-alive (or of the connection): the idle
        #: timeout counts from here
        self.last_audio = time.monotonic()
        self._text_turns: dict[str, int] = {}  # typed turns per channel (native "text" messages)
        self.hooks = ParserHooks.of(parser)
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            CallStart: self._on_start, AudioIn: self._on_audio, GapFilled: self._on_gap, Dtmf: self._on_dtmf,
            Mark: self._on_nothing, Paused: self._on_paused, Resumed: self._on_resumed, Heartbeat: self._on_heartbeat,
            TextTurn: self._on_text, EndUtterance: self._on_end_utterance, CloseConnection: self._on_close,
            CallStop: self._on_stop,
        }  # fmt: skip

    @property
    def finished(self) -> bool:
        """Nothing more will come that matters: send what is queued, then close."""
        return self.stopped or self.close_request is not None

    async def feed(self, text: str | None, data: bytes | None) -> None:
        """One frame from the peer. Raises `ProtocolError` after recording it."""
        t0 = time.perf_counter()
        try:
            events = self.parser.receive_text(text) if text is not None else self.parser.receive_bytes(data or b"")
            if self.send is not None:
                out = self.parser.data_to_send()
                if out:
                    await self.send(out)
            await self._apply_all(events)
        except ProtocolError as e:
            self.rejected(self.platform, self.call.call_id if self.call else None, e.close_code, e.reason)
            if e.fatal and self.hooks.fail is not None and self.hooks.fail.fail(e):
                # the platform has its own error message and closing handshake (AudioHook
                # `disconnect`, then `close`/`closed`): the connection stays for it
                self.end_reason = f"protocol_error:{e.close_code}"
                return
            if e.fatal:
                self.end_reason = f"protocol_error:{e.close_code}"
            raise
        finally:
            self._frame_seconds.observe(time.perf_counter() - t0)

    async def _flush(self) -> None:
        """Send what the parser queued now (the virtual agent speaks between the peer's frames)."""
        if self.send is not None:
            out = self.parser.data_to_send()
            if out:
                await self.send(out)

    def outgoing(self) -> list[str | bytes]:
        return self.parser.data_to_send()

    async def eof(self) -> None:
        """The peer is gone: the parser may still end the call; whatever it says, it ends."""
        if self._stopping is not None:  # a stop that outlived the platform's close deadline
            try:
                await self._stopping
            except Exception:
                log.exception("stopping the call failed", extra={"platform": self.platform})
        try:
            await self._apply_all(self.parser.receive_eof())
        except ProtocolError as e:
            self.rejected(self.platform, self.call.call_id if self.call else None, e.close_code, e.reason)
        finally:
            if self.call is not None:
                self._detach(self.call.call_id)
            if self.call is not None and not self.call.ended:
                await self.calls.stop(self.call.call_id, self.end_reason, leg=self.call)

    async def _stop(self, call: LiveCall, ev: CallStop) -> None:
        try:
            await self.calls.stop(call.call_id, ev.reason, leg=call, linger=ev.linger)
        finally:  # after the stop: its flushed finals may still go back to the platform
            self._detach(call.call_id)

    def _detach(self, call_id: str) -> None:
        if self.hooks.control is not None:
            self.calls.detach_remote(call_id, self.hooks.control)
        if self.hooks.speaker is not None or self.hooks.typist is not None:
            self.calls.detach_outlet(call_id)

    async def _apply_all(self, events: list[IngressEvent]) -> None:
        for ev in events:
            await self._apply(ev)
            if isinstance(ev, CallStop):
                self.end_reason = ev.reason
                self.stopped = True
            elif isinstance(ev, CloseConnection):
                self.close_request = ev

    async def _apply(self, ev: IngressEvent) -> None:
        handler = self._handlers.get(type(ev))
        if handler is None:
            raise TypeError(f"{type(ev).__name__} is not an ingress event this session knows")
        await handler(ev)

    def _live(self, call_id: str, what: str) -> LiveCall:
        if self.call is None or call_id != self.call.call_id:
            raise ProtocolError(1008, f"{what} for unknown call {call_id!r}")
        return self.call

    async def _on_start(self, ev: CallStart) -> None:
        if self.call is not None:
            raise ProtocolError(1008, f"a second start on one connection (call {self.call.call_id!r} is active)")
        ev.platform = self.platform
        if self.start_metadata:
            ev.metadata = {**ev.metadata, **self.start_metadata}
        self.call = call = await self.calls.start(ev)
        if self.hooks.control is not None:
            self.calls.attach_remote(ev.call_id, self.hooks.control)
        if self.hooks.speaker is not None or self.hooks.typist is not None:
            self.calls.attach_outlet(ev.call_id, self.hooks.speaker, self.hooks.typist, self._flush)
        if self.hooks.clock is not None:
            # a continued session's stream starts at 0 where the call's clock already ran
            self.hooks.clock.clock_base = max((getattr(c, "audio_seconds", 0.0) for c in call.channels.values()),
                                              default=0.0)  # fmt: skip

    async def _on_audio(self, ev: AudioIn) -> None:
        call = self._live(ev.call_id, "audio")
        if ev.channel not in call.channels:
            raise ProtocolError(1008, f"audio for channel {ev.channel!r} that the start did not declare")
        self.last_audio = time.monotonic()
        await call.audio(ev.channel, ev.payload)

    async def _on_gap(self, ev: GapFilled) -> None:
        metrics.GAPS.labels(self.platform).inc()
        log.info("audio gap filled", extra={"call_id": ev.call_id, "channel": ev.channel,
                                            "missing_s": round(ev.missing_seconds, 3), "why": ev.reason})  # fmt: skip

    async def _on_dtmf(self, ev: Dtmf) -> None:
        if self.call is not None:
            self.call.dtmf()

    async def _on_nothing(self, ev: IngressEvent) -> None:
        """A mark: the platform played what we sent; nothing to apply."""

    async def _on_paused(self, ev: Paused) -> None:
        self.paused = True

    async def _on_resumed(self, ev: Resumed) -> None:
        self.paused = False
        self.last_audio = time.monotonic()

    async def _on_heartbeat(self, ev: Heartbeat) -> None:
        self.last_audio = time.monotonic()

    async def _on_text(self, ev: TextTurn) -> None:
        call = self._live(ev.call_id, "text")
        self.last_audio = time.monotonic()
        await call.text(self._transcript(call, ev))

    async def _on_end_utterance(self, ev: EndUtterance) -> None:
        if self.call is not None:
            await self.call.end_utterance()

    async def _on_close(self, ev: CloseConnection) -> None:
        if self.hooks.finish_close is not None:
            self.hooks.finish_close.finish_close()  # the platform's last reply, after what the stop flushed

    async def _on_stop(self, ev: CallStop) -> None:
        call = self.call
        if call is not None:
            stop = asyncio.ensure_future(self._stop(call, ev))
            if self.hooks.finish_close is not None:
                # the platform's closing reply waits for the flushed finals, but never past
                # its close deadline (AudioHook's client gives up after 10 s): the stop
                # then finishes in the background
                self._stopping = stop
                await asyncio.wait({stop}, timeout=CLOSE_WAIT_S)
            else:
                await stop
        self.call = None

    def _transcript(self, call: Any, ev: TextTurn) -> Transcript:
        """A typed turn as a final. Segment ids of a call that also has audio start at 100000,
        so a turn never takes the id of a recognized segment on the same channel."""
        n = self._text_turns[ev.channel] = self._text_turns.get(ev.channel, 0) + 1
        base = 100_000 if call.channels else 0
        at = ev.at if ev.at is not None else float(call.call_time)
        end = ev.end if ev.end is not None else at + max(1.0, 0.4 * len(ev.text.split()))
        return Transcript(call.call_id, ev.channel, base + n, 0, ev.text, True, at, end, confidence=1.0, engine="text")

    def idle_left(self, idle_timeout_s: float | None) -> float | None:
        """Seconds until the idle timeout, None when it does not run (none set, or paused).
        A text-only interaction waits 20 times as long: people type slower than audio flows."""
        if idle_timeout_s is None or self.paused:
            return None
        if self.call is not None and not self.call.channels:
            idle_timeout_s *= 20
        return max(0.0, idle_timeout_s - (time.monotonic() - self.last_audio))


class StreamCounter:
    """Open streams per platform, for each platform's `max_streams` (0: no limit of its own;
    `[server] max_calls` still bounds calls)."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def acquire(self, platform: str, limit: int) -> bool:
        if limit and self.open.get(platform, 0) >= limit:
            return False
        self.open[platform] = self.open.get(platform, 0) + 1
        return True

    def release(self, platform: str) -> None:
        self.open[platform] = max(0, self.open.get(platform, 0) - 1)


@dataclass(frozen=True)
class IngressPolicy:
    """How a transport judges and serves a connection: its platform (parser, authentication,
    refusal), that platform's config section, the frame limit, the no-audio timeout, the
    failed-authentication limit shared by every way in, and the per-platform stream count."""

    platform: Platform
    config: Any
    max_frame_bytes: int
    idle_timeout_s: float
    limiter: FailureLimiter
    streams: StreamCounter | None = None

    @property
    def max_streams(self) -> int:
        return int(getattr(self.config, "max_streams", 0) or 0)


def admit(policy: IngressPolicy, parser: PlatformParser, rejected: RejectionRecorder) -> str:
    """Count the stream against its platform's `max_streams`: "counted" (release it when the
    stream ends), or over the limit, recorded, and either "told" (the platform has its own
    error message, `fail`, queued on the parser: keep the socket for its closing handshake) or
    "refused" (close with 1013)."""
    if policy.streams is None:
        return "uncounted"
    if policy.streams.acquire(policy.platform.name, policy.max_streams):
        return "counted"
    err = ProtocolError(1013, f"{policy.platform.name} is at its max_streams ({policy.max_streams}); try again later")
    rejected(policy.platform.name, None, err.close_code, err.reason)
    hooks = ParserHooks.of(parser)
    return "told" if hooks.fail is not None and hooks.fail.fail(err) else "refused"


def refusal_of(policy: IngressPolicy, hs: Handshake) -> str | None:
    """Why a connection is refused before its first frame, or None. A source that keeps
    failing is refused without its credentials being checked."""
    if policy.limiter.blocked(hs.client):
        return "too many failed authentications from this address; retry later"
    auth = policy.platform.authenticate
    refusal = auth(hs, policy.config) if auth is not None else None
    if refusal is not None:
        policy.limiter.failed(hs.client)
    return refusal


def parser_for(policy: IngressPolicy, hs: Handshake, rejected: RejectionRecorder) -> tuple[PlatformParser | None, str | None]:
    """The parser that serves this connection and, for a refused one, why. A refused
    connection gets its platform's refusal parser (which tells the peer in the platform's
    terms) or none: the transport then closes it with 1008 before its first frame."""
    refusal = refusal_of(policy, hs)
    p = policy.platform
    if refusal is None:
        return p.make_parser(policy.max_frame_bytes, policy.config, hs), None
    rejected(p.name, None, 1008, refusal)
    if p.refusal is None:
        return None, refusal
    return p.refusal(refusal, policy.max_frame_bytes, policy.config, hs), refusal
