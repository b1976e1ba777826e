"""The cards evaluation: its building blocks, and a small real-audio run through Whisper."""

from __future__ import annotations

import random

import pytest
from conftest import require_shared

from callcue.evaluation.cards_eval import (
    FSDD_RATE,
    _load_digits,
    compose,
    format_report,
    leaked_digits,
    luhn_check_digit,
    make_card,
    run_cards_eval,
)
from callcue.privacy.spoken_numbers import luhn_valid


def test_make_card_valid_and_invalid() -> None:
    rng = random.Random(3)
    for _ in range(200):
        good, bad = make_card(rng, True), make_card(rng, False)
        assert len(good) == len(bad) == 16 and good.isdigit() and bad.isdigit()
        assert luhn_valid(good) and not luhn_valid(bad)
    assert luhn_check_digit("411111111111111") == "1"


def test_leak_check_finds_written_and_spoken_runs() -> None:
    number = "4111222233334444"
    assert leaked_digits({"text": "**** **** **** 4444"}, number) == []
    assert leaked_digits({"text": "**** 2222 3333 4444"}, number)  # 12 true digits shown
    assert leaked_digits({"evidence": {"words": ["two two three three three three"]}}, number)
    assert leaked_digits({"a": ["x", {"b": "1-1-1-2-2-2"}]}, number)
    # numbers that are not strings (timestamps) are not transcript content
    assert leaked_digits({"emitted_at": 4111222233.0, "text": "ok"}, number) == []


def test_compose_shapes_a_dictation() -> None:
    data = require_shared("speech", "manifest.jsonl").parents[1]
    speakers = _load_digits(data)
    spk = min(speakers)
    rng = random.Random(0)
    single = compose("4111111111111111", True, False, spk, speakers[spk], rng)
    split = compose("4111111111111111", True, True, spk, speakers[spk], rng)
    dur = lambda c: len(c.pcm8k) / 2 / FSDD_RATE
    assert 4.0 < dur(single) < dur(split) < 25.0  # three long pauses make the split one longer
    assert len(single.pcm8k) % 2 == 0


def test_missing_manifest_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest"):
        run_cards_eval(tmp_path, n=1)
    with pytest.raises(ValueError, match="n must be"):
        run_cards_eval(tmp_path, n=0)


@pytest.mark.slow
def test_real_spoken_cards_through_whisper_and_redactor() -> None:
    data = require_shared("speech", "fsdd_8k").parents[1]
    rep = run_cards_eval(data, n=6, seed=7, partial_interval_s=2.0)
    print(format_report(rep))
    assert rep["leaks"] == 0, format_report(rep)
    assert rep["transcripts"]["finals"] >= 4 and rep["transcripts"]["partials"] > 0
    for c in rep["calls"]:
        if c["asr_exact"] and c["valid"] and not c["split"]:  # split: words between groups may break assembly
            assert c["detected"], "the ASR had every digit right but no card signal was raised"
        if c["asr_exact"] and not c["valid"]:
            assert not c["detected"], "a Luhn-invalid number read correctly must not raise a card signal"
    # floor: Whisper's transcript changes run to run here (the pipeline's streaming resampler
    # sees different chunkings) and tiny.en sometimes loops on digits; of these three valid
    # numbers, at least one has been read correctly (and detected) in every run so far
    detected = sum(c["detected"] for c in rep["calls"] if c["valid"])
    assert detected >= 1, format_report(rep)


def test_visible_true_digits_counts_positions_once() -> None:
    from callcue.evaluation.cards_eval import _visible_true_digits

    number = "4111222233334444"
    assert _visible_true_digits(["**** **** **** 4444"], number) == 4
    assert _visible_true_digits(["4111", "**** / 4444", "4444"], number) == 8
    assert _visible_true_digits(["two two two three"], number) == 4
    assert _visible_true_digits(["12", "*"], number) == 0
