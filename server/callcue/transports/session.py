"""What every transport does with a platform parser's events, whatever carries the bytes.

A transport (WebSocket today; raw TCP and WebRTC beside it) owns the socket and hands each
frame to the parser; this session applies the parser's events to the calls. It gets what it
needs passed in: somewhere calls start and stop (`CallSink`) and somewhere rejections are
recorded (`RejectionRecorder`), never the application's state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from callcue import metrics
from callcue.auth import FailureLimiter
from callcue.events import Channel
from callcue.platforms.base import (
    AudioIn,
    Authenticate,
    CallStart,
    CallStop,
    Dtmf,
    GapFilled,
    Handshake,
    IngressEvent,
    Mark,
    PlatformParser,
    ProtocolError,
)

log = logging.getLogger(__name__)


class LiveCall(Protocol):
    call_id: str
    ended: bool

    @property
    def channels(self) -> dict[Channel, object]: ...
    async def audio(self, channel: Channel, payload: bytes) -> None: ...
    def dtmf(self) -> None: ...


class CallSink(Protocol):
    async def start(self, start: CallStart) -> LiveCall: ...
    async def stop(self, call_id: str, reason: str = "stop") -> None: ...


RejectionRecorder = Callable[[str, "str | None", int, str], None]  # platform, call id, close code, reason


class IngressSession:
    """One connection's call: at most one start, audio for its declared channels, one stop."""

    def __init__(self, parser: PlatformParser, platform: str, calls: CallSink, rejected: RejectionRecorder) -> None:
        self.parser = parser
        self.platform = platform
        self.calls = calls
        self.rejected = rejected
        self.call: LiveCall | None = None
        self.end_reason = "disconnected"
        self.stopped = False
        #: monotonic time of the last audio (or of the connection): the idle timeout counts from here
        self.last_audio = time.monotonic()

    async def feed(self, text: str | None, data: bytes | None) -> None:
        """One frame from the peer. Raises `ProtocolError` after recording it."""
        try:
            events = self.parser.receive_text(text) if text is not None else self.parser.receive_bytes(data or b"")
            await self._apply_all(events)
        except ProtocolError as e:
            self.rejected(self.platform, self.call.call_id if self.call else None, e.close_code, e.reason)
            if e.fatal:
                self.end_reason = f"protocol_error:{e.close_code}"
            raise

    def outgoing(self) -> list[str | bytes]:
        return self.parser.data_to_send()

    async def eof(self) -> None:
        """The peer is gone: the parser may still end the call; whatever it says, it ends."""
        try:
            await self._apply_all(self.parser.receive_eof())
        except ProtocolError as e:
            self.rejected(self.platform, self.call.call_id if self.call else None, e.close_code, e.reason)
        finally:
            if self.call is not None and not self.call.ended:
                await self.calls.stop(self.call.call_id, self.end_reason)

    async def _apply_all(self, events: list[IngressEvent]) -> None:
        for ev in events:
            await self._apply(ev)
            if isinstance(ev, CallStop):
                self.end_reason = ev.reason
                self.stopped = True

    async def _apply(self, ev: IngressEvent) -> None:
        call = self.call
        if isinstance(ev, CallStart):
            if call is not None:
                raise ProtocolError(1008, f"a second start on one connection (call {call.call_id!r} is active)")
            ev.platform = self.platform
            self.call = await self.calls.start(ev)
        elif isinstance(ev, AudioIn):
            if call is None or ev.call_id != call.call_id:
                raise ProtocolError(1008, f"audio for unknown call {ev.call_id!r}")
            if ev.channel not in call.channels:
                raise ProtocolError(1008, f"audio for channel {ev.channel!r} that the start did not declare")
            self.last_audio = time.monotonic()
            await call.audio(ev.channel, ev.payload)
        elif isinstance(ev, GapFilled):
            metrics.GAPS.labels(self.platform).inc()
            log.info("audio gap filled", extra={"call_id": ev.call_id, "channel": ev.channel,
                                                "missing_s": round(ev.missing_seconds, 3), "why": ev.reason})  # fmt: skip
        elif isinstance(ev, Dtmf):
            if call is not None:
                call.dtmf()
        elif isinstance(ev, Mark):
            pass
        elif isinstance(ev, CallStop):
            if call is not None:
                await self.calls.stop(call.call_id, ev.reason)
            self.call = None


@dataclass(frozen=True)
class IngressPolicy:
    """How a transport judges a connection: its platform's authentication and config section,
    the no-audio timeout, and the failed-authentication limit shared by every way in."""

    authenticate: Authenticate | None
    auth_config: Any
    idle_timeout_s: float
    limiter: FailureLimiter


def refusal_of(policy: IngressPolicy, hs: Handshake) -> str | None:
    """Why a connection is refused before its first frame, or None. A source that keeps
    failing is refused without its credentials being checked."""
    if policy.limiter.blocked(hs.client):
        return "too many failed authentications from this address; retry later"
    refusal = policy.authenticate(hs, policy.auth_config) if policy.authenticate is not None else None
    if refusal is not None:
        policy.limiter.failed(hs.client)
    return refusal
