"""Detection must not depend on where the recognizer cuts (pipeline/sentence_views.py).

The live failure this guards: a customer's "... Let me speak to your manager right now." came
out as the third sentence of one final, and the request went unnoticed. Here the customer's
real request from the demo recording is put behind, in front of, and between real read speech
from the shared set, in one breath (one segment) and cut in the middle, and every variant goes
through the whole live pipeline (VAD, Moonshine, redaction, detectors, playbooks)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import REPO, require_shared

from callcue.events import Transcript, Word
from callcue.pipeline.digits_expected import asks_for_digits, digit_run_open
from callcue.pipeline.sentence_views import SentenceViews, is_boundary, split_sentences

RATE = 8000
DEMO = REPO / "server" / "callcue" / "data" / "demo_call.wav"


def test_split_sentences_keeps_abbreviations_and_initials() -> None:
    text = "This is ridiculous. I met Mr. John Smith at 5 p.m. yesterday! Let me speak to your manager right now."
    parts = [text[a:b] for a, b in split_sentences(text)]
    assert parts == ["This is ridiculous.", "I met Mr. John Smith at 5 p.m. yesterday!", "Let me speak to your manager right now."]
    assert split_sentences("no punctuation at all") == [(0, 21)]
    assert split_sentences("") == []


def _t(text: str, seg: int, final: bool, start: float = 0.0, rev: int = 0) -> Transcript:
    words = [Word(w, start + i * 0.3, start + i * 0.3 + 0.25) for i, w in enumerate(text.split())]
    return Transcript("c", "customer", seg, rev, text, final, start, start + 0.3 * len(words), words=words)


def test_views_per_sentence_with_their_own_keys_and_times() -> None:
    v = SentenceViews()
    t = _t("This is ridiculous. Let me speak to your manager.", 3, False)
    views = v.views(t, None)
    assert [x.text for x in views] == ["This is ridiculous.", "Let me speak to your manager."]
    assert len({x.segment_id for x in views}) == 2 and all(x.segment_id < 0 for x in views)
    assert views[1].start == pytest.approx(0.9) and views[1].words[0].text == "Let"
    # the same partial again: nothing new to judge; a grown one: only the sentence that changed
    assert v.views(_t(t.text, 3, False, rev=1), None) == []
    grown = v.views(_t(t.text + " Now.", 3, False, rev=2), None)
    assert [x.text for x in grown] == ["Now."]
    # the final has fewer sentences than a partial had: the lost key is settled on the whole text
    final = v.views(_t("This is ridiculous, let me speak to your manager now.", 3, True), None)
    assert {x.text for x in final} == {"This is ridiculous, let me speak to your manager now."}
    assert len(final) == 4 and final[0].segment_id == 3  # itself, and the three keys partials used
    # a single sentence is judged as itself
    one = _t("Hello there.", 4, True)
    assert v.views(one, None) == [one]


def test_boundary_window_joins_the_last_cut() -> None:
    v = SentenceViews()
    prev = _t("I have waited an hour. Let me speak", 1, True, start=0.0)
    cur = _t("to your manager right now.", 2, True, start=prev.end + 0.4)
    views = v.views(cur, prev)
    assert views[0] is cur and is_boundary(views[1])
    assert views[1].text == "Let me speak to your manager right now."
    far = _t("to your manager right now.", 2, True, start=prev.end + 5.0)
    assert not any(is_boundary(x) for x in SentenceViews().views(far, prev))


def test_digits_expected_cues() -> None:
    assert asks_for_digits("Could I have the last four digits of your card, please?")
    assert asks_for_digits("What's your date of birth?")
    assert asks_for_digits("Can you read me the account number")
    assert not asks_for_digits("How can I help you today?")
    assert not asks_for_digits("I can waive the fee for you.")
    assert digit_run_open("It's 4 5 5 6") and digit_run_open("four five five six,")
    assert digit_run_open("**** **** **** 1234")
    assert not digit_run_open("I have been a customer for 10 years.")


# ----------------------------------------------------------------- through the live pipeline


def _speech(manifest: list[dict], ids: tuple[str, ...]) -> list[np.ndarray]:
    d = require_shared("speech")
    out = []
    for want in ids:
        row = next(r for r in manifest if r["id"] == want)
        audio, rate = sf.read(str(d / row["wav"]), dtype="float32")
        out.append(soxr.resample(audio, rate, RATE))
    return out


def _request() -> np.ndarray:
    """The demo customer's "No, I want to talk to a supervisor right now." (left channel)."""
    audio, rate = sf.read(str(DEMO), dtype="float32")
    assert rate == RATE
    return audio[int(34.5 * RATE) : int(37.9 * RATE), 0]


def _joined(parts: list[np.ndarray], gap_s: float = 0.08) -> np.ndarray:
    """One breath: parts with a pause shorter than the VAD's hangover between them."""
    gap = np.zeros(int(gap_s * RATE), dtype=np.float32)
    out = [np.zeros(int(0.3 * RATE), dtype=np.float32)]
    for p in parts:
        out += [p, gap]
    return np.concatenate([*out, np.zeros(int(1.0 * RATE), dtype=np.float32)])


async def _signals(path: Path, tmp: Path) -> tuple[list[dict], list[str]]:
    from callcue.clients.demo import scratch_settings
    from callcue.clients.replay import replay

    events = await replay(path, scratch_settings(tmp, asr_engine="moonshine"), speed=0, show_partials=False,
                          out=lambda _line: None)  # fmt: skip
    finals = [e["text"] for e in events if e.get("type") == "transcript" and e.get("is_final")]
    return [e for e in events if e.get("type") == "signal" and not e.get("retracted")], finals


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["behind", "in_front", "between", "cut_in_the_middle"])
def test_the_request_is_heard_wherever_it_sits(layout: str, tmp_path: Path, speech_manifest: list[dict]) -> None:
    before, after = _speech(speech_manifest, ("librivox_0880", "aew_a0003"))
    req = _request()
    if layout == "behind":
        audio = _joined([before, req])
    elif layout == "in_front":
        audio = _joined([req, after])
    elif layout == "between":
        audio = _joined([before, req, after])
    else:  # the recognizer's cut falls inside the request: "... I want to talk" | "to a supervisor right now"
        frames = req[: int(2.2 * RATE)].reshape(-1, RATE // 50)[int(1.2 * 50) :]
        cut = int(1.2 * RATE) + int(np.argmin((frames**2).mean(axis=1))) * (RATE // 50)  # between two words
        audio = np.concatenate([_joined([before, req[:cut]]), _joined([req[cut:], after])])
    path = tmp_path / f"{layout}.wav"
    sf.write(str(path), audio, RATE, subtype="PCM_16")
    signals, finals = asyncio.run(_signals(path, tmp_path))
    if layout != "cut_in_the_middle":
        assert sum("supervisor" in f.lower() for f in finals) == 1, finals
    names = {(s.get("kind"), s.get("name")) for s in signals if (s.get("evidence") or {}).get("is_final")}
    assert ("risk", "escalation_request") in names or ("risk", "manager_request") in names, (finals, names)
    assert ("intent", "manager_request") in names, (finals, names)
