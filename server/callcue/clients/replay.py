"""`callcue replay`: a recording through the same pipeline as a live call, in-process.

Why in-process and not over a socket: replay is for looking at what the pipeline hears and
decides on a given recording (tuning rules, checking a model), so it assembles the same
runtime (`wiring.assemble`) and Call objects as the server without needing one running. `callcue demo` covers the
network path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from callcue.clients.audio_file import read_call_audio
from callcue.clients.printer import EventPrinter
from callcue.config import Settings
from callcue.egress.hub import Principal, Subscriber
from callcue.platforms.base import CallStart
from callcue.wiring import assemble


async def replay(path: str | Path, settings: Settings, speed: float = 1.0, show_partials: bool = True,
                 out: Callable[[str], None] = print, agent_id: str = "agent-1") -> list[dict]:
    audio = read_call_audio(path)
    rt = await assemble(settings)
    out(f"ASR: {rt.asr_note}")
    sub = Subscriber(Principal("replay", "supervisor"), queue_size=100_000)
    sub.all_calls = True
    rt.hub.register(sub)
    # speed 0 (as fast as possible) has no call clock but the transcripts' own times
    printer = EventPrinter(out, show_partials, speed=speed or 1.0)

    async def print_events() -> None:
        while (ev := await sub.queue.get()) is not None:
            if printer.feed(ev):
                return

    ptask = asyncio.create_task(print_events())
    call_id = f"replay-{Path(path).stem}-{int(time.time())}"
    start = CallStart(call_id=call_id, encoding="L16", sample_rate=audio.sample_rate,
                      channels=tuple(audio.channels), agent_id=agent_id, platform="replay",
                      metadata={"file": str(path)})
    try:
        call = await rt.calls.start(start)
        t0 = time.monotonic()
        printer.started_at = time.time()
        for offset, frames in audio.chunks(20):
            if speed > 0:
                delay = t0 + offset / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            for ch, pcm in frames.items():
                await call.audio(ch, pcm)
        await rt.calls.stop(call_id, "end_of_file")
        await asyncio.wait_for(ptask, timeout=30)
        printer.close()
    finally:
        await rt.close()
    return printer.events
