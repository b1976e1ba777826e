"""`callcue play`: a recording into a running server, as Twilio Media Streams would send it.

Why over the network rather than in-process (`callcue replay`): a person with the agent
desktop and the supervisor console open wants to replay calls *into those pages*, so the call
must reach the server they are connected to, by the same door a telephony platform uses. The
agent socket opened beside it prints what the desk is sent, each line stamped with where in
the call it happened.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from callcue.clients.audio_file import read_call_audio
from callcue.clients.printer import EventPrinter
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, stream_call


def http_to_ws(url: str) -> str:
    """The server's base URL as ws(s)://host:port, whichever scheme was given."""
    url = url.rstrip("/")
    for a, b in (("https://", "wss://"), ("http://", "ws://")):
        if url.startswith(a):
            return b + url[len(a):]
    return url if url.startswith(("ws://", "wss://")) else "ws://" + url


async def play(path: str | Path, url: str, agent_token: str, twilio_token: str, speed: float = 1.0,
               agent_id: str = "agent-1", call_id: str | None = None, show_partials: bool = True,
               out: Callable[[str], None] = print) -> list[dict[str, Any]]:  # fmt: skip
    """Stream `path` to `url`/ws/twilio at `speed` x real time and print the call's events."""
    audio = read_call_audio(path)
    base = http_to_ws(url)
    msgs = TwilioMessages(call_sid=call_id, agent_id=agent_id)
    printer = EventPrinter(out, show_partials, speed=speed)
    headers = {"Authorization": f"Bearer {agent_token}"}
    async with connect(f"{base}/ws/agent", additional_headers=headers, subprotocols=[Subprotocol("callcue.v1.json")]) as desk:
        await desk.send(json.dumps({"type": "subscribe", "call_id": "*", "id": "play"}))

        async def listen() -> None:
            async for raw in desk:
                ev = json.loads(raw)
                if ev.get("type") == "error":
                    out(f"error from server: {ev.get('message')}")
                if ev.get("call_id") not in (None, msgs.call_sid) or ev.get("id") == "play":
                    continue  # another call's, or the subscribe reply
                if printer.feed(ev):
                    return

        listener = asyncio.create_task(listen())
        out(f"Playing {Path(path).name} ({audio.duration:.0f} s) into {base}/ws/twilio as call {msgs.call_sid} "
            f"at {speed:g}x")
        async with connect_twilio(f"{base}/ws/twilio", twilio_token) as tw:
            printer.started_at = time.time()
            await stream_call(tw, audio, msgs, speed=speed)
        try:
            await asyncio.wait_for(listener, timeout=60)
        except TimeoutError:
            out("the server did not end the call within 60 s of the stream's stop")
        printer.close()
    return printer.events
