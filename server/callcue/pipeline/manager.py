"""Registry of live calls: the one place that decides whether a call may start."""

from __future__ import annotations

import asyncio
import logging

from callcue import metrics
from callcue.pipeline.call import Call
from callcue.pipeline.deps import PipelineDeps
from callcue.platforms.base import CallStart, ProtocolError

log = logging.getLogger(__name__)


class CallManager:
    def __init__(self, deps: PipelineDeps) -> None:
        self.deps = deps
        self.calls: dict[str, Call] = {}

    async def start(self, start: CallStart) -> Call:
        if start.call_id in self.calls:
            raise ProtocolError(1008, f"call {start.call_id!r} is already streaming")
        if len(self.calls) >= self.deps.max_calls:
            raise ProtocolError(1013, f"server at capacity ({len(self.calls)} calls); try again later")
        point = await self.deps.sink.resume_point(start.call_id)
        if point is not None and point["agent_id"] != start.agent_id:
            # a stored call is its first agent's: a stream reusing its id cannot take it over
            raise ProtocolError(1008, f"call {start.call_id!r} is known with another agent")
        if start.call_id in self.calls:  # started meanwhile by another connection
            raise ProtocolError(1008, f"call {start.call_id!r} is already streaming")
        call = Call(start, self.deps, resume=point)
        self.calls[start.call_id] = call
        metrics.ACTIVE_CALLS.inc()
        metrics.CALLS_TOTAL.labels(start.platform).inc()
        self.deps.sink.call_opened(start, call.info(), lambda: call.latest_audio, reopened=point is not None)
        log.info("call started", extra={"call_id": start.call_id, "agent_id": start.agent_id,
                                        "platform": start.platform, "encoding": start.encoding,
                                        "sample_rate": start.sample_rate})
        return call

    def get(self, call_id: str) -> Call | None:
        return self.calls.get(call_id)

    async def stop(self, call_id: str, reason: str = "stop") -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        try:
            await call.stop(reason)
        finally:
            self.calls.pop(call_id, None)
            metrics.ACTIVE_CALLS.dec()
            self.deps.sink.call_closed(call_id, reason)
            if self.deps.decider is not None:
                await self.deps.decider.call_ended(call_id)

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.stop(cid, "server_shutdown") for cid in list(self.calls)))
