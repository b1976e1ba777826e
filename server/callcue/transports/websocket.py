"""The WebSocket transport: runs any platform parser over a Starlette WebSocket.

All protocol knowledge lives in the sans-I/O parser; this loop only moves frames between the
socket and an `IngressSession`. A frame the parser rejects is recorded (log, metric,
database) and either skipped (non-fatal) or answered with the parser's close code; either
way only this connection is affected. Frame sizes are the parser's business (it knows its
platform's limits), so they are checked there, once.
"""

from __future__ import annotations

from starlette.websockets import WebSocket, WebSocketDisconnect

from callcue.platforms.base import PlatformParser, ProtocolError
from callcue.transports.session import CallSink, IngressSession, RejectionRecorder


async def run_websocket(ws: WebSocket, parser: PlatformParser, platform: str, calls: CallSink,
                        rejected: RejectionRecorder, subprotocol: str | None = None) -> None:  # fmt: skip
    await ws.accept(subprotocol=subprotocol)
    session = IngressSession(parser, platform, calls, rejected)
    try:
        while True:
            msg = await ws.receive()
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
