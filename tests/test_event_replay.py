"""Numbered call events, late join and resume: through the real server, a real call over
Twilio and real /ws/agent sockets.

A desk watching from the start is the reference. A desk opened mid-call must be replayed the
call so far and then follow it live; a desk that drops and comes back with its cursor must
get exactly what it missed; after the call ends, a fresh desk still lists it and can open it,
also after a server restart (the events come from the store).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from callcue.clients.audio_file import read_call_audio
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, stream_call
from tests.serverkit import SUPERVISOR_TOKEN, agent, make_settings, server

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "server" / "callcue" / "data" / "demo_call.wav"
SPEED = 3.0
CALL_ID = "replay-call-1"


def numbered(events: list[dict[str, Any]], call_id: str = CALL_ID) -> list[dict[str, Any]]:
    return [e for e in events if e.get("call_id") == call_id and isinstance(e.get("seq"), int)]


def key(e: dict[str, Any]) -> tuple[Any, ...]:
    """What must be identical between a live and a replayed copy of one event."""
    return (e["seq"], e["type"], e.get("text"), e.get("hint_id"), e.get("signal_id"))


async def test_late_join_resume_and_an_ended_call_reopened(tmp_path: Path) -> None:
    audio = read_call_audio(DEMO)
    audio.channels = {ch: pcm[: 8000 * 30] for ch, pcm in audio.channels.items()}  # the first 30 s
    settings = make_settings(tmp_path)
    async with server(settings) as (base, _app), agent(base) as ref, agent(base, subscribe=None) as dropper:
        msgs = TwilioMessages(agent_id="agent-1", call_sid=CALL_ID)
        async with connect_twilio(f"{base}/ws/twilio") as tw:
            call = asyncio.create_task(stream_call(tw, audio, msgs, speed=SPEED))
            # a desk that watches the first part, then drops
            await ref.wait_for(lambda e: e.get("type") == "call_started", timeout=30)
            await dropper.send({"type": "subscribe", "call_id": CALL_ID, "id": "s1"})
            await dropper.wait_for(lambda e: e.get("id") == "s1")
            await dropper.wait_for(lambda e: e.get("type") == "transcript" and e.get("is_final"), timeout=60)
            held = numbered(dropper.events)
            cursor = held[-1]["seq"]
            await dropper.ws.close()
            await asyncio.sleep(6 / SPEED)  # the call goes on while it is away
            # a desk opened mid-call: replayed from the start, then live
            async with agent(base, subscribe=None) as late:
                await late.send({"type": "subscribe", "call_id": CALL_ID, "id": "late"})
                sub = await late.wait_for(lambda e: e.get("id") == "late")
                assert sub["type"] == "subscribed" and sub["replayed"][CALL_ID] >= len(held), sub
                # the dropped desk comes back with its cursor
                async with agent(base, subscribe=None) as back:
                    await back.send({"type": "subscribe", "call_id": CALL_ID, "since": cursor, "id": "back"})
                    await back.wait_for(lambda e: e.get("id") == "back")
                    await call
                    for c in (ref, late, back):
                        await c.wait_for(lambda e: e.get("type") == "call_ended", timeout=60)
                    reference = numbered(ref.events)
                    assert [key(e) for e in numbered(late.events)] == [key(e) for e in reference]
                    # what it held plus what it was sent: the whole call, once
                    assert [key(e) for e in held + numbered(back.events)] == [key(e) for e in reference]
    seqs = [e["seq"] for e in reference]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    kinds = {e["type"] for e in reference}
    assert {"call_started", "transcript", "call_ended"} <= kinds, kinds
    assert not any(e["type"] == "transcript" and not e["is_final"] for e in reference)  # partials are unnumbered
    assert any(e["type"] == "transcript" and not e["is_final"] and "seq" not in e for e in ref.events)

    # after a restart, from the store: a supervisor's fresh console lists the ended call and opens it
    async with server(settings) as (base, _app), agent(base, token=SUPERVISOR_TOKEN, subscribe=None) as sup:
        await sup.send({"type": "subscribe", "call_id": "*", "id": "all"})
        listing = await sup.wait_for(lambda e: e.get("id") == "all")
        assert [c["call_id"] for c in listing["recent_calls"]] == [CALL_ID], listing
        assert listing["recent_calls"][0]["end_reason"] and listing["active_calls"] == []
        await sup.send({"type": "subscribe", "call_id": CALL_ID, "id": "open"})
        opened = await sup.wait_for(lambda e: e.get("id") == "open")
        assert opened["ended"] is True
        await sup.wait_for(lambda e: e.get("type") == "call_ended")
        got = numbered(sup.events)
        agent_view = [key(e) for e in got if e["type"] not in ("approval_request", "action_update", "alert")]
        assert agent_view == [key(e) for e in reference]
        await sup.send({"type": "subscribe", "call_id": CALL_ID, "since": "x", "id": "bad"})
        bad = await sup.wait_for(lambda e: e.get("id") == "bad")
        assert bad["type"] == "error" and bad["code"] == "bad_request", bad
    assert json.dumps(reference)  # plain data


async def test_an_ended_call_past_its_visible_time_is_not_listed_or_opened(tmp_path: Path) -> None:
    audio = read_call_audio(DEMO)
    audio.channels = {ch: pcm[: 8000 * 4] for ch, pcm in audio.channels.items()}
    settings = make_settings(tmp_path, server={"ended_call_visible_s": 0})
    async with server(settings) as (base, _app):
        async with agent(base) as ref:
            async with connect_twilio(f"{base}/ws/twilio") as tw:
                await stream_call(tw, audio, TwilioMessages(agent_id="agent-1", call_sid="gone-1"), speed=4.0)
            await ref.wait_for(lambda e: e.get("type") == "call_ended", timeout=30)
        await asyncio.sleep(0.05)
        async with agent(base, subscribe=None) as late:
            await late.send({"type": "subscribe", "call_id": "*", "id": "all"})
            listing = await late.wait_for(lambda e: e.get("id") == "all")
            assert listing["recent_calls"] == []
            await late.send({"type": "subscribe", "call_id": "gone-1", "id": "open"})
            err = await late.wait_for(lambda e: e.get("id") == "open")
            assert err["type"] == "error" and err["code"] == "expired", err
