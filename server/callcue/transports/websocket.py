"""The thin I/O layer shared by every platform's ingress WebSocket.

All protocol knowledge lives in the sans-I/O parsers; this loop only moves bytes from the
socket into a parser and the parser's events into the call manager. A frame the parser
rejects is recorded (log, metric, database) and either skipped (non-fatal) or answered with
the parser's close code; either way only this connection is affected.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from callcue import metrics
from callcue.platforms.base import AudioIn, CallStart, CallStop, Dtmf, GapFilled, IngressEvent, Mark, ProtocolError

log = logging.getLogger(__name__)


class IngressParser(Protocol):
    def receive_text(self, text: str) -> list[IngressEvent]: ...
    def receive_bytes(self, data: bytes) -> list[IngressEvent]: ...


async def run_ingress(ws: WebSocket, parser: IngressParser, platform: str, subprotocol: str | None = None) -> None:
    services = ws.app.state.services
    manager = services.manager
    limit = services.settings.server.max_frame_bytes
    await ws.accept(subprotocol=subprotocol)
    call = None
    end_reason = "disconnected"
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            text, data = msg.get("text"), msg.get("bytes")
            try:
                size = len(text.encode()) if text is not None else len(data or b"")
                if size > limit:
                    raise ProtocolError(1009, f"frame of {size} bytes exceeds the {limit}-byte limit")
                events = parser.receive_text(text) if text is not None else parser.receive_bytes(data or b"")
                stopped = False
                for ev in events:
                    call = await _apply(services, manager, call, ev, platform)
                    if isinstance(ev, CallStop):
                        end_reason = ev.reason
                        stopped = True
                if stopped:
                    # everything the call said has been recognized and published by now
                    await ws.close(code=1000, reason="call stopped")
                    break
            except ProtocolError as e:
                services.record_rejection(platform, call.call_id if call else None, e.close_code, e.reason)
                if e.fatal:
                    end_reason = f"protocol_error:{e.close_code}"
                    await ws.close(code=e.close_code, reason=e.reason)
                    break
    except WebSocketDisconnect:
        pass
    finally:
        if call is not None and not call.ended:
            await manager.stop(call.call_id, end_reason)


async def _apply(services: Any, manager: Any, call: Any, ev: IngressEvent, platform: str) -> Any:
    if isinstance(ev, CallStart):
        if call is not None:
            raise ProtocolError(1008, f"a second start on one connection (call {call.call_id!r} is active)")
        ev.platform = platform
        return await manager.start(ev)
    if isinstance(ev, AudioIn):
        if call is None or ev.call_id != call.call_id:
            raise ProtocolError(1008, f"audio for unknown call {ev.call_id!r}")
        if ev.channel not in call.channels:
            raise ProtocolError(1008, f"audio for channel {ev.channel!r} that the start did not declare")
        await call.audio(ev.channel, ev.payload)
        return call
    if isinstance(ev, GapFilled):
        metrics.GAPS.labels(platform).inc()
        log.info("audio gap filled", extra={"call_id": ev.call_id, "channel": ev.channel,
                                            "missing_s": round(ev.missing_seconds, 3), "why": ev.reason})
        return call
    if isinstance(ev, Dtmf):
        # the digit itself is never forwarded or stored: keypad entry is how cards are typed
        if call is not None:
            services.hub.publish(call.call_id, {"type": "dtmf", "call_id": call.call_id})
        return call
    if isinstance(ev, Mark):
        return call
    if isinstance(ev, CallStop):
        if call is not None:
            await manager.stop(call.call_id, ev.reason)
        return None
    return call
