"""The raw-TCP transport (Asterisk AudioSocket): a thin driver of any byte-stream parser.

Like the WebSocket transport it owns only the socket: the peer is judged by the platform's
authentication before a byte is read, bytes go to an `IngressSession`, a fatal protocol
error or the idle timeout closes the connection (TCP has no close codes, so the code and
reason are recorded, not sent), and the end of the stream ends the call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from callcue.platforms.base import Handshake, ProtocolError
from callcue.transports.session import (
    CallSink,
    IngressPolicy,
    IngressSession,
    RejectionRecorder,
    admit,
    parser_for,
)

log = logging.getLogger(__name__)
READ_BYTES = 64 * 1024


async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, policy: IngressPolicy,
                    calls: CallSink, rejected: RejectionRecorder,
                    start_metadata: dict[str, Any] | None = None) -> None:  # fmt: skip
    peer = writer.get_extra_info("peername")
    hs = Handshake(url=f"tcp://{peer[0]}:{peer[1]}" if peer else "tcp://?", headers={}, client=peer[0] if peer else None)
    parser, _ = parser_for(policy, hs, rejected)
    if parser is None:
        writer.close()
        return
    platform = policy.platform.name
    admitted = admit(policy, parser, rejected)
    if admitted in ("refused", "told"):  # nothing may be sent to Asterisk but audio or hangup
        writer.close()
        return

    async def send(out: list[str | bytes]) -> None:
        for o in out:
            writer.write(o if isinstance(o, bytes) else o.encode())
        await writer.drain()

    async def pace() -> None:
        """While the parser holds audio for the peer (the virtual agent speaking), hand it
        out as it falls due: the peer's own frames may pause (silence suppression)."""
        while True:
            await asyncio.sleep(0.02)
            if getattr(parser, "speaking", False):
                try:
                    await send(session.outgoing())
                except ConnectionError:
                    return

    session = IngressSession(parser, platform, calls, rejected, send=send, start_metadata=start_metadata)
    # only a listener whose calls a flow answers ever speaks: the listen-only fork has no timer
    pacer = asyncio.create_task(pace(), name="tcp-pacer") if (start_metadata or {}).get("flow") else None
    try:
        while True:
            try:
                data = await asyncio.wait_for(reader.read(READ_BYTES), session.idle_left(policy.idle_timeout_s))
            except TimeoutError:
                rejected(platform, session.call.call_id if session.call else None, 1008,
                         f"no audio for {policy.idle_timeout_s:g} s")  # fmt: skip
                session.end_reason = "idle_timeout"
                break
            if not data:
                break
            try:
                await session.feed(None, data)
            except ProtocolError as e:
                if e.fatal:
                    break
            if session.finished:
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        if pacer is not None:
            pacer.cancel()
            await asyncio.gather(pacer, return_exceptions=True)
        await session.eof()
        writer.close()
        if admitted == "counted" and policy.streams is not None:
            policy.streams.release(platform)
