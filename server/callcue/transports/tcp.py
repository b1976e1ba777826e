"""The raw-TCP transport (Asterisk AudioSocket): a thin driver of any byte-stream parser.

Like the WebSocket transport it owns only the socket: the peer is judged by the platform's
authentication before a byte is read, bytes go to an `IngressSession`, a fatal protocol
error or the idle timeout closes the connection (TCP has no close codes, so the code and
reason are recorded, not sent), and the end of the stream ends the call.
"""

from __future__ import annotations

import asyncio
import logging

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
                    calls: CallSink, rejected: RejectionRecorder) -> None:  # fmt: skip
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
    session = IngressSession(parser, platform, calls, rejected)
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
            for out in session.outgoing():
                writer.write(out if isinstance(out, bytes) else out.encode())
            if session.finished:
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        await session.eof()
        writer.close()
        if admitted == "counted" and policy.streams is not None:
            policy.streams.release(platform)
