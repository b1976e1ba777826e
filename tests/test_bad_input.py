"""Bad input gets a precise close code, is recorded, and never disturbs other calls.

A good call streams throughout; each bad connection is opened alongside it. At the end the
good call's transcript must be complete and every rejection must be in the database.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from callcue.clients.audio_file import read_call_audio
from callcue.clients.twilio_stream import (
    TwilioMessages,
    connect_native,
    connect_twilio,
    stream_call,
)
from callcue.platforms.native import encode_audio_frame
from tests.conftest import require_shared
from tests.serverkit import agent, make_settings, server

pytestmark = pytest.mark.slow

NATIVE_START = {"type": "start", "call_id": "bad-native", "agent_id": "agent-1", "channels": ["customer"],
                "encoding": "PCMU", "sample_rate": 8000}


def twilio_start(msgs: TwilioMessages) -> list[str]:
    return [msgs.connected(), msgs.start(["inbound"])]


def _cases() -> list[tuple[str, str, list[object], int, str]]:
    m = TwilioMessages(agent_id="agent-1")
    media_bad_b64 = json.loads(TwilioMessages().media("inbound", 0, b"\xff" * 160))
    media_bad_b64["media"]["payload"] = "!!!not base64!!!"
    media_bad_b64["streamSid"] = m.stream_sid
    wrong_format = json.loads(m.start(["inbound"]))
    wrong_format["start"]["mediaFormat"]["encoding"] = "audio/opus"
    m2 = TwilioMessages(agent_id="agent-1")
    return [
        ("twilio", "malformed JSON", [m.connected(), "{not json"], 1007, "JSON"),
        ("twilio", "bad base64", [*twilio_start(m), json.dumps(media_bad_b64)], 1007, "base64"),
        ("twilio", "media before start", [m2.connected(), m2.media("inbound", 0, b"\xff" * 160)], 1008, "start"),
        ("twilio", "unsupported codec", [m.connected(), json.dumps(wrong_format)], 1003, "audio/opus"),
        ("twilio", "oversized frame", [m.connected(), json.dumps({"event": "media", "pad": "x" * 70_000})], 1009, "limit"),
        ("twilio", "binary frame", [m.connected(), b"\x00\x01"], 1003, "binary"),
        ("native", "unknown type", [json.dumps({"type": "hello"})], 1007, "type"),
        ("native", "unsupported encoding", [json.dumps({**NATIVE_START, "encoding": "OPUS"})], 1003, "encoding"),
        ("native", "unsupported rate", [json.dumps({**NATIVE_START, "sample_rate": 44100})], 1003, "sample_rate"),
        ("native", "audio before start", [encode_audio_frame(0, b"\xff" * 160)], 1008, "start"),
        ("native", "unknown channel", [json.dumps(NATIVE_START), b"\x05" + b"\xff" * 160], 1007, "channel"),
    ]


async def _bad_connection(base: str, platform: str, frames: list[object]) -> tuple[int | None, str]:
    # an authenticated peer sending bad frames (refused credentials are tested apart)
    dial = connect_twilio if platform == "twilio" else connect_native
    async with dial(f"{base}/ws/{platform}", max_size=None) as ws:
        try:
            for f in frames:
                await ws.send(f)  # type: ignore[arg-type]
        except Exception:
            pass
        await asyncio.wait_for(ws.wait_closed(), 10)
        return ws.close_code, ws.close_reason


async def test_each_bad_input_closes_precisely_and_the_good_call_survives(tmp_path: Path) -> None:
    wav = require_shared("speech", "telephone_sim", "jfk__jfk.wav")
    s = make_settings(tmp_path)
    cases = _cases()
    async with server(s) as (base, app), agent(base) as desk:
        good = TwilioMessages(agent_id="agent-1")
        async with connect_twilio(f"{base}/ws/twilio") as tw:
            streaming = asyncio.create_task(stream_call(tw, read_call_audio(wav), good, speed=1.5))
            results = []
            for platform, name, frames, code, words in cases:
                got = await _bad_connection(base, platform, frames)
                results.append((name, got))
                assert got[0] == code, f"{name}: expected close {code}, got {got}"
                assert words.lower() in got[1].lower(), f"{name}: reason {got[1]!r} should mention {words!r}"
            await streaming
            await tw.wait_closed()
        await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == good.call_sid, 60)
        text = " ".join(e["text"] for e in desk.of_type("transcript") if e["is_final"]).lower()
        assert "country" in text and "ask not" in text, text
    db = sqlite3.connect(tmp_path / "callcue.db")
    rows = db.execute("SELECT platform, close_code, reason FROM ingress_rejections ORDER BY id").fetchall()
    assert [(p, c) for p, c, _ in rows] == [(p, c) for p, _, _, c, _ in cases]


async def test_unknown_call_and_duplicate_call_are_refused(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    async with server(s) as (base, app):
        async with connect_native(f"{base}/ws/native") as first:
            await first.send(json.dumps({**NATIVE_START, "call_id": "dup-1"}))
            await asyncio.sleep(0.2)
            code, reason = await _bad_connection(base, "native", [json.dumps({**NATIVE_START, "call_id": "dup-1"})])
            assert code == 1008 and "already streaming" in reason
            # the first call is unaffected and can still stream and stop cleanly
            await first.send(encode_audio_frame(0, b"\xff" * 800))
            await first.send(json.dumps({"type": "stop"}))
            await first.wait_closed()
            assert first.close_code == 1000
        # a Twilio media frame whose streamSid is not the stream that was started
        m = TwilioMessages(agent_id="agent-1")
        other = json.loads(TwilioMessages().media("inbound", 0, b"\xff" * 160))
        code, reason = await _bad_connection(base, "twilio", [*twilio_start(m), json.dumps(other)])
        assert code == 1008 and "streamsid" in reason.lower()
