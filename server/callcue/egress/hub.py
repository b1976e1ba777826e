"""Fan-out of call events to the agent desktops and supervisor consoles allowed to see them.

Publishing never awaits a client: each subscriber has a bounded queue drained by its own
sender task, so one slow browser cannot delay transcripts for everybody else. A subscriber
that falls too far behind is disconnected (and counted) rather than buffered without limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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
    #: calls whose stored events are being replayed to this subscriber: live ones wait here
    holding: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    def wants(self, call_id: str, agent_id: str | None) -> bool:
        if not self.principal.may_see(agent_id):
            return False
        return self.all_calls or call_id in self.calls


#: (call_id or None, agent_id, event, supervisors_only): hands a local event to other nodes
Forward = Callable[[str | None, str | None, dict[str, Any], bool], None]


class Hub:
    def __init__(self) -> None:
        self._subs: set[Subscriber] = set()
        self._call_agents: dict[str, str | None] = {}
        #: cluster mode: every event published here also goes to the other nodes
        self.forward: Forward | None = None
        #: cluster mode: live calls other nodes hold, from their call_started/call_ended events
        self.remote_calls: dict[str, dict[str, Any]] = {}
        #: cluster mode: told the id of each call this node lets go (ended or handed over)
        self.on_local_call_closed: Callable[[str], None] | None = None

    def register(self, sub: Subscriber) -> None:
        self._subs.add(sub)

    def unregister(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    def call_opened(self, call_id: str, agent_id: str | None) -> None:
        self._call_agents[call_id] = agent_id
        self.remote_calls.pop(call_id, None)  # a call taken over from another node is ours now

    def call_closed(self, call_id: str) -> None:
        if call_id in self._call_agents:
            del self._call_agents[call_id]
            if self.on_local_call_closed is not None:
                self.on_local_call_closed(call_id)

    def agent_of(self, call_id: str) -> str | None:
        return self._call_agents.get(call_id)

    def knows(self, call_id: str) -> bool:
        return call_id in self._call_agents

    def publish(self, call_id: str, event: dict[str, Any], agent_id: Any = ...) -> int:
        """Queue `event` for every subscriber allowed and wanting to see `call_id` (whose
        agent is `agent_id` when given: a call's last events go out after it let go)."""
        if agent_id is ...:
            agent_id = self._call_agents.get(call_id)
        if self.forward is not None:
            self.forward(call_id, agent_id, event, False)
        return self._publish_here(call_id, agent_id, event)

    def deliver(self, call_id: str | None, agent_id: str | None, event: dict[str, Any], supervisors_only: bool) -> int:
        """An event another node published: to this node's subscribers only."""
        if supervisors_only or call_id is None:
            return self._supervisors_here(event)
        kind = event.get("type")
        if kind == "call_started":
            self.remote_calls[call_id] = {k: event.get(k) for k in ("call_id", "agent_id", "platform", "channels",
                                                                     "started_at", "metadata")}  # fmt: skip
        elif kind == "call_ended":
            self.remote_calls.pop(call_id, None)
        return self._publish_here(call_id, agent_id, event)

    def _publish_here(self, call_id: str, agent_id: str | None, event: dict[str, Any]) -> int:
        n = 0
        for sub in list(self._subs):
            if sub.wants(call_id, agent_id):
                n += self._offer(sub, event, call_id)
        metrics.EVENTS_OUT.labels(str(event.get("type", "?"))).inc(n)
        return n

    def publish_supervisors(self, event: dict[str, Any]) -> int:
        if self.forward is not None:
            self.forward(None, None, event, True)
        return self._supervisors_here(event)

    def _supervisors_here(self, event: dict[str, Any]) -> int:
        n = 0
        for sub in list(self._subs):
            if sub.principal.can("supervisor_feed"):
                n += self._offer(sub, event, event.get("call_id"))
        metrics.EVENTS_OUT.labels(str(event.get("type", "?"))).inc(n)
        return n

    def _offer(self, sub: Subscriber, event: dict[str, Any], call_id: Any = None) -> int:
        if sub.overflowed:
            return 0
        held = sub.holding.get(call_id) if isinstance(call_id, str) else None
        if held is not None:  # its replay is being read: live events wait behind it
            held.append(event)
            return 1
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
