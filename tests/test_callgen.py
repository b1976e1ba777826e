"""The call generator must produce audio whose timeline is *true*: the latency benchmark
trusts every start/end in it, so these tests check the timeline against the audio itself."""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, require_shared

sys.path.insert(0, str(REPO / "bench"))
import callgen  # noqa: E402

FRAME = 0.010


def _frame_rms(x: np.ndarray, sr: int) -> np.ndarray:
    n = int(sr * FRAME)
    frames = len(x) // n
    f = x[: frames * n].reshape(frames, n).astype(np.float64)
    return np.sqrt(np.mean(f * f, axis=1))


@pytest.fixture(scope="module")
def sgd_call(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    src = require_shared("dialogues", "sgd_banking", "banks1_train.jsonl")
    out = tmp_path_factory.mktemp("call") / "sgd.wav"
    callgen.generate(src, 0, out, sample_rate=8000, stereo=True, seed=7, max_turns=8)
    return out, json.loads(out.with_suffix(".json").read_text())


def test_wav_format_is_telephone_stereo_16bit(sgd_call: tuple[Path, dict]) -> None:
    wav_path, tl = sgd_call
    with wave.open(str(wav_path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        assert abs(w.getnframes() / 8000 - tl["duration"]) < 0.01
    assert tl["channels"] == ["customer", "agent"]
    assert tl["source"]["dataset"] == "sgd_banking" and tl["source"]["dialogue_id"]
    assert len(tl["turns"]) == 8
    # both parties speak in this dialogue
    assert {t["channel"] for t in tl["turns"]} == {"customer", "agent"}


def test_timeline_is_monotonic_and_gaps_are_conversational(sgd_call: tuple[Path, dict]) -> None:
    _, tl = sgd_call
    prev_end = 0.0
    for t in tl["turns"]:
        assert t["start"] < t["end"] <= tl["duration"]
        gap = t["start"] - prev_end
        assert gap >= 0.2 - 1e-3, f"turn {t['index']} overlaps/crowds the previous one ({gap:.3f} s)"
        if t["index"] > 0:
            assert gap <= 1.2 + 1e-3
        prev_end = t["end"]
        words = t["words"]
        assert [w["text"] for w in words] == t["text"].split()
        assert words[0]["start"] == pytest.approx(t["start"], abs=0.02)
        assert words[-1]["end"] == pytest.approx(t["end"], abs=0.02)
        for a, b in zip(words, words[1:]):
            assert a["start"] <= a["end"] <= b["start"] + 1e-3 and b["start"] <= b["end"]


def test_speech_is_in_the_speakers_channel_only(sgd_call: tuple[Path, dict]) -> None:
    wav_path, tl = sgd_call
    pcm, sr = callgen.read_wav(wav_path)
    for t in tl["turns"]:
        a, b = int(t["start"] * sr), int(t["end"] * sr)
        own = 0 if t["channel"] == "customer" else 1
        own_rms = np.sqrt(np.mean(pcm[a:b, own].astype(np.float64) ** 2))
        other_rms = np.sqrt(np.mean(pcm[a:b, 1 - own].astype(np.float64) ** 2))
        assert own_rms > 1000, f"turn {t['index']} is too quiet in its own channel ({own_rms:.0f})"
        assert other_rms < 1.0, f"turn {t['index']} leaks into the other channel ({other_rms:.1f})"


def test_turn_times_match_audio_energy(sgd_call: tuple[Path, dict]) -> None:
    """Speech onsets/offsets found in the audio agree with the timeline within 30 ms,
    and nothing is audible outside the listed turns."""
    wav_path, tl = sgd_call
    pcm, sr = callgen.read_wav(wav_path)
    for c, name in enumerate(tl["channels"]):
        rms = _frame_rms(pcm[:, c], sr)
        active = rms > 30  # about -60 dBFS
        # regions where this channel's timeline says someone talks
        expect = np.zeros_like(active)
        turns = [t for t in tl["turns"] if t["channel"] == name]
        for t in turns:
            expect[int(t["start"] / FRAME) : int(np.ceil(t["end"] / FRAME))] = True
        assert not np.any(active & ~expect), f"{name}: audio outside any turn"
        for t in turns:
            a, b = int(t["start"] / FRAME), int(np.ceil(t["end"] / FRAME))
            idx = np.flatnonzero(active[a:b])
            assert idx.size, f"turn {t['index']} is silent"
            onset, offset = (a + idx[0]) * FRAME, (a + idx[-1] + 1) * FRAME
            assert onset == pytest.approx(t["start"], abs=0.03)
            assert offset == pytest.approx(t["end"], abs=0.03)


def test_word_ends_are_measured_not_spread() -> None:
    """A pause inside a turn must show as a gap between word end and next word start,
    which character-proportional spreading could never produce."""
    utt = callgen.synthesize_utterance("Well. I want to cancel my account.", "en-us+f3", 165, 16000)
    w = utt.words
    assert [x.text for x in w] == ["Well.", "I", "want", "to", "cancel", "my", "account."]
    assert w[1].start - w[0].end > 0.08, "the sentence pause after 'Well.' is missing"
    sr = 16000
    rms = _frame_rms(utt.audio * 32767, sr)
    gap = rms[int(w[0].end / FRAME) + 2 : int(w[1].start / FRAME) - 1]
    # only the decaying tail of "Well." may remain there: 35 dB below the loudest frame
    assert gap.size and gap.max() < rms.max() * 10 ** (-35 / 20)


def test_triggers_on_real_multidogo_dialogue(tmp_path: Path) -> None:
    src = require_shared("dialogues", "multidogo", "finance_dev.jsonl")
    d = callgen.load_dialogue(src, "16185399-3102-47a9-84cc-35c5cb3e09e0")
    call = callgen.render_call(d, sample_rate=8000, stereo=False, seed=1)
    tl = call.timeline
    assert tl["channels"] == ["customer"] and call.pcm.shape[1] == 1
    trig = tl["triggers"]
    assert [t["rule"] for t in trig] == ["cancel_account"]
    turn = tl["turns"][trig[0]["turn_index"]]
    assert "close an account" in turn["text"]
    assert trig[0]["end"] == turn["end"] and turn["start"] < trig[0]["phrase_end"] <= turn["end"]
    # MultiDoGo has no agent turns: the absent replies still take time between customer turns
    starts = [t["start"] - p["end"] for p, t in zip(tl["turns"], tl["turns"][1:])]
    assert min(starts) > 1.5


def test_find_triggers_rules() -> None:
    def tl(*texts: str) -> dict:
        turns = []
        for i, text in enumerate(texts):
            ws = [{"text": w, "start": i + k * 0.1, "end": i + k * 0.1 + 0.05} for k, w in enumerate(text.split())]
            turns.append({"index": i, "channel": "customer", "text": text, "start": i, "end": ws[-1]["end"], "words": ws})
        return {"turns": turns}

    found = callgen.find_triggers(
        tl("I want to cancel my account.", "Can I speak to a manager, please?", "I closed the window", "The manager is nice")
    )
    assert [(t["rule"], t["turn_index"]) for t in found] == [("cancel_account", 0), ("escalation", 1)]
    assert found[0]["phrase_end"] == pytest.approx(0.55)  # "account." is word 5
    agent_only = tl("please cancel my subscription")
    agent_only["turns"][0]["channel"] = "agent"
    assert callgen.find_triggers(agent_only) == []


def test_deterministic_and_mono_keeps_customer_times() -> None:
    d = callgen.Dialogue(
        "test", "t1", [callgen.Turn("customer", "Hello there."), callgen.Turn("agent", "Good morning, how can I help?"),
                       callgen.Turn("customer", "I want to close my account.")], "n/a"
    )
    a = callgen.render_call(d, seed=3)
    b = callgen.render_call(d, seed=3)
    c = callgen.render_call(d, seed=4)
    m = callgen.render_call(d, seed=3, stereo=False, sample_rate=16000)
    assert np.array_equal(a.pcm, b.pcm) and a.timeline == b.timeline
    assert a.timeline["turns"][1]["start"] != c.timeline["turns"][1]["start"]
    for ts, tm in zip(a.timeline["turns"], m.timeline["turns"]):
        assert tm["start"] == pytest.approx(ts["start"], abs=0.002)
    assert np.abs(m.pcm).max() > 0 and m.sample_rate == 16000


def test_bad_input_is_rejected_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dialogue file not found"):
        callgen.load_dialogues(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": 1}\n')
    with pytest.raises(ValueError, match="unrecognized dialogue record"):
        callgen.load_dialogues(bad)
    with pytest.raises(ValueError, match="sample_rate must be 8000 or 16000"):
        callgen.synthesize_utterance("hi", "en-us", 165, 44100)
    with pytest.raises(callgen.SynthesisError, match="no voice"):
        callgen.synthesize_utterance("hi", "xx-nonexistent", 165, 8000)
    src = require_shared("dialogues", "abcd_sample", "conversations.jsonl")
    with pytest.raises(IndexError, match="out of range"):
        callgen.load_dialogue(src, 99)


def test_cli_writes_wav_and_timeline(tmp_path: Path) -> None:
    src = require_shared("dialogues", "abcd_sample", "conversations.jsonl")
    out = tmp_path / "abcd.wav"
    assert callgen.main(["--dialogue", str(src), "--pick", "0", "--out", str(out), "--max-turns", "4", "--rate", "16000"]) == 0
    tl = json.loads(out.with_suffix(".json").read_text())
    assert tl["sample_rate"] == 16000 and tl["source"]["dataset"] == "abcd" and len(tl["turns"]) == 4
    assert callgen.main(["--dialogue", str(src), "--pick", "zzz", "--out", str(out)]) == 2
