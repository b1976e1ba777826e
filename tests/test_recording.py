"""Recordings: both parties recorded, a card number read aloud silenced before the audio is
written (checked by recognising the stored audio), sealed so the file is not audio without
the key, played back with byte ranges to allowed roles only, and in the access log."""

from __future__ import annotations

import base64
import io
import re
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from callcue.pipeline.recorder import CallRecorder
from callcue.privacy.envelope import KeyError_, KeyRing
from callcue.store.recordings import RecordingStore

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
CARD = "4111111111111111"


def _ring() -> KeyRing:
    return KeyRing.from_secrets([base64.b64encode(secrets.token_bytes(32)).decode()])


def test_sealed_chunks_round_trip_and_are_not_audio_without_the_key(tmp_path: Path) -> None:
    ring = _ring()
    store = RecordingStore(tmp_path, ring)
    w = store.writer("CA-1", 16000, ["customer", "agent"])
    tone = (np.sin(np.arange(16000 * 2) / 10) * 8000).astype(np.int16)
    w.write(np.stack([tone, tone // 2], axis=1))
    w.write(np.stack([tone, tone], axis=1))
    audio, rate, ch = store.read("CA-1")
    assert rate == 16000 and ch == ["customer", "agent"] and audio.shape == (64000, 2)
    assert np.array_equal(audio[:32000, 0], tone)
    raw = store.path("CA-1").read_bytes()
    assert b"fLaC" not in raw and b"RIFF" not in raw
    with pytest.raises(RuntimeError):  # libsndfile: not a sound file
        sf.read(io.BytesIO(raw))
    with pytest.raises(KeyError_, match="unknown key"):
        RecordingStore(tmp_path, _ring()).read("CA-1")
    # rotation: data keys re-wrapped under a new KEK; the old one can go
    new = KeyRing.from_secrets([base64.b64encode(secrets.token_bytes(32)).decode()])
    both = KeyRing({**new.keys, **ring.keys}, new.current)
    store.keys = both
    assert store.rewrap(new) == 1
    assert RecordingStore(tmp_path, new).read("CA-1")[0].shape == (64000, 2)
    flac = store.as_flac("CA-1")
    assert flac[:4] == b"fLaC" and sf.read(io.BytesIO(flac))[0].shape == (64000, 2)
    assert store.erase("CA-1") and not store.exists("CA-1")


def test_the_recorder_silences_held_audio_and_pauses(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path, _ring())
    rec = CallRecorder(store.writer("CA-2", 8000, ["customer", "agent"]), ["customer", "agent"], 8000, hold_s=10,
                       unredacted=store.writer("CA-2", 8000, ["customer", "agent"], "unredacted"))  # fmt: skip
    loud = (np.ones(800) * 5000).astype(np.int16).tobytes()  # 0.1 s
    for i in range(161):  # 16.1 s on both channels: the first 6.1 s are written
        rec.audio("customer", i / 10, loud)
        rec.audio("agent", i / 10, loud)
    assert rec.silence(8.0, 9.0, ["customer"])  # still held: silenced before written
    assert not rec.silence(1.0, 2.0, ["customer"])  # already written: said so
    rec.pause(True)
    for i in range(161, 181):
        rec.audio("customer", i / 10, loud)
    rec.pause(False)
    rec.close()
    audio, rate, _ = store.read("CA-2")
    cust = audio[:, 0].astype(np.int32)
    assert np.all(cust[int(8.0 * rate): int(9.0 * rate)] == 0) and np.all(cust[int(10 * rate): int(14 * rate)] == 5000)
    assert np.all(cust[int(16.15 * rate): int(17.9 * rate)] == 0)  # paused: silence, the clock kept
    assert np.all(cust[int(1.3 * rate): int(1.7 * rate)] == 5000)  # too late to silence, and reported
    # the unredacted copy: nothing silenced but the pause, the same clock
    raw, _, _ = store.read("CA-2", "unredacted")
    raw_c = raw[:, 0].astype(np.int32)
    assert len(raw) == len(audio) and np.all(raw_c[int(8.0 * rate): int(9.0 * rate)] == 5000)
    assert np.all(raw_c[int(16.15 * rate): int(17.9 * rate)] == 0)
    assert store.erase("CA-2") and not store.exists("CA-2") and not store.exists("CA-2", "unredacted")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_card_number_read_aloud_is_not_in_the_stored_recording(tmp_path: Path, backend: str) -> None:
    """espeak-ng reads a card number on the customer channel; the call goes through the
    server (Moonshine); the stored recording is recognised again: none of the card's digits
    are in it, while the words around them are."""
    import callgen
    from serverkit import make_settings

    from callcue.asr.select import load_engine
    from callcue.clients.replay import replay
    from callcue.evaluation.asr_eval import decode_clip
    from callcue.wiring import open_recordings

    dialogue = callgen.Dialogue("callcue-test", "card", [
        callgen.Turn("agent", "Thank you for calling. Can I have the card number please?"),
        callgen.Turn("customer", "Yes, my card number is 4111 1111 1111 1111."),
        callgen.Turn("agent", "Thank you. And the three digit security code on the back?"),
        callgen.Turn("customer", "It is 7 3 9."),
        callgen.Turn("agent", "Thanks, that payment is done. Anything else today?"),
        callgen.Turn("customer", "No, that is all, goodbye."),
    ], "Apache-2.0 (written for CallCue)")  # fmt: skip
    call = callgen.render_call(dialogue, sample_rate=8000, stereo=True, seed=3)
    wav = tmp_path / "card.wav"
    callgen.save_call(call, wav)
    from pg import backend_url

    sections: dict = {"recording": {"dir": str(tmp_path / "recordings")}}
    if url := backend_url(backend):
        sections["storage"] = {"url": url}
    settings = make_settings(tmp_path, **sections)
    events = await replay(wav, settings, speed=0, show_partials=False)
    finals = " ".join(e["text"] for e in events if e.get("type") == "transcript" and e["channel"] == "customer")
    assert "card number" in finals.lower() and not re.search(r"\d{5,}", finals.replace(" ", ""))
    call_id = next(e["call_id"] for e in events if e.get("type") == "call_started")
    store = open_recordings(settings)
    assert store is not None
    audio, rate, channels = store.read(call_id)
    assert channels == ["customer", "agent"] and abs(len(audio) / rate - call.pcm.shape[0] / 8000) < 2.0
    # recognise the stored customer channel again, raw (no redaction), expecting digits
    engine, _ = load_engine(settings.asr)
    with ThreadPoolExecutor(2) as pool:
        heard = await decode_clip(engine, audio[:, 0].astype(np.int16).tobytes(), rate, pool, settings.vad, expect_digits=True)
    text = heard.text.lower()
    words = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
             "seven": "7", "eight": "8", "nine": "9"}  # fmt: skip
    digits = "".join(words.get(w, "".join(c for c in w if c.isdigit())) for w in re.findall(r"[a-z]+|\d+", text))
    assert "1111" not in digits and "4111" not in digits and "739" not in digits, text
    assert len(text.split()) >= 3, text  # the rest of the customer's side is there (the goodbye)
