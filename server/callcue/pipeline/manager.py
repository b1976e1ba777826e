"""Registry of live calls: the one place that decides whether a call may start, and whether
a second connection joins a live call (another leg, a continued session) or is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from callcue import metrics
from callcue.audio.codecs import silence
from callcue.events import Channel, Transcript
from callcue.pipeline.call import Call
from callcue.pipeline.deps import PipelineDeps
from callcue.pipeline.streams import CallStreams
from callcue.platforms.base import CallStart, ProtocolError, SpeaksBack, TakesControl, TypesBack

log = logging.getLogger(__name__)

CHANNEL_ORDER: tuple[Channel, ...] = ("customer", "agent")


class Leg:
    """One connection's share of a call that arrives on several (Twilio's inbound and
    outbound `<Stream>`s, two AudioSocket legs, AudioHook sessions continued after a
    reconnect). The connection speaks its own channel names; `names` maps them onto the
    call's, so a second AudioSocket leg that calls itself "customer" feeds the agent channel."""

    def __init__(self, call: Call, names: dict[Channel, Channel]) -> None:
        self.call = call
        self.call_id = call.call_id
        self.names = names
        self.done = False
        #: wall seconds the call waited for this leg (a continued session): filled with silence
        self.resume_gap = 0.0

    @property
    def ended(self) -> bool:
        return self.done or self.call.ended

    @property
    def channels(self) -> dict[Channel, object]:
        return {own: self.call.channels[theirs] for own, theirs in self.names.items()}

    async def audio(self, channel: Channel, payload: bytes) -> None:
        await self.call.audio(self.names[channel], payload)

    async def text(self, t: Transcript) -> None:
        """Typed turns of a joined stream go to the call under the call's name of the channel,
        as its audio does."""
        await self.call.text(dataclasses.replace(t, channel=self.names.get(t.channel, t.channel)))

    def dtmf(self) -> None:
        self.call.dtmf()

    async def end_utterance(self) -> None:
        await asyncio.gather(*(self.call.channels[theirs].end_utterance() for theirs in self.names.values()))


class CallManager:
    def __init__(self, deps: PipelineDeps, reconnect_grace_s: float = 10.0) -> None:
        self.deps = deps
        self.calls: dict[str, Call] = {}
        self.legs: dict[str, list[Leg]] = {}
        self.reconnect_grace_s = reconnect_grace_s
        #: calls whose last leg left to come back: the expiry task and when the leg left
        self._lingering: dict[str, tuple[asyncio.Task[None], float]] = {}
        # calls whose stop is under way (finals being flushed): a new stream for one waits
        self._stopping: dict[str, asyncio.Event] = {}
        # how long a stream whose channel another stream of the call holds waits for that one
        # to stop before it is refused (its stop may be queued on the other socket)
        self.handover_wait_s = 3.0
        #: cluster mode: awaited before a call is opened here, so a node still holding it lets go first
        self.claim: Callable[[str], Awaitable[None]] | None = None
        if deps.streams is None:  # a manager built alone (tests, tools): its calls' own streams
            self.deps = dataclasses.replace(deps, streams=CallStreams(deps.sink))
        assert self.deps.streams is not None
        #: each live call's stream (decision steps in, output out) and its platform sessions
        self.streams: CallStreams = self.deps.streams

    def attach_remote(self, call_id: str, remote: TakesControl) -> None:
        self.streams.attach_remote(call_id, remote)

    def detach_remote(self, call_id: str, remote: TakesControl) -> None:
        self.streams.detach_remote(call_id, remote)

    def attach_outlet(self, call_id: str, speaker: SpeaksBack | None, typist: TypesBack | None,
                      flush: Callable[[], Awaitable[None]]) -> None:  # fmt: skip
        self.streams.attach_outlet(call_id, speaker, typist, flush)

    def detach_outlet(self, call_id: str) -> None:
        self.streams.detach_outlet(call_id)

    async def start(self, start: CallStart) -> Call | Leg:
        patience = time.monotonic() + self.handover_wait_s
        while True:  # decided again after every wait: the call may have changed meanwhile
            live = self.calls.get(start.call_id)
            stopping = self._stopping.get(start.call_id)
            if live is not None and live.ended and stopping is not None:
                # Twilio runs <Stop><Stream> and <Start><Stream> milliseconds apart: the new
                # stream arrives while the old one's call is still flushing its last finals. It
                # continues the call once that is done, as a later reconnect does, whatever the
                # timing.
                await stopping.wait()
                continue
            if live is not None and self._taken(live, start) and time.monotonic() < patience:
                # its channel is held by a stream whose stop may still be queued behind its last
                # frames on another socket: give that stop a moment before refusing
                await asyncio.sleep(0.05)
                continue
            if live is not None:
                return await self._joined(live, start)
            if len(self.calls) >= self.deps.max_calls:
                raise ProtocolError(1013, f"server at capacity ({len(self.calls)} calls); try again later")
            if self.claim is not None:
                await self.claim(start.call_id)
            point = await self.deps.sink.resume_point(start.call_id)
            if point is not None and point["agent_id"] != start.agent_id:
                # a stored call is its first agent's: a stream reusing its id cannot take it over
                raise ProtocolError(1008, f"call {start.call_id!r} is known with another agent")
            if start.call_id in self.calls:
                continue  # started meanwhile by another connection (and perhaps stopping already)
            break
        call = Call(start, self.deps, resume=point)
        self.calls[start.call_id] = call
        metrics.ACTIVE_CALLS.inc()
        metrics.CALLS_TOTAL.labels(start.platform).inc()
        self.deps.sink.call_opened(start, call.info(), lambda: call.latest_audio, reopened=point is not None)
        log.info("call started", extra={"call_id": start.call_id, "agent_id": start.agent_id,
                                        "platform": start.platform, "encoding": start.encoding,
                                        "sample_rate": start.sample_rate})
        if start.join is None:
            return call
        leg = Leg(call, {ch: ch for ch in start.channels})
        self.legs[start.call_id] = [leg]
        return leg

    def _taken(self, call: Call, start: CallStart) -> bool:
        """A channel `start` asks for exactly is held by another live stream of the call."""
        if start.join != "exact":
            return False
        held = {theirs for leg in self.legs.get(call.call_id, []) for theirs in leg.names.values()}
        return any(ch in held for ch in start.channels)

    async def _joined(self, call: Call, start: CallStart) -> Leg:
        """Join, then put the time the call waited for a continued session on its clock as
        silence: the audio of those seconds is lost, not the seconds, so word times after a
        reconnect stay where they happened and both channels stay aligned."""
        leg = self._join(call, start)
        if leg.resume_gap > 0:
            for theirs in leg.names.values():
                chp = call.channels[theirs]
                await call.audio(theirs, silence(chp.encoding, leg.resume_gap, chp.in_rate))
        return leg

    def _join(self, call: Call, start: CallStart) -> Leg:
        """A second stream for a live call: a leg if both sides allow it, else refused."""
        if start.join is None or call.start_event.join is None or call.platform != start.platform or call.ended:
            raise ProtocolError(1008, f"call {start.call_id!r} is already streaming")
        if start.agent_id is not None and call.agent_id is not None and start.agent_id != call.agent_id:
            raise ProtocolError(1008, f"call {start.call_id!r} is streaming with another agent")
        legs = self.legs.setdefault(start.call_id, [])
        taken = {theirs for leg in legs for theirs in leg.names.values()}
        names: dict[Channel, Channel] = {}
        for ch in start.channels:
            target: Channel | None = ch
            if ch in taken or ch in names.values():
                free = [c for c in CHANNEL_ORDER if c not in taken and c not in names.values()]
                target = free[0] if start.join == "next_free" and free else None
            if target is None:
                raise ProtocolError(1008, f"call {start.call_id!r} already has a {ch} stream")
            names[ch] = target
        for theirs in names.values():
            call.open_channel(theirs, start.encoding, start.sample_rate)
        lingering = self._lingering.pop(start.call_id, None)
        leg = Leg(call, names)
        if lingering is not None:
            expiry, left = lingering
            expiry.cancel()
            leg.resume_gap = min(time.monotonic() - left, self.reconnect_grace_s)
        legs.append(leg)
        log.info("stream joined call", extra={"call_id": call.call_id, "channels": list(names.values()),
                                              "platform": start.platform, "resumed": lingering is not None})  # fmt: skip
        return leg

    def get(self, call_id: str) -> Call | None:
        return self.calls.get(call_id)

    async def stop(self, call_id: str, reason: str = "stop", leg: object = None, linger: bool = False) -> None:
        """End a call, or only `leg`'s part of it while other legs go on. A last leg that
        `linger`s keeps the call open for the reconnect grace, so a continued session
        picks up the same call clock."""
        call = self.calls.get(call_id)
        if call is None:
            return
        if isinstance(leg, Leg) and leg.call is call:
            legs = self.legs.get(call_id, [])
            if leg in legs:
                legs.remove(leg)
            leg.done = True
            if legs:
                still = {theirs for other in legs for theirs in other.names.values()}
                await call.finish_channels([c for c in leg.names.values() if c not in still])
                return
            if linger and self.reconnect_grace_s > 0:
                expiry = asyncio.create_task(self._expire(call_id, reason), name=f"linger-{call_id}")
                self._lingering[call_id] = (expiry, time.monotonic())
                return
        done = self._stopping.setdefault(call_id, asyncio.Event())
        try:
            try:
                await call.stop(reason)
            finally:
                self.calls.pop(call_id, None)
                self.legs.pop(call_id, None)
                lingering = self._lingering.pop(call_id, None)
                if lingering is not None and lingering[0] is not asyncio.current_task():
                    lingering[0].cancel()
                metrics.ACTIVE_CALLS.dec()
                self.deps.sink.call_closed(call_id, reason)
                if self.deps.decider is not None:
                    await self.deps.decider.call_ended(call_id)
        finally:  # only now may a new stream for the call continue it
            done.set()
            if self._stopping.get(call_id) is done:
                del self._stopping[call_id]

    async def hand_over(self, call_id: str) -> bool:
        """Another cluster node took the call (its platform reconnected there): flush and drop
        it here without ending it, since it goes on over there."""
        call = self.calls.pop(call_id, None)
        if call is None:
            return False
        self.legs.pop(call_id, None)
        lingering = self._lingering.pop(call_id, None)
        if lingering is not None:
            lingering[0].cancel()
        try:
            await call.stop("handed_over")
        finally:
            metrics.ACTIVE_CALLS.dec()
            self.deps.sink.call_released(call_id)
        log.info("call handed over to another node", extra={"call_id": call_id})
        return True

    async def _expire(self, call_id: str, reason: str) -> None:
        await asyncio.sleep(self.reconnect_grace_s)
        if self.legs.get(call_id):
            return
        log.info("call not continued within the reconnect grace", extra={"call_id": call_id})
        await self.stop(call_id, reason)

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.stop(cid, "server_shutdown") for cid in list(self.calls)))
