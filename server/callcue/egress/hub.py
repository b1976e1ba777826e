"""Fan-out of call events to the agent desktops and supervisor consoles allowed to see them.

Publishing never awaits a client: each subscriber has a bounded queue drained by its own
sender task, so one slow browser cannot delay transcripts for everybody else. A subscriber
that falls too far behind is disconnected (and counted) rather than buffered without limit.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from callcue import metrics
from callcue.auth import Principal

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscriber:
    principal: Principal
    queue_size: int = 2000
    calls: set[str] = field(default_factory=set)  # explicit subscriptions
    all_calls: bool = False  # "*": every call this principal may see
    queue: asyncio.Queue[dict[str, Any] | None] = field(init=False)
    overflowed: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    def wants(self, call_id: str, agent_id: str | None) -> bool:
        if not self.principal.may_see(agent_id):
            return False
        return self.all_calls or call_id in self.calls


class Hub:
    def __init__(self) -> None:
        self._subs: set[Subscriber] = set()
        self._call_agents: dict[str, str | None] = {}

    def register(self, sub: Subscriber) -> None:
        self._subs.add(sub)

    def unregister(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    def call_opened(self, call_id: str, agent_id: str | None) -> None:
        self._call_agents[call_id] = agent_id

    def call_closed(self, call_id: str) -> None:
        self._call_agents.pop(call_id, None)

    def agent_of(self, call_id: str) -> str | None:
        return self._call_agents.get(call_id)

    def knows(self, call_id: str) -> bool:
        return call_id in self._call_agents

    def publish(self, call_id: str, event: dict[str, Any]) -> int:
        """Queue `event` for every subscriber allowed and wanting to see `call_id`."""
        agent_id = self._call_agents.get(call_id)
        n = 0
        for sub in list(self._subs):
            if sub.wants(call_id, agent_id):
                n += self._offer(sub, event)
        metrics.EVENTS_OUT.labels(str(event.get("type", "?"))).inc(n)
        return n

    def publish_supervisors(self, event: dict[str, Any]) -> int:
        n = 0
        for sub in list(self._subs):
            if sub.principal.role == "supervisor":
                n += self._offer(sub, event)
        metrics.EVENTS_OUT.labels(str(event.get("type", "?"))).inc(n)
        return n

    def _offer(self, sub: Subscriber, event: dict[str, Any]) -> int:
        if sub.overflowed:
            return 0
        try:
            sub.queue.put_nowait(event)
            return 1
        except asyncio.QueueFull:
            sub.overflowed = True
            metrics.SLOW_CONSUMERS.inc()
            log.warning("subscriber %s too slow, disconnecting", sub.principal.user_id)
            # drop what is queued and wake the sender so it closes the socket
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)
            return 0
