"""The WebSocket transport: runs any platform parser over a Starlette WebSocket.

All protocol knowledge lives in the sans-I/O parser; this loop only moves frames between the
socket and an `IngressSession`. Before the first frame the platform's own authentication
judges the upgrade (a refusal is recorded and closes with 1008), and a source that keeps
failing is refused unchecked. A frame the parser rejects is recorded and either skipped
(non-fatal) or answered with the parser's close code; a stream that sends no audio for the
idle timeout is closed, so idle sockets cannot hold the call cap. Frame sizes are the
parser's business (it knows its platform's limits), so they are checked there, once.
"""

from __future__ import annotations

import asyncio
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from callcue.platforms.base import (
    Handshake,
    PlatformParser,
    ProtocolError,
)
from callcue.transports.session import (
    CallSink,
    IngressPolicy,
    IngressSession,
    RejectionRecorder,
    refusal_of,
)


def handshake_of(ws: WebSocket) -> Handshake:
    return Handshake(url=str(ws.url), headers={k.lower(): v for k, v in ws.headers.items()},
                     client=ws.client.host if ws.client else None)  # fmt: skip


async def run_websocket(ws: WebSocket, parser: PlatformParser, platform: str, calls: CallSink,
                        rejected: RejectionRecorder, policy: IngressPolicy | None = None,
                        subprotocol: str | None = None) -> None:  # fmt: skip
    if policy is not None:
        refusal = refusal_of(policy, handshake_of(ws))
        if refusal is not None:
            rejected(platform, None, 1008, refusal)
            await ws.accept(subprotocol=subprotocol)
            await ws.close(code=1008, reason=refusal[:123])
            return
    await ws.accept(subprotocol=subprotocol)
    session = IngressSession(parser, platform, calls, rejected)
    idle = policy.idle_timeout_s if policy is not None else None
    try:
        while True:
            try:
                timeout = None if idle is None else max(0.0, idle - (time.monotonic() - session.last_audio))
                msg = await asyncio.wait_for(ws.receive(), timeout)
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
                    await ws.close(code=e.close_code, reason=e.reason)
                    break
            for out in session.outgoing():
                await (ws.send_text(out) if isinstance(out, str) else ws.send_bytes(out))
            if session.stopped:
                # everything the call said has been recognized and published by now
                await ws.close(code=1000, reason="call stopped")
                break
    except WebSocketDisconnect:
        pass
    finally:
        await session.eof()
