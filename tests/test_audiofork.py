"""FreeSWITCH mod_audio_fork and jambonz listen: metadata frame, then L16 mono/stereo/mixed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

from callcue.clients.audio_file import read_call_audio
from callcue.platforms.audiofork import AudioForkProtocol
from callcue.platforms.base import AudioIn, CallStart, CallStop, ProtocolError
from tests.serverkit import SUPERVISOR_TOKEN, agent, espeak_wav, make_settings, server


def test_jambonz_stereo_is_split_into_customer_and_agent() -> None:
    p = AudioForkProtocol()
    [start] = p.receive_text(json.dumps({"callSid": "js-1", "sampleRate": 16000, "mixType": "stereo", "from": "+1555"}))
    assert isinstance(start, CallStart) and start.channels == ("customer", "agent") and start.sample_rate == 16000
    inter = np.array([[1, -1], [2, -2], [3, -3]], dtype="<i2").tobytes()
    cust, agt = p.receive_bytes(inter)
    assert isinstance(cust, AudioIn) and np.frombuffer(cust.payload, "<i2").tolist() == [1, 2, 3]
    assert agt.channel == "agent" and np.frombuffer(agt.payload, "<i2").tolist() == [-1, -2, -3]
    assert isinstance(p.receive_eof()[0], CallStop)


def test_mod_audio_fork_metadata_without_rate_uses_the_configured_defaults() -> None:
    p = AudioForkProtocol(default_rate=16000, default_mix="mixed")
    [start] = p.receive_text(json.dumps({"uuid": "fs-uuid-1", "agent_id": "agent-1"}))
    assert (start.call_id, start.sample_rate, start.channels, start.agent_id) == ("fs-uuid-1", 16000, ("customer",), "agent-1")


@pytest.mark.parametrize(("frames", "code", "words"), [
    ([b"\x00\x00"], 1008, "before the metadata"),
    (['{"callSid": "x", "sampleRate": 11025}'], 1003, "sampleRate"),
    (['{"callSid": "x", "mixType": "quad"}'], 1003, "mixType"),
    (['{"sampleRate": 8000}'], 1007, "callSid"),
    (['{"callSid": "x", "mixType": "stereo"}', b"\x00\x00"], 1007, "pairs"),
    (['{"callSid": "x"}', '{"callSid": "y"}'], 1008, "first frame"),
])
def test_bad_streams_are_refused_precisely(frames: list, code: int, words: str) -> None:
    p = AudioForkProtocol()
    with pytest.raises(ProtocolError) as ei:
        for f in frames:
            p.receive_text(f) if isinstance(f, str) else p.receive_bytes(f)
    assert ei.value.close_code == code and words in ei.value.reason


async def test_a_jambonz_listen_call_reaches_the_desk_and_a_wrong_secret_does_not(tmp_path: Path) -> None:
    cust = read_call_audio(espeak_wav("I want to cancel my account today.", tmp_path / "c.wav", rate=8000)).channels["customer"]
    agt = read_call_audio(espeak_wav("Thank you for calling.", tmp_path / "a.wav", rate=8000)).channels["customer"]
    n = max(len(cust), len(agt))
    stereo = np.zeros((n, 2), dtype="<i2")
    stereo[: len(cust), 0], stereo[: len(agt), 1] = cust, agt
    pcm = stereo.tobytes()
    s = make_settings(tmp_path)
    async with server(s) as (base, _app):
        async with agent(base, SUPERVISOR_TOKEN) as desk:
            url = f"{base}/ws/audiofork?secret=demo-audiofork-secret"
            async with connect(url, subprotocols=["audio.jambonz.org"]) as ws:  # type: ignore[list-item]
                assert ws.subprotocol == "audio.jambonz.org"
                await ws.send(json.dumps({"callSid": "jz-1", "sampleRate": 8000, "mixType": "stereo", "direction": "inbound"}))
                for i in range(0, len(pcm), 640):  # 20 ms of stereo at 8 kHz
                    await ws.send(pcm[i:i + 640])
                    await asyncio.sleep(0.004)
            await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == "jz-1", 90)
            finals = {e["channel"]: e["text"].lower() for e in desk.of_type("transcript") if e["is_final"]}
            assert "cancel" in finals.get("customer", "") and "thank" in finals.get("agent", ""), finals
            assert [h for h in desk.of_type("hint") if h["call_id"] == "jz-1"]
            async with connect(f"{base}/ws/audiofork?secret=guess", subprotocols=["audio.drachtio.org"]) as ws:  # type: ignore[list-item]
                await asyncio.wait_for(ws.wait_closed(), 10)
                assert ws.close_code == 1008 and "secret" in ws.close_reason


async def test_the_secret_may_come_in_the_metadata_frame(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    async with server(s) as (base, _app), agent(base, SUPERVISOR_TOKEN) as desk:
        async with connect(f"{base}/ws/audiofork", subprotocols=["audio.jambonz.org"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"callSid": "jz-meta-1", "sampleRate": 8000, "secret": "demo-audiofork-secret"}))
            await ws.send(b"\x00\x00" * 160)
            started = await desk.wait_for(lambda e: e.get("type") == "call_started" and e["call_id"] == "jz-meta-1", 20)
            assert "secret" not in json.dumps(started)
        async with connect(f"{base}/ws/audiofork", subprotocols=["audio.jambonz.org"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"callSid": "jz-meta-2", "sampleRate": 8000, "secret": "guess"}))
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1008 and "secret" in ws.close_reason
        async with connect(f"{base}/ws/audiofork", subprotocols=["audio.jambonz.org"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"callSid": "jz-meta-3", "sampleRate": 8000}))
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1008
        assert not [e for e in desk.of_type("call_started") if e["call_id"] in ("jz-meta-2", "jz-meta-3")]


async def test_a_real_recording_over_mod_audio_fork_gives_transcript_and_hint(tmp_path: Path) -> None:
    """FreeSWITCH `uuid_audio_fork ... stereo 8k {"agent_id": ...}`: the metadata frame carries
    only what the command was given, rate and mix come from the config."""
    from tests.conftest import require_shared
    from tests.serverkit import quick_disclosure, real_call

    audio = real_call(require_shared())
    stereo = np.stack([audio.channels["customer"], audio.channels["agent"]], axis=1).astype("<i2").tobytes()
    s = make_settings(tmp_path, understanding=quick_disclosure(tmp_path))
    async with server(s) as (base, _app), agent(base, SUPERVISOR_TOKEN) as desk:
        uuid_ = "8a5ec3b2-7f0e-4c55-9d3c-0b7e2f1a6c11"
        async with connect(f"{base}/ws/audiofork?secret=demo-audiofork-secret",
                           subprotocols=["audio.drachtio.org"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"uuid": uuid_, "agent_id": "agent-1", "mixType": "stereo"}))
            for i in range(0, len(stereo), 640):
                await ws.send(stereo[i:i + 640])
                if i % 2560 == 0:
                    await asyncio.sleep(0.02)  # 4x real time
        await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == uuid_, 90)
        finals = [e for e in desk.of_type("transcript") if e["is_final"] and e["call_id"] == uuid_]
        by_ch = {ch: " ".join(f["text"].lower() for f in finals if f["channel"] == ch) for ch in ("customer", "agent")}
        assert "country" in by_ch["customer"] and ("glad" in by_ch["agent"] or "phil" in by_ch["agent"]), by_ch
        assert any("disclosure" in h["title"].lower() for h in desk.of_type("hint") if h["call_id"] == uuid_)
