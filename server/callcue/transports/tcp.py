"""The raw-TCP transport (Asterisk AudioSocket): a thin driver of any byte-stream parser.

Like the WebSocket transport it owns only the socket: the peer is judged by the platform's
authentication before a byte is read, bytes go to an `IngressSession`, a fatal protocol
error or the idle timeout closes the connection (TCP has no close codes, so the code and
reason are recorded, not sent), and the end of the stream ends the call.
"""

from __future__ import annotations

import asyncio
import logging
import time

from callcue.platforms.base import Handshake, PlatformParser, ProtocolError
from callcue.transports.session import (
    CallSink,
    IngressPolicy,
    IngressSession,
    RejectionRecorder,
    refusal_of,
)

log = logging.getLogger(__name__)
READ_BYTES = 64 * 1024


async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: PlatformParser, platform: str,
                    calls: CallSink, rejected: RejectionRecorder, policy: IngressPolicy) -> None:  # fmt: skip
    peer = writer.get_extra_info("peername")
    hs = Handshake(url=f"tcp://{peer[0]}:{peer[1]}" if peer else "tcp://?", headers={}, client=peer[0] if peer else None)
    refusal = refusal_of(policy, hs)
    if refusal is not None:
        rejected(platform, None, 1008, refusal)
        writer.close()
        return
    session = IngressSession(parser, platform, calls, rejected)
    try:
        while True:
            timeout = max(0.0, policy.idle_timeout_s - (time.monotonic() - session.last_audio))
            try:
                data = await asyncio.wait_for(reader.read(READ_BYTES), timeout)
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
            if session.stopped:
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        await session.eof()
        writer.close()
