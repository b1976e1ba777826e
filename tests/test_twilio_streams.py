"""Twilio done fully: the TwiML shapes a contact center uses, each against a real server.

- two `<Stream>`s on one call (`track="inbound_track"` and `track="outbound_track"`, two sockets
  with one `callSid` and two `streamSid`s) are one call with two channels;
- `<Stop><Stream>` then a new `<Start><Stream>` on the same call continues that call;
- a bidirectional `<Connect><Stream>` sends `mark` and `dtmf` events, accepted in stride.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from callcue.clients.audio_file import CallAudio
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, mulaw_frames
from tests.conftest import require_shared
from tests.serverkit import (
    SUPERVISOR_TOKEN,
    agent,
    make_settings,
    quick_disclosure,
    real_call,
    server,
)


async def _stream_track(url: str, audio: CallAudio, msgs: TwilioMessages, track: str, channel: str,
                        speed: float = 4.0, stop: bool = True, extra: list[dict] | None = None) -> None:
    async with connect_twilio(url) as ws:
        await ws.send(msgs.connected())
        await ws.send(msgs.start([track]))
        mono = CallAudio(audio.sample_rate, {"customer": audio.channels[channel]})
        t0 = asyncio.get_running_loop().time()
        for i, (offset, frames) in enumerate(mulaw_frames(mono)):
            delay = t0 + offset / speed - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            # mono carries this track's audio under "inbound"; send it as `track`
            await ws.send(msgs.media(track, int(offset * 1000), frames["inbound"]))
            if extra and i == 10:
                for m in extra:
                    await ws.send(json.dumps({**m, "streamSid": msgs.stream_sid, "sequenceNumber": msgs._next()}))
        if stop:
            await ws.send(msgs.stop())
        await asyncio.wait_for(ws.wait_closed(), 60)


async def test_inbound_and_outbound_streams_on_two_sockets_are_one_call(tmp_path: Path) -> None:
    audio = real_call(require_shared())
    s = make_settings(tmp_path, understanding=quick_disclosure(tmp_path))
    inbound = TwilioMessages(agent_id="agent-1")
    outbound = TwilioMessages(call_sid=inbound.call_sid, agent_id="agent-1")  # same callSid, its own streamSid
    assert inbound.stream_sid != outbound.stream_sid
    async with server(s) as (base, _app), agent(base, SUPERVISOR_TOKEN) as desk:
        url = f"{base}/ws/twilio"
        await asyncio.gather(_stream_track(url, audio, inbound, "inbound", "customer"),
                             _stream_track(url, audio, outbound, "outbound", "agent"))
        await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == inbound.call_sid, 90)
        assert len([e for e in desk.of_type("call_started") if e["call_id"] == inbound.call_sid]) == 1
        finals = [e for e in desk.of_type("transcript") if e["is_final"] and e["call_id"] == inbound.call_sid]
        by_ch = {ch: " ".join(f["text"].lower() for f in finals if f["channel"] == ch) for ch in ("customer", "agent")}
        assert "country" in by_ch["customer"] and ("glad" in by_ch["agent"] or "phil" in by_ch["agent"]), by_ch
        assert any("disclosure" in h["title"].lower() for h in desk.of_type("hint") if h["call_id"] == inbound.call_sid)


async def test_stop_then_start_stream_continues_the_call(tmp_path: Path) -> None:
    audio = real_call(require_shared())
    n = len(audio.channels["customer"])
    cut = int(audio.sample_rate * 7.0)  # mid-way through JFK's line
    first = CallAudio(audio.sample_rate, {k: v[:cut] for k, v in audio.channels.items()})
    second = CallAudio(audio.sample_rate, {k: v[cut:n] for k, v in audio.channels.items()})
    s = make_settings(tmp_path)
    a = TwilioMessages(agent_id="agent-1")
    b = TwilioMessages(call_sid=a.call_sid, agent_id="agent-1")  # <Start><Stream> again: a new streamSid
    async with server(s) as (base, _app):
        async with agent(base, SUPERVISOR_TOKEN) as desk:
            await _stream_track(f"{base}/ws/twilio", first, a, "inbound", "customer")
            await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == a.call_sid, 60)
            await _stream_track(f"{base}/ws/twilio", second, b, "inbound", "customer")
            await desk.wait_for(lambda e: len([x for x in desk.of_type("call_ended") if x["call_id"] == a.call_sid]) == 2, 60)
        async with httpx.AsyncClient(base_url=base.replace("ws", "http"),
                                     headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}) as http:
            record = (await http.get(f"/api/v1/calls/{a.call_sid}")).json()
    finals = record["transcripts"]  # the store keeps finals
    assert finals, record
    # one call record; the second stream's words sit after the first stream's on one clock
    assert max(t["end_s"] for t in finals) > cut / audio.sample_rate + 1.0, finals
    assert len({(t["channel"], t["segment_id"]) for t in finals}) == len(finals)


async def test_a_restarted_stream_right_after_stop_continues_the_call(tmp_path: Path) -> None:
    """<Stop><Stream> then <Start><Stream> as Twilio runs them, milliseconds apart: the new
    socket's start arrives while the first stream's call is still flushing its finals. It
    continues the call instead of being refused 1008 "already streaming"."""
    audio = real_call(require_shared())
    cut = int(audio.sample_rate * 7.0)
    first = CallAudio(audio.sample_rate, {k: v[:cut] for k, v in audio.channels.items()})
    second = CallAudio(audio.sample_rate, {k: v[cut:] for k, v in audio.channels.items()})
    s = make_settings(tmp_path)
    a = TwilioMessages(agent_id="agent-1")
    b = TwilioMessages(call_sid=a.call_sid, agent_id="agent-1")
    async with server(s) as (base, _app):
        async with agent(base, SUPERVISOR_TOKEN) as desk:
            url = f"{base}/ws/twilio"
            async with connect_twilio(url) as old:
                await old.send(a.connected())
                await old.send(a.start(["inbound"]))
                mono = CallAudio(first.sample_rate, {"customer": first.channels["customer"]})
                for offset, frames in mulaw_frames(mono):
                    await old.send(a.media("inbound", int(offset * 1000), frames["inbound"]))
                await old.send(a.stop())
                # the new stream at once, before the old socket has even closed
                new_stream = asyncio.create_task(_stream_track(url, second, b, "inbound", "customer", speed=8.0))
                await asyncio.wait_for(old.wait_closed(), 60)
            await asyncio.wait_for(new_stream, 120)
            await desk.wait_for(lambda e: len([x for x in desk.of_type("call_ended") if x["call_id"] == a.call_sid]) == 2, 60)
        async with httpx.AsyncClient(base_url=base.replace("ws", "http"),
                                     headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}) as http:
            record = (await http.get(f"/api/v1/calls/{a.call_sid}")).json()
    finals = record["transcripts"]
    assert max(t["end_s"] for t in finals) > cut / audio.sample_rate + 1.0, finals  # the second stream was heard
    assert "country" in " ".join(t["text"].lower() for t in finals)
    assert len({(t["channel"], t["segment_id"]) for t in finals}) == len(finals)


async def test_bidirectional_connect_stream_marks_and_dtmf(tmp_path: Path) -> None:
    audio = real_call(require_shared())
    s = make_settings(tmp_path)
    msgs = TwilioMessages(agent_id="agent-1")
    async with server(s) as (base, _app), agent(base, SUPERVISOR_TOKEN) as desk:
        extra = [{"event": "mark", "mark": {"name": "greeting-played"}},
                 {"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": "7"}}]
        await _stream_track(f"{base}/ws/twilio", audio, msgs, "inbound", "customer", extra=extra)
        ended = await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == msgs.call_sid, 60)
        assert ended
        finals = [e for e in desk.of_type("transcript") if e["is_final"] and e["call_id"] == msgs.call_sid]
        assert "country" in " ".join(f["text"].lower() for f in finals)
