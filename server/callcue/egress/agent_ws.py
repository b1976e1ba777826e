"""`/ws/agent`: the live event stream for agent desktops and supervisor consoles.

Thin I/O: authentication, subprotocol choice and message routing live here; what an event
means lives in the pipeline, and what a supervisor command does lives in the decision layer.
Client mistakes (bad JSON, unknown types, a call they may not see) get an `error` event and
the connection stays up; only bad credentials, oversized messages and a client that cannot
keep up close it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from callcue.auth import Authenticator, FailureLimiter
from callcue.egress.access import CallAccess, SupervisorHandler
from callcue.egress.access_log import record_access
from callcue.egress.hub import Hub, Subscriber
from callcue.egress.replay import replay
from callcue.egress.serializers import SerializerError, choose

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE = 64 * 1024
FEEDBACK_ACTIONS = ("accepted", "dismissed", "corrected")


@dataclass(frozen=True)
class AgentGateway:
    """What the endpoint needs, handed in when the app is built."""

    auth: Authenticator
    hub: Hub
    access: CallAccess
    rejected: Callable[[str, str | None, int, str], None]
    supervisor_handler: SupervisorHandler | None = None
    failures: FailureLimiter | None = None
    allowed_origins: tuple[str, ...] = ()
    #: ended calls stay listed and openable this long
    ended_call_visible_s: float = 8 * 3600


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin; a page may connect from this server's own origin or a listed one.
    Clients that are not browsers send none and are judged by their token alone."""
    if origin is None:
        return True
    if origin in allowed:
        return True
    netloc = urlsplit(origin).netloc
    return bool(host) and netloc == host


def agent_endpoint(gw: Callable[[], AgentGateway]) -> Callable[[WebSocket], Awaitable[None]]:
    """The `/ws/agent` handler over the gateway the running server provides."""

    async def endpoint(ws: WebSocket) -> None:
        await serve_agent(ws, gw())

    return endpoint


async def serve_agent(ws: WebSocket, gw: AgentGateway) -> None:
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    ser = choose(offered)
    client = ws.client.host if ws.client else None
    await ws.accept(subprotocol=ser.subprotocol if ser.subprotocol in offered else None)
    refusal = None
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), gw.allowed_origins):
        refusal = "origin not allowed"
    elif gw.failures is not None and gw.failures.blocked(client):
        refusal = "too many failed authentications from this address; retry later"
    principal = gw.auth.from_headers(ws.headers, ws.query_params) if refusal is None else None
    if refusal is None and principal is None:
        refusal = "missing or invalid bearer token"
        if gw.failures is not None:
            gw.failures.failed(client)
    if refusal is not None or principal is None:
        gw.rejected("agent", None, 1008, refusal or "refused")
        await ws.close(code=1008, reason=refusal or "refused")
        return
    sub = Subscriber(principal)
    gw.hub.register(sub)
    sender = asyncio.create_task(_send_loop(ws, sub, ser))
    await _send(ws, ser, {"type": "hello", "user_id": principal.user_id, "role": principal.role,
                          "protocol": ser.subprotocol, "server_time": time.time()})
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            data = msg.get("text") if msg.get("text") is not None else msg.get("bytes")
            if data is None:
                continue
            if len(data) > MAX_CLIENT_MESSAGE:
                await ws.close(code=1009, reason=f"message over {MAX_CLIENT_MESSAGE} bytes")
                break
            try:
                req = ser.loads(data)
            except SerializerError as e:
                await _send(ws, ser, {"type": "error", "code": "bad_message", "message": str(e)})
                continue
            reply = await handle_client_message(gw, sub, req)
            if reply is not None:
                await _send(ws, ser, reply)
    except WebSocketDisconnect:
        pass
    finally:
        gw.hub.unregister(sub)
        sender.cancel()


async def handle_client_message(gw: AgentGateway, sub: Subscriber, req: dict[str, Any]) -> dict[str, Any] | None:
    """Route one client request; returns the reply event (or None)."""
    kind = req.get("type")
    rid = req.get("id")

    def reply(ev: dict[str, Any]) -> dict[str, Any]:
        if rid is not None:
            ev["id"] = rid
        return ev

    if kind == "subscribe":
        try:
            return reply(await _subscribe(gw, sub, req))
        except ValueError as e:
            return reply({"type": "error", "code": "bad_request", "message": str(e)})
    if kind == "unsubscribe":
        call_id = req.get("call_id", "*")
        if not isinstance(call_id, str) or not call_id:
            return reply({"type": "error", "code": "bad_request", "message": "call_id must be a non-empty string or '*'"})
        if call_id == "*":
            sub.all_calls = False
            sub.calls.clear()
        else:
            sub.calls.discard(call_id)
        return reply({"type": "unsubscribed", "call_id": call_id})
    if kind == "feedback":
        return reply(await gw.access.record_feedback(sub.principal, req))
    if kind == "recording":
        return reply(await gw.access.pause_recording(sub.principal, req))
    if kind == "reply_feedback":
        return reply(await gw.access.record_reply_feedback(sub.principal, req))
    if kind == "ping":
        return reply({"type": "pong", "server_time": time.time()})
    if sub.principal.role != "agent" and gw.supervisor_handler is not None:
        return reply(await gw.supervisor_handler(sub.principal, req))
    return reply({"type": "error", "code": "unknown_type", "message": f"unknown message type {kind!r}"})


def _cursor(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{what} must be a non-negative integer event number")
    return v


async def _subscribe(gw: AgentGateway, sub: Subscriber, req: dict[str, Any]) -> dict[str, Any]:
    """Start watching one call or all of them, replaying what the client lacks first.

    One call: its stored events after `since` (default: all of them; `history: false`:
    none). "*": with `since` (a reconnect: {call_id: last seq}) the named calls after their
    numbers, and every other live call, or call that ended after `since_time`, from the
    start; with `history: true` every live call from the start; else nothing.
    """
    call_id = req.get("call_id", "*")
    history = req.get("history")
    if history is not None and not isinstance(history, bool):
        raise ValueError("history must be true or false")
    since = req.get("since")
    read = gw.access.read_events
    now = time.time()
    if call_id == "*":
        if since is not None and (not isinstance(since, dict) or len(since) > 5000):
            raise ValueError("since must map call ids to event numbers (at most 5000)")
        cursors = {str(k): _cursor(v, f"since[{k!r}]") for k, v in (since or {}).items()}
        since_time = req.get("since_time") or 0
        if not isinstance(since_time, (int, float)) or isinstance(since_time, bool):
            raise ValueError("since_time must be a unix time")
        sub.all_calls = True
        active = gw.access.visible_calls(sub.principal)
        recent = await gw.access.recent_calls(sub.principal, now - gw.ended_call_visible_s)
        targets: dict[str, int] = {}
        if since is not None or history:
            targets = {c["call_id"]: cursors.get(c["call_id"], 0) for c in active}
            for c in recent:
                if c["call_id"] in cursors or (since is not None and since_time and (c.get("ended_at") or 0) >= since_time):
                    targets[c["call_id"]] = cursors.get(c["call_id"], 0)
        replayed = {cid: await replay(sub, cid, after, read) for cid, after in targets.items()}
        for cid, n in replayed.items():
            if n:
                await record_access(gw.access.sink, sub.principal, "call_events", None, call_id=cid, events=n)
        return {"type": "subscribed", "call_id": "*", "active_calls": active, "recent_calls": recent,
                "replayed": replayed}  # fmt: skip
    if not isinstance(call_id, str) or not call_id:
        raise ValueError("call_id must be a non-empty string or '*'")
    agent = await gw.access.call_agent(call_id)
    if agent is False:
        return {"type": "error", "code": "unknown_call", "message": f"no call {call_id!r}"}
    if agent is True or not sub.principal.may_see(agent):  # the store says str, None or False
        return {"type": "error", "code": "forbidden", "message": f"not allowed to see call {call_id!r}"}
    ended = await gw.access.call_ended_at(call_id)
    if ended is not None and ended < now - gw.ended_call_visible_s:
        return {"type": "error", "code": "expired",
                "message": f"call {call_id!r} ended more than {gw.ended_call_visible_s:.0f} s ago; its record is in the call REST API"}
    after = _cursor(since, "since") if since is not None else 0
    sub.calls.add(call_id)
    n = await replay(sub, call_id, after, read) if since is not None or history is not False else 0
    if n:  # the call's history was read: a view of it
        await record_access(gw.access.sink, sub.principal, "call_events", None, call_id=call_id, events=n)
    return {"type": "subscribed", "call_id": call_id, "ended": ended is not None, "replayed": {call_id: n}}


async def _send(ws: WebSocket, ser: Any, event: dict[str, Any]) -> None:
    data = ser.dumps(event)
    if ser.binary:
        await ws.send_bytes(data)
    else:
        await ws.send_text(data)


async def _send_loop(ws: WebSocket, sub: Subscriber, ser: Any) -> None:
    try:
        while True:
            ev = await sub.queue.get()
            if ev is None:
                await ws.close(code=1013, reason="client too slow: event queue overflowed")
                return
            await _send(ws, ser, ev)
    except (WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        return
    except Exception:
        log.exception("agent sender failed")
