"""Registry of live calls: the one place that decides whether a call may start."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from callcue import metrics
from callcue.platforms.base import CallStart, ProtocolError
from callcue.pipeline.call import Call

if TYPE_CHECKING:
    from callcue.services import Services

log = logging.getLogger(__name__)


class CallManager:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.calls: dict[str, Call] = {}

    async def start(self, start: CallStart) -> Call:
        if start.call_id in self.calls:
            raise ProtocolError(1008, f"call {start.call_id!r} is already streaming")
        if len(self.calls) >= self.services.settings.server.max_calls:
            raise ProtocolError(1013, f"server at capacity ({len(self.calls)} calls); try again later")
        call = Call(start, self.services)
        self.calls[start.call_id] = call
        metrics.ACTIVE_CALLS.inc()
        metrics.CALLS_TOTAL.labels(start.platform).inc()
        self.services.store.call_started(start.call_id, start.agent_id, start.platform, start.encoding,
                                         start.sample_rate, list(start.channels), start.metadata)
        self.services.hub.call_opened(start.call_id, start.agent_id)
        self.services.hub.publish(start.call_id, {"type": "call_started", **call.info()})
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
            self.services.store.call_ended(call_id, reason)
            self.services.hub.publish(call_id, {"type": "call_ended", "call_id": call_id, "reason": reason})
            self.services.hub.call_closed(call_id)
            await self.services.on_call_end(call_id)

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.stop(cid, "server_shutdown") for cid in list(self.calls)))
