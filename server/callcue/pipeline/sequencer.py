"""Numbers a call's events, stores each one, and sends them in number order once stored.

Why: a desk that reconnects (its network blinked, the server restarted, the call moved to
another node) says the last number it saw and is sent exactly what came after, from the
store; a page opened mid-call is sent the call from number 1. For that the numbers must be
dense in what was sent, durable before anyone sees them (a client never holds a number the
store lacks), and sent in order (a client that saw 7 has seen 1..6). Partials are the one
exception: each is replaced by the next and by its final within a second, so they are sent at
once, unnumbered and unstored; a replay shows the finals they became.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: who may be replayed an event: everyone who may see the call, or supervisors only
AUDIENCES = ("call", "supervisors")

#: stores one numbered event: (call_id, seq, kind, audience, body) -> done when committed
StoreEvent = Callable[[str, int, str, str, dict[str, Any]], "asyncio.Future[None]"]
Publish = Callable[[str, str, Any, dict[str, Any]], None]  # (call_id, audience, route, event)


@dataclass
class _Pending:
    audience: str
    route: Any
    event: dict[str, Any]
    stored: Awaitable[None]
    sent: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def __post_init__(self) -> None:
        self.sent.add_done_callback(lambda f: f.cancelled() or f.exception())  # logged in _drain


class Sequencer:
    def __init__(self, store: StoreEvent, publish: Publish) -> None:
        self._store = store
        self._publish = publish
        self._last: dict[str, int] = {}
        self._queues: dict[str, deque[_Pending]] = {}

    def resume(self, call_id: str, last_seq: int) -> None:
        """A known call goes on (reconnect, restart, takeover): numbering continues."""
        self._last[call_id] = max(self._last.get(call_id, 0), int(last_seq))

    def last_seq(self, call_id: str) -> int:
        return self._last.get(call_id, 0)

    def emit(self, call_id: str, event: dict[str, Any], audience: str = "call",
             also_stored: Awaitable[None] | None = None, route: Any = None,
             record: dict[str, Any] | None = None) -> asyncio.Future[None]:  # fmt: skip
        """Number, store and (in order, once stored) send `event`; the result resolves when
        it was sent. `also_stored`: another row the event must not be seen before; `route`:
        handed to publish with it; `record`: what to store instead of the event itself."""
        if audience not in AUDIENCES:
            raise ValueError(f"unknown audience {audience!r}")
        seq = self._last.get(call_id, 0) + 1
        self._last[call_id] = seq
        event["seq"] = seq
        body = event if record is None else {**record, "seq": seq}
        stored: Awaitable[Any] = self._store(call_id, seq, str(event.get("type", "?")), audience, body)
        if also_stored is not None:
            stored = asyncio.gather(stored, also_stored)
        item = _Pending(audience, route, event, stored)
        queue = self._queues.setdefault(call_id, deque())
        queue.append(item)
        if len(queue) == 1:
            asyncio.get_running_loop().create_task(self._drain(call_id, queue), name=f"events-{call_id}")
        return item.sent

    async def _drain(self, call_id: str, queue: deque[_Pending]) -> None:
        """Send the call's events in number order, each after its rows are committed."""
        while queue:
            item = queue[0]
            try:
                await item.stored
            except Exception as e:  # not stored: not sent (a client must never hold it alone)
                log.error("event %s of call %s not stored, not sent: %s", item.event.get("seq"), call_id, e)
                queue.popleft()
                if not item.sent.done():
                    item.sent.set_exception(e)
                continue
            queue.popleft()
            try:
                self._publish(call_id, item.audience, item.route, item.event)
            except Exception:
                log.exception("event %s of call %s could not be sent", item.event.get("seq"), call_id)
            if not item.sent.done():
                item.sent.set_result(None)
        if self._queues.get(call_id) is queue:
            del self._queues[call_id]

    def forget(self, call_id: str) -> None:
        """The call left this node; what is queued still goes out (its task holds the queue)."""
        self._last.pop(call_id, None)
