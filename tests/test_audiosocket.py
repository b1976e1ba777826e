"""Asterisk AudioSocket over raw TCP: the parser on frames cut anywhere, and a real server
hearing a call streamed the way Asterisk streams it (UUID, slin frames, close without 0x00)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import pytest

from callcue.clients.audio_file import read_call_audio
from callcue.platforms.audiosocket import AudioSocketProtocol, frame
from callcue.platforms.base import AudioIn, CallStart, CallStop, Dtmf, ProtocolError
from tests.serverkit import SUPERVISOR_TOKEN, agent, espeak_wav, make_settings, server

UID = uuid.UUID("40b2c4b4-0d6f-4d36-9b7a-6d6f1d1f7a01")


def test_frames_cut_anywhere_parse_the_same() -> None:
    stream = frame(0x01, UID.bytes) + frame(0x10, b"\x01\x00" * 160) + frame(0x03, b"5") + frame(0x10, b"\x02\x00" * 80)
    for cut in (1, 2, 3, 7, 100, len(stream)):
        p = AudioSocketProtocol()
        events = []
        for i in range(0, len(stream), cut):
            events += p.receive_bytes(stream[i:i + cut])
        events += p.receive_eof()  # Asterisk closes at hangup without 0x00
        assert [type(e) for e in events] == [CallStart, AudioIn, Dtmf, AudioIn, CallStop]
        start = events[0]
        assert (start.call_id, start.sample_rate, start.channels, start.encoding) == (str(UID), 8000, ("customer",), "L16")
        assert events[-1].reason == "hangup" and len(events[1].payload) == 320


@pytest.mark.parametrize(("data", "code", "words"), [
    (frame(0x10, b"\x00\x00"), 1008, "before the UUID"),
    (frame(0x01, b"\x00" * 15), 1007, "16"),
    (frame(0x01, UID.bytes) + frame(0x42, b"x"), 1003, "unknown"),
    (frame(0x01, UID.bytes) + frame(0x10, b"\x00"), 1007, "16-bit"),
    (frame(0x01, UID.bytes) + frame(0x10, b"\x00\x00") + frame(0x12, b"\x00\x00"), 1003, "rate changed"),
    (frame(0x01, UID.bytes) + bytes([0x10, 0xFF, 0xFF]), 1009, "limit"),
])
def test_bad_frames_are_refused_precisely(data: bytes, code: int, words: str) -> None:
    p = AudioSocketProtocol(max_message_bytes=4096)
    with pytest.raises(ProtocolError) as ei:
        p.receive_bytes(data)
    assert ei.value.close_code == code and words in ei.value.reason


def test_higher_rates_and_asterisk_errors() -> None:
    p = AudioSocketProtocol()
    ev = p.receive_bytes(frame(0x01, UID.bytes) + frame(0x12, b"\x00\x00" * 320) + frame(0xFF, b"\x02"))
    assert ev[0].sample_rate == 16000 and isinstance(ev[-1], CallStop) and ev[-1].reason == "asterisk_error:02"


async def _asterisk(port: int, pcm: bytes, source: str = "127.0.0.1") -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(frame(0x01, UID.bytes))
        for i in range(0, len(pcm), 320):  # 20 ms of slin at 8 kHz, a little faster than real time
            writer.write(frame(0x10, pcm[i:i + 320]))
            await writer.drain()
            await asyncio.sleep(0.005)
    except ConnectionError:
        pass  # refused: the server closed the socket
    writer.close()  # hangup: Asterisk just closes


async def test_an_asterisk_call_reaches_the_desk_as_transcript_and_hint(tmp_path: Path) -> None:
    wav = espeak_wav("I want to cancel my account today.", tmp_path / "c.wav", rate=8000)
    pcm = read_call_audio(wav).channels["customer"].tobytes()
    s = make_settings(tmp_path)
    async with server(s) as (base, _app), agent(base, SUPERVISOR_TOKEN) as desk:
        await _asterisk(s.platforms.audiosocket.port, pcm)
        await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == str(UID), 90)
        finals = " ".join(e["text"] for e in desk.of_type("transcript") if e["is_final"]).lower()
        assert "cancel" in finals, finals
        assert [h for h in desk.of_type("hint") if h["call_id"] == str(UID)], desk.of_type("signal")
        # a source outside allowed_sources is closed before a byte is read, and recorded
        await _asterisk(s.platforms.audiosocket.port, pcm[:3200], source="127.0.0.2")
        await asyncio.sleep(0.5)
    db = sqlite3.connect(tmp_path / "callcue.db")
    assert db.execute("SELECT platform, ended_at IS NOT NULL, end_reason FROM calls").fetchall() == [("audiosocket", 1, "hangup")]
    rows = db.execute("SELECT platform, close_code, reason FROM ingress_rejections").fetchall()
    assert rows == [("audiosocket", 1008, "source 127.0.0.2 is not in [platforms.audiosocket] allowed_sources")]


async def test_two_audiosocket_legs_with_one_uuid_are_one_call(tmp_path: Path) -> None:
    """AudioSocket on both sides of a Dial (the caller's channel and the agent's), one UUID:
    the first connection is the customer, the second joins the same call as the agent."""
    from tests.conftest import require_shared
    from tests.serverkit import quick_disclosure, real_call

    audio = real_call(require_shared())
    uid = uuid.uuid4()
    s = make_settings(tmp_path, understanding=quick_disclosure(tmp_path))
    port = s.platforms.audiosocket.port

    async def leg(pcm: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(0x01, uid.bytes))
        for i in range(0, len(pcm), 320):
            writer.write(frame(0x10, pcm[i:i + 320]))
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.close()

    async with server(s) as (base, _app):
        async with agent(base, SUPERVISOR_TOKEN) as desk:
            await asyncio.gather(leg(audio.channels["customer"].tobytes(), 0.0), leg(audio.channels["agent"].tobytes(), 0.2))
            await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == str(uid), 90)
            assert len([e for e in desk.of_type("call_started") if e["call_id"] == str(uid)]) == 1
            finals = [e for e in desk.of_type("transcript") if e["is_final"] and e["call_id"] == str(uid)]
            by_ch = {ch: " ".join(f["text"].lower() for f in finals if f["channel"] == ch) for ch in ("customer", "agent")}
            assert "country" in by_ch["customer"] and ("glad" in by_ch["agent"] or "phil" in by_ch["agent"]), by_ch
            assert any("disclosure" in h["title"].lower() for h in desk.of_type("hint") if h["call_id"] == str(uid))
