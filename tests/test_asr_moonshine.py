"""Moonshine base English (the default engine): its preparation, decoding, partial policy,
digit path and word times, on the package's real model and the shared real recordings."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import require_shared

from callcue.asr import moonshine_model as mm
from callcue.asr.moonshine_engine import MoonshineEngine, MoonshineSettings
from callcue.asr.token_rules import (
    DigitSpelling,
    WordBoost,
    is_digit_reading,
    looping_words,
)
from callcue.asr.word_times import proportional_word_times, quietest_cut
from callcue.evaluation.asr_eval import normalize, single_digit, spoken_digits, wer

RATE = 16000


def _src() -> Path:
    src = mm.shipped_model_dir()
    if mm.shipped_problem(src):
        pytest.skip(f"moonshine-cpp is not installed: {mm.shipped_problem(src)}")
    assert src is not None
    return src


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> mm.PreparedModel:
    return mm.prepare(tmp_path_factory.mktemp("models") / "moonshine-base-en", _src())


@pytest.fixture(scope="module")
def engine(prepared: mm.PreparedModel) -> MoonshineEngine:
    e = MoonshineEngine(prepared, threads=1)
    yield e
    e.close()


def _clip(row: dict, manifest_dir: Path) -> np.ndarray:
    audio, rate = sf.read(str(manifest_dir / row["wav"]), dtype="float32")
    return soxr.resample(audio, rate, RATE) if rate != RATE else audio


def _rows(speech_manifest: list[dict], *sets: str) -> list[dict]:
    return [r for r in speech_manifest if r["set"] in sets]


# ------------------------------------------------------------------ preparation


def test_shipped_files_have_the_layout_the_rewrite_relies_on() -> None:
    """If a new moonshine-cpp release changes how weights are stored, this says how."""
    src = _src()
    for name, chains in (("encoder_model.ort", 51), ("decoder_model_merged.ort", 81)):
        model = mm.ort_to_onnx(src / name)
        assert mm.layout_problem(model) is None, name
        found, _ = mm._find_chains(model.graph)
        assert len(found) == chains, (name, len(found))
    assert [t.decode() for t in mm.load_tokenizer(src / "tokenizer.bin")[:3]] == ["<unk>", "<s>", "</s>"]


def test_prepare_once_checksummed_and_redone_when_corrupt(tmp_path: Path) -> None:
    src = _src()
    said: list[str] = []
    dst = tmp_path / "m"
    p = mm.prepare(dst, src, progress=said.append)
    assert said and "preparing Moonshine" in said[0] and "prepared in" in said[-1]
    manifest = json.loads((dst / mm.MANIFEST).read_text())
    assert manifest["rewrite"]["decoder.onnx"]["matmul_int8"] > 100 and manifest["rewrite"]["encoder.onnx"]["folded_float"] == 3
    assert p.decoder.stat().st_size < 0.75 * (src / "decoder_model_merged.ort").stat().st_size * 2  # int8 stays int8
    before = p.decoder.stat().st_mtime_ns
    said.clear()
    mm.prepare(dst, src, progress=said.append)
    assert said == [] and p.decoder.stat().st_mtime_ns == before  # cached: not made again
    with p.decoder.open("r+b") as f:  # a flipped byte on disk
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    assert "does not match its checksum" in (mm.verify_prepared(dst) or "")
    mm.prepare(dst, src, progress=said.append)
    assert said and mm.verify_prepared(dst) is None
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".moonshine-")]  # no half-made folders left


def test_missing_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mm, "shipped_model_dir", lambda: None)
    with pytest.raises(mm.MoonshineUnavailable, match="moonshine-cpp is not installed.*pip install moonshine-cpp"):
        mm.prepare(tmp_path / "m")
    with pytest.raises(mm.MoonshineUnavailable, match="lacks encoder_model.ort"):
        mm.prepare(tmp_path / "m", src=tmp_path)


@pytest.mark.slow
def test_prepared_and_shipped_files_transcribe_the_same(prepared: mm.PreparedModel, engine: MoonshineEngine,
                                                        speech_manifest: list[dict]) -> None:  # fmt: skip
    """The rewrite changes how weights are multiplied, not what the model says."""
    src = _src()
    shipped = MoonshineEngine(mm.PreparedModel(src, src / "encoder_model.ort", src / "decoder_model_merged.ort",
                                               src / "tokenizer.bin", src), threads=1)  # fmt: skip
    try:
        d = require_shared("speech")
        for row in [r for r in speech_manifest if r["id"] in ("cards_005", "goforward", "aew_a0003")]:
            audio = _clip(row, d)
            assert engine.transcribe(audio).text == shipped.transcribe(audio).text, row["id"]
    finally:
        shipped.close()


# ------------------------------------------------------------------ decoding


@pytest.mark.slow
def test_word_error_rate_on_the_shared_clips(engine: MoonshineEngine, speech_manifest: list[dict]) -> None:
    d = require_shared("speech")
    for sets, limit in ((("pocketsphinx", "cmu_arctic", "jfk", "vosk_example"), 0.08), (("telephone_sim",), 0.08)):
        rows = _rows(speech_manifest, *sets)
        hyps = [engine.transcribe(_clip(r, d)).text for r in rows]
        assert wer([r["text"] for r in rows], hyps) <= limit, list(zip([r["text"] for r in rows], hyps))


def test_never_ends_on_the_first_token_and_pads_short_audio(engine: MoonshineEngine, speech_manifest: list[dict]) -> None:
    """A spoken digit string came out empty without the first-token rule (the note)."""
    d = require_shared("speech")
    row = next(r for r in speech_manifest if r["set"] == "vosk_example")
    assert spoken_digits(engine.transcribe(_clip(row, d)).text) == spoken_digits(normalize(row["text"]).replace("zero", "0"))
    short = next(r for r in speech_manifest if r["set"] == "fsdd_8k" and r["duration_s"] < 0.5)
    assert engine.transcribe(_clip(short, d)).text.strip()  # padded to 1 s: never empty


def test_loop_guard() -> None:
    assert looping_words("And so my fellow Americans and so my fellow Americans") == 5
    assert looping_words("And so my fellow Americans and so my fellow Americans", seconds=2.0) == 5
    said_twice = "I want to cancel my account. I want to cancel my account."
    assert looping_words(said_twice, seconds=4.0) == 0  # a person repeating themselves at a speaking pace
    assert looping_words("4242 4242 4242 4242") == 0  # a card number is not a loop
    assert looping_words("I want to cancel my account") == 0
    assert looping_words("yes yes") == 0


def test_a_long_segment_is_decoded_in_bounded_pieces(engine: MoonshineEngine, speech_manifest: list[dict],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Every partial decodes at most about `commit_after_s` of audio, however long the segment
    runs; the final joins the committed pieces; word times rise and stay inside the segment."""
    d = require_shared("speech")
    rows = _rows(speech_manifest, "pocketsphinx")[5:11]  # read prose, ~27 s together
    audio = np.concatenate([_clip(r, d) for r in rows])
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    sizes: list[tuple[str, float]] = []
    real = engine.decode

    def spy(a: np.ndarray, **kw: object) -> object:
        sizes.append((str(kw.get("kind")), len(a) / RATE))
        return real(a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "decode", spy)
    stream = engine.open_stream()
    partials = []
    for i in range(0, len(pcm), 320):
        partials += stream.accept(pcm[i : i + 320].tobytes())
    final = stream.end_segment()[0]
    s = engine.settings
    partial_sizes = [x for k, x in sizes if k == "partial"]
    assert len(partial_sizes) > 20 and max(partial_sizes) <= s.commit_after_s + s.partial_interval_s + 0.05
    assert sum(1 for k, _ in sizes if k == "final") >= 3  # committed pieces plus the last
    assert wer([" ".join(r["text"] for r in rows)], [final.text]) < 0.15, final.text
    starts = [w.start for w in final.words]
    assert starts == sorted(starts) and starts[0] >= 0 and final.words[-1].end <= len(audio) / RATE + 0.01
    assert len(final.words) == len(final.text.split())
    assert partials[-1].text.split()[:5] == final.text.split()[:5]


def test_quietest_cut_and_proportional_times() -> None:
    t = np.arange(int(3 * RATE)) / RATE
    audio = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    audio[int(1.0 * RATE) : int(2.0 * RATE)] = 0.0
    assert abs(quietest_cut(audio, 0.5, 2.8) / RATE - 1.5) < 0.45
    audio[int(1.9 * RATE) : int(2.0 * RATE)] = 0.0
    times = proportional_word_times(["hello", "there"], audio)
    assert times[0][0] < times[0][1] <= times[1][0] < times[1][1]
    assert times[0][1] <= 1.01 and times[1][0] >= 1.99  # the pause takes no share: the second word starts after it


# ------------------------------------------------------------------ digits


def test_digit_spelling_follows_number_words_in_pieces(engine: MoonshineEngine) -> None:
    sp = DigitSpelling(engine.token_texts())
    eight = engine.encode_words(" Eight")
    assert len(eight) == 2  # "Eight" is two tokens: why a token mask cannot do this
    state = ""
    for tok in eight:
        state = sp.step(state, tok)
        assert state is not None
    assert sp.may_end(state)
    assert sp.step("", engine.encode_words(" L")[0]) is None
    state = ""
    for tok in engine.encode_words(" 4"):
        state = sp.step(state, tok)
    assert state == "4"
    assert is_digit_reading("Four, five, 6.") and not is_digit_reading("Four queen of clubs")


@pytest.mark.slow
def test_expected_digits_are_read_as_digits(engine: MoonshineEngine, speech_manifest: list[dict]) -> None:
    """Where the conversation expects digits, isolated digits read right more often, and a
    short reply that is no digit ("Hold on", "Okay") is left as it was said."""
    d = require_shared("speech")
    rows = [r for r in speech_manifest if r["set"] == "fsdd_8k"]
    rows = rows[:: max(1, len(rows) // 60)][:60]
    free = expected = 0
    for r in rows:
        audio = _clip(r, d)
        want = single_digit(r["text"])
        reading = engine.transcribe(audio)
        free += spoken_digits(reading.text) == want
        expected += spoken_digits(engine.read_digits(audio, reading).text) == want
    assert expected >= free + 4 and expected / len(rows) >= 0.75, (free, expected, len(rows))
    jfk = next(r for r in speech_manifest if r["set"] == "jfk")
    audio = _clip(jfk, d)
    reading = engine.transcribe(audio)
    assert engine.read_digits(audio, reading).text == reading.text  # speech that holds no digits stays


def test_word_boost_finishes_domain_words(engine: MoonshineEngine) -> None:
    boost = WordBoost(engine.token_texts(), ["supervisor"])
    visor = engine.encode_words(" supervisor")[1]
    assert visor in boost.continuations("super").tolist()
    assert boost.continuations("cat").size == 0 and boost.continuations("supervisor").size == 0
    assert boost.next_word("super", visor) == "supervisor"
    assert not WordBoost(engine.token_texts(), [])


def test_decode_queue_serves_finals_first(prepared: mm.PreparedModel) -> None:
    """Two channels at once on one worker: a final queued behind a partial goes first."""
    import threading

    e = MoonshineEngine(prepared, threads=1, settings=MoonshineSettings())
    try:
        order: list[str] = []
        real = e.transcribe

        def slow(audio: np.ndarray, prefix: object = (), digits: bool = False) -> object:
            time.sleep(0.05)
            out = real(audio)
            order.append(f"{len(audio)}")
            return out

        e.transcribe = slow  # type: ignore[method-assign]
        a = np.zeros(RATE, dtype=np.float32)
        blocker = threading.Thread(target=e.decode, args=(a,), kwargs={"kind": "partial"})
        blocker.start()
        time.sleep(0.01)
        late_partial = threading.Thread(target=e.decode, args=(np.zeros(RATE + 1, dtype=np.float32),), kwargs={"kind": "partial"})
        final = threading.Thread(target=e.decode, args=(np.zeros(RATE + 2, dtype=np.float32),), kwargs={"kind": "final"})
        late_partial.start()
        time.sleep(0.01)
        final.start()
        for t in (blocker, late_partial, final):
            t.join(10)
        assert order == [str(RATE), str(RATE + 2), str(RATE + 1)]
    finally:
        e.close()


def test_models_dir_env_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCUE_MODELS_DIR", str(tmp_path))
    assert mm.default_cache_dir() == tmp_path / "moonshine-base-en"
    assert os.environ["CALLCUE_MODELS_DIR"] == str(tmp_path)


def test_partial_step_adapts_to_the_decode_queue(engine: MoonshineEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle decoders: partials twice as often; each queued job per worker adds a step; at most
    twice as long as configured."""
    base = engine.settings.partial_interval_s
    for pending, factor in ((0, 0.5), (engine.num_workers, 1.5), (50, 2.0)):
        monkeypatch.setattr(engine.queue, "pending", lambda p=pending: p)
        assert engine.partial_step_s() == pytest.approx(base * factor)
    fixed = MoonshineEngine(engine.prepared, threads=1, settings=MoonshineSettings(adaptive_step=1.0))
    try:
        assert fixed.partial_step_s() == fixed.settings.partial_interval_s
    finally:
        fixed.close()
