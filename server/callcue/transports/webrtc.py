"""The WebRTC transport: aiortc peer connections whose audio tracks feed calls.

One POST makes one peer connection (`platforms.webrtc` decides what the offer means): the
remote description is set, each offered audio m-line is received (recvonly, except a customer's
call that names a flow: the virtual agent speaks on its track, sendrecv), the call (or a leg of an existing one) starts, and the answer goes back with
the server's ICE candidates in it (no trickle: gathering on host interfaces takes
milliseconds, and no STUN server is needed on a LAN or loopback). Each track's frames are
decoded by aiortc (Opus or PCMU), converted to 16 kHz L16 and fed to the call. The session
ends on DELETE, when every track ends, when ICE/DTLS fails, or when no audio arrives for the
idle timeout; its leg of the call then stops and nothing else is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from callcue import metrics
from callcue.events import Channel
from callcue.platforms.base import ProtocolError
from callcue.platforms.webrtc import (
    PIPELINE_RATE,
    FrameConverter,
    OfferError,
    OfferRequest,
    call_start,
)
from callcue.transports.session import CallSink, LiveCall, RejectionRecorder

log = logging.getLogger(__name__)


class BotVoiceTrack(MediaStreamTrack):
    """The virtual agent's voice to the browser: an outgoing audio track that aiortc pulls a
    20 ms frame from at a time (Opus-encoded by it); silence when the bot is quiet. It is the
    session's `SpeaksBack`: `play` queues 16-bit PCM, `clear` (barge-in) drops the rest."""

    kind = "audio"
    speak_rate = PIPELINE_RATE

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[bytes] = deque()
        self._samples = int(self.speak_rate * 0.020)
        self._start: float | None = None
        self._pts = 0

    def play(self, pcm16: bytes, mark: str | None = None) -> float:
        step = self._samples * 2
        for i in range(0, len(pcm16), step):
            self._queue.append(pcm16[i : i + step].ljust(step, b"\0"))
        return len(pcm16) / 2 / self.speak_rate

    def clear(self) -> None:
        self._queue.clear()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:  # real time: one frame every 20 ms of the track's own clock
            self._pts += self._samples
            wait = self._start + self._pts / self.speak_rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = av.AudioFrame(format="s16", layout="mono", samples=self._samples)
        frame.planes[0].update(self._queue.popleft() if self._queue else bytes(self._samples * 2))
        frame.pts = self._pts
        frame.sample_rate = self.speak_rate
        frame.time_base = fractions.Fraction(1, self.speak_rate)
        return frame


async def _nothing_to_flush() -> None:
    """The voice track is pulled by aiortc: nothing waits to be sent."""


@dataclass(eq=False)
class RtcSession:
    session_id: str
    owner: str
    pc: RTCPeerConnection
    call: LiveCall | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    last_audio: float = field(default_factory=time.monotonic)
    frames: int = 0
    ended: bool = False
    voice: BotVoiceTrack | None = None


class WebRTCSessions:
    def __init__(self, calls: CallSink, rejected: RejectionRecorder, *, ice_servers: list[str] | None = None,
                 idle_timeout_s: float = 15.0, max_sessions: int = 200) -> None:  # fmt: skip
        self.calls = calls
        self.rejected = rejected
        self.ice_servers = ice_servers or []
        self.idle_timeout_s = idle_timeout_s
        self.max_sessions = max_sessions
        self.sessions: dict[str, RtcSession] = {}
        self._watchdog: asyncio.Task[None] | None = None

    async def offer(self, req: OfferRequest, owner: str) -> tuple[RtcSession, str]:
        """The session and the SDP answer, or `OfferError`."""
        if len(self.sessions) >= self.max_sessions:
            raise OfferError(503, f"server at capacity ({len(self.sessions)} WebRTC sessions); try again later")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(u) for u in self.ice_servers]))
        session = RtcSession(session_id=uuid.uuid4().hex, owner=owner, pc=pc)
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=req.sdp, type="offer"))
            except Exception as e:  # aiortc raises ValueError and friends on SDP it cannot use
                raise OfferError(400, f"offer not usable: {str(e)[:200]}") from None
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            channels = req.channels
            if len(audio) < len(channels):
                raise OfferError(400, f"role {req.role!r} needs {len(channels)} audio tracks, the offer has {len(audio)}")
            for t in pc.getTransceivers():
                t.direction = "recvonly" if t.kind == "audio" else "inactive"
            # a customer's call that names a flow hears the virtual agent on its (first) track
            voice = BotVoiceTrack() if req.metadata.get("flow") and "customer" in channels else None
            if voice is not None:
                pc.addTrack(voice)  # joins the offered audio transceiver: sendrecv
            try:
                session.call = await self.calls.start(call_start(req, session.session_id))
            except ProtocolError as e:
                raise OfferError(503 if e.close_code == 1013 else 409, e.reason) from None
            if voice is not None:
                session.voice = voice
                self.calls.attach_outlet(req.call_id, voice, None, _nothing_to_flush)
            for t, ch in zip(audio, channels, strict=False):
                session.tasks.append(asyncio.create_task(self._pump(session, t.receiver.track, ch),
                                                         name=f"webrtc-{session.session_id}-{ch}"))  # fmt: skip

            @pc.on("connectionstatechange")
            async def _state() -> None:
                if pc.connectionState in ("failed", "closed"):
                    await self.hangup(session.session_id, f"webrtc_{pc.connectionState}")

            await pc.setLocalDescription(await pc.createAnswer())
        except OfferError as e:
            self.rejected("webrtc", req.call_id, 1008, e.message)
            await self._teardown(session, "offer_refused")
            raise
        self.sessions[session.session_id] = session
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._idle_watch(), name="webrtc-idle")
        log.info("webrtc session opened", extra={"call_id": req.call_id, "session": session.session_id, "role": req.role})
        return session, pc.localDescription.sdp

    async def _pump(self, session: RtcSession, track: Any, channel: Channel) -> None:
        conv = FrameConverter()
        frame_seconds = metrics.INGRESS_FRAME.labels("webrtc")
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    break
                t0 = time.perf_counter()
                pcm = conv.convert(frame)
                session.last_audio = time.monotonic()
                session.frames += 1
                if pcm and session.call is not None and not session.call.ended:
                    await session.call.audio(channel, pcm)
                frame_seconds.observe(time.perf_counter() - t0)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bad frame ends this session, never the server
            log.warning("webrtc track failed: %s", e, extra={"session": session.session_id})
            self.rejected("webrtc", session.call.call_id if session.call else None, 1011, f"track failed: {str(e)[:100]}")
        if all(t.done() or t is asyncio.current_task() for t in session.tasks):
            asyncio.get_running_loop().create_task(self.hangup(session.session_id, "tracks_ended"))

    async def _idle_watch(self) -> None:
        while self.sessions:
            await asyncio.sleep(min(1.0, self.idle_timeout_s / 4))
            now = time.monotonic()
            for s in list(self.sessions.values()):
                if now - s.last_audio > self.idle_timeout_s:
                    self.rejected("webrtc", s.call.call_id if s.call else None, 1008, f"no audio for {self.idle_timeout_s:g} s")
                    await self.hangup(s.session_id, "idle_timeout")

    async def hangup(self, session_id: str, reason: str = "hangup") -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        await self._teardown(session, reason)
        log.info("webrtc session ended", extra={"session": session_id, "why": reason})
        return True

    async def _teardown(self, session: RtcSession, reason: str) -> None:
        if session.ended:
            return
        session.ended = True
        for t in session.tasks:
            if t is not asyncio.current_task():
                t.cancel()
        for t in session.tasks:
            if t is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        call = session.call
        if session.voice is not None and call is not None:
            self.calls.detach_outlet(call.call_id)
            session.voice.stop()
        if call is not None and not call.ended:
            await self.calls.stop(call.call_id, reason, leg=call)
        with contextlib.suppress(Exception):
            await session.pc.close()

    async def close(self) -> None:
        await asyncio.gather(*(self.hangup(sid, "server_shutdown") for sid in list(self.sessions)))
        if self._watchdog is not None:
            self._watchdog.cancel()
