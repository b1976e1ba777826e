"""The virtual agent's latency budget on this box: end of the caller's speech -> first bot
audio, and barge-in (the caller speaks over the bot) -> `clear`, with N bot calls at once on a
server from the shipped config, over Twilio bidirectional streams in real time.

Each call: the greeting starts; after 2 s the caller (espeak-ng) says "I lost my card" over it
(barge-in), then 4 s of silence while the bot answers. p50/p95/p99 over the calls, the 1-minute
load beside.

    python bench/voicebot.py --calls 1,4,8 [--peer]

Each caller then answers the bot's question with "4 4 1 1": *slot answer* is the end of that
speech -> the bot's next audio, where turn-taking (bot/turns.py) ends a complete answer's turn
sooner; `--peer` runs each level again with it off, for the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q)) if xs else float("nan")


@dataclass
class Conversation:
    """What a caller heard (Twilio messages with their arrival times) and when it spoke;
    `then_end`: when the caller's second turn (the slot value) ended, if it had one."""

    got: list[tuple[float, dict]]
    speech_start: float
    speech_end: float
    then_end: float | None = None


async def converse(base: str, caller: bytes, flow: str = "bank", then: bytes | None = None) -> Conversation:
    """One Twilio `<Connect><Stream>` caller in real time: 2 s of silence (the greeting
    starts), `caller` (16-bit PCM, 8 kHz) over it, then 4 s of silence for the bot's answer;
    with `then`, the caller then answers the bot's question with it and is silent 3 s."""
    from callcue.audio.codecs import encode
    from callcue.clients.twilio_stream import TwilioMessages, connect_twilio

    msgs = TwilioMessages(agent_id=None, custom={"flow": flow})
    got: list[tuple[float, dict]] = []
    async with connect_twilio(f"{base}/ws/twilio") as ws:

        async def read() -> None:
            async for raw in ws:
                got.append((time.monotonic(), json.loads(raw)))

        reader = asyncio.create_task(read())
        await ws.send(msgs.connected())
        await ws.send(msgs.start(["inbound"]))
        ts = 0

        async def play(pcm: bytes) -> None:
            nonlocal ts
            ulaw = encode("PCMU", pcm)
            t0 = time.monotonic()
            for i in range(0, len(ulaw), 160):
                await ws.send(msgs.media("inbound", ts, ulaw[i : i + 160]))
                ts += 20
                await asyncio.sleep(max(0.0, t0 + (i // 160 + 1) * 0.02 - time.monotonic()))

        await play(b"\0\0" * 16000)
        speech_start = time.monotonic()
        await play(caller)
        speech_end = time.monotonic()
        await play(b"\0\0" * 32000)
        then_end = None
        if then is not None:
            await play(then)
            then_end = time.monotonic()
            await play(b"\0\0" * 24000)
        await ws.send(msgs.stop())
        await asyncio.sleep(0.3)
        reader.cancel()
    return Conversation(got, speech_start, speech_end, then_end)


async def one_call(base: str, caller: bytes, digits: bytes) -> dict[str, float | None]:
    c = await converse(base, caller, then=digits)
    clear = next((t for t, m in c.got if m.get("event") == "clear" and t >= c.speech_start), None)
    answer = next((t for t, m in c.got if m.get("event") == "media" and t >= c.speech_end and (clear is None or t > clear)),
                  None)  # fmt: skip
    # the answer to a complete slot value ("4 4 1 1"): turn-taking ends such a turn sooner
    slot = next((t for t, m in c.got if m.get("event") == "media" and c.then_end and t >= c.then_end), None)
    return {"barge_in_s": None if clear is None else clear - c.speech_start,
            "first_audio_s": None if answer is None else answer - c.speech_end,
            "slot_answer_s": None if slot is None or c.then_end is None else slot - c.then_end}  # fmt: skip


async def run(calls: int, turn_taking: bool = True) -> dict:
    from serverkit import make_settings, server

    from callcue.bot.voice import EspeakVoice

    caller = b"".join(EspeakVoice().synthesize("Hello. I lost my card.", 8000))
    digits = b"".join(EspeakVoice().synthesize("4 4 1 1", 8000))
    with tempfile.TemporaryDirectory() as tmp:
        async with server(make_settings(Path(tmp), bot={"turn_taking": turn_taking})) as (base, _app):
            load0 = os.getloadavg()[0]
            rows = await asyncio.gather(*(one_call(base, caller, digits) for _ in range(calls)))
            load1 = os.getloadavg()[0]
    first = [r["first_audio_s"] for r in rows if r["first_audio_s"] is not None]
    barge = [r["barge_in_s"] for r in rows if r["barge_in_s"] is not None]
    slot = [r["slot_answer_s"] for r in rows if r["slot_answer_s"] is not None]
    return {"calls": calls, "answered": len(first), "barged": len(barge),
            "first_audio_s": {"p50": pct(first, 50), "p95": pct(first, 95), "p99": pct(first, 99)},
            "barge_in_s": {"p50": pct(barge, 50), "p95": pct(barge, 95), "p99": pct(barge, 99)},
            "slot_answer_s": {"p50": pct(slot, 50), "p95": pct(slot, 95), "p99": pct(slot, 99)},
            "turn_taking": turn_taking, "load_before": load0, "load_after": load1, "cores": os.cpu_count()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="1,4", help="comma-separated concurrency levels")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--peer", action="store_true",
                    help="also run each level with turn-taking off ([bot] turn_taking = false), side by side")
    a = ap.parse_args()
    out = []
    for n in [int(x) for x in a.calls.split(",")]:
        for tt in (True, False) if a.peer else (True,):
            r = asyncio.run(run(n, tt))
            print(json.dumps(r), flush=True)
            out.append(r)
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
