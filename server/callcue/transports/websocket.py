"""The WebSocket transport: runs any platform parser over a Starlette WebSocket.

All protocol knowledge lives in the sans-I/O parser; this loop only moves frames between the
socket and an `IngressSession`. Before the first frame the platform's own authentication
judges the upgrade: a refusal is recorded and either closes with 1008 or, where the platform
says "unauthorized" in its own messages (AudioHook), is served by the platform's refusal
parser. A source that keeps failing is refused unchecked. A frame the parser rejects is
recorded and either skipped (non-fatal) or answered with the parser's close code; a stream
that sends no audio (or keep-alive) for the idle timeout, unless the platform paused it, is
closed, so idle sockets cannot hold the call cap. Frame sizes are the parser's business (it
knows its platform's limits), so they are checked there, once.
"""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket, WebSocketDisconnect

from callcue.platforms.base import Handshake, ProtocolError
from callcue.transports.session import (
    CallSink,
    IngressPolicy,
    IngressSession,
    RejectionRecorder,
    admit,
    parser_for,
)


def handshake_of(ws: WebSocket) -> Handshake:
    return Handshake(url=str(ws.url), headers={k.lower(): v for k, v in ws.headers.items()},
                     client=ws.client.host if ws.client else None)  # fmt: skip


async def _send(ws: WebSocket, frames: list[str | bytes]) -> None:
    for out in frames:
        await (ws.send_text(out) if isinstance(out, str) else ws.send_bytes(out))


async def _flush(ws: WebSocket, session: IngressSession) -> None:
    await _send(ws, session.outgoing())


async def run_websocket(ws: WebSocket, policy: IngressPolicy, calls: CallSink, rejected: RejectionRecorder,
                        subprotocol: str | None = None) -> None:  # fmt: skip
    platform = policy.platform.name
    parser, refusal = parser_for(policy, handshake_of(ws), rejected)
    await ws.accept(subprotocol=subprotocol)
    if parser is None:
        await ws.close(code=1008, reason=(refusal or "refused")[:123])
        return
    session = IngressSession(parser, platform, calls, rejected, send=lambda frames: _send(ws, frames))
    idle = policy.idle_timeout_s
    admitted = admit(policy, parser, rejected) if refusal is None else "uncounted"
    if admitted == "refused":
        await ws.close(code=1013, reason=f"{platform} is at its stream limit; try again later")
        return
    try:
        await _flush(ws, session)
        while True:
            try:
                # a timeout scope, not wait_for: wait_for wraps every frame in a new task
                # (1,600 frames a second at 16 Twilio calls), a scope only arms a timer
                async with asyncio.timeout(session.idle_left(idle)):
                    msg = await ws.receive()
            except TimeoutError:
                reason = f"no audio for {idle:g} s"
                rejected(platform, session.call.call_id if session.call else None, 1008, reason)
                session.end_reason = "idle_timeout"
                await ws.close(code=1008, reason=reason)
                break
            if msg["type"] == "websocket.disconnect":
                break
            try:
                await session.feed(msg.get("text"), msg.get("bytes") if msg.get("text") is None else None)
            except ProtocolError as e:
                if e.fatal:
                    await _flush(ws, session)
                    await ws.close(code=e.close_code, reason=e.reason[:123])
                    break
            await _flush(ws, session)
            if session.finished:
                # everything the call said has been recognized and published by now
                close = session.close_request
                await ws.close(code=close.code if close else 1000, reason=close.reason if close else "call stopped")
                break
    except WebSocketDisconnect:
        pass
    finally:
        await session.eof()
        if admitted == "counted" and policy.streams is not None:
            policy.streams.release(platform)
