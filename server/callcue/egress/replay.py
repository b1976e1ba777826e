"""What a subscriber missed, from the store, ahead of the live events that follow it.

A desk that subscribes late (opened mid-call) or again (after a reconnect) names, per call,
the last event number it holds (none: from the start). Live events of that call are held back
on the subscriber while its stored events after that number are read and queued, then the
held ones follow, those the store already had dropped; so the desk gets every numbered event
once and in order, however the read and the live stream interleave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from callcue.egress.hub import Subscriber

#: (call_id, after_seq, audiences, limit) -> stored event bodies, oldest first
ReadEvents = Callable[[str, int, tuple[str, ...], int], Awaitable[list[dict[str, Any]]]]

PAGE = 1000
PUT_TIMEOUT_S = 30.0


async def replay(sub: Subscriber, call_id: str, after: int, read: ReadEvents) -> int:
    """Queue the call's stored events after `after`, then what arrived live meanwhile;
    returns how many stored events were queued. The subscriber must already want the call."""
    audiences = ("call", "supervisors") if sub.principal.can("supervisor_feed") else ("call",)
    sub.holding.setdefault(call_id, [])
    sent = 0
    last = after
    try:
        while True:
            page = await read(call_id, last, audiences, PAGE)
            for ev in page:
                if not await _offer(sub, ev):
                    return sent
                sent += 1
                last = max(last, int(ev.get("seq") or last))
            if len(page) < PAGE:
                break
    finally:
        held = sub.holding.pop(call_id, [])
        for ev in held:
            seq = ev.get("seq")
            if isinstance(seq, int) and seq <= last:
                continue  # the store had it: already queued
            if not await _offer(sub, ev):
                break
    return sent


async def _offer(sub: Subscriber, ev: dict[str, Any]) -> bool:
    """Queue one replayed event, at the pace the client reads (a long call's history is more
    than the live queue holds); False once the subscriber was dropped as too slow."""
    if sub.overflowed:
        return False
    try:
        await asyncio.wait_for(sub.queue.put(ev), PUT_TIMEOUT_S)
    except TimeoutError:  # nobody reads any more (the sender closed): give up on this client
        sub.overflowed = True
        return False
    return not sub.overflowed
