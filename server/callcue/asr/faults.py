"""An opt-in fault hook for the fault benchmark: a recognizer whose decoding raises now and
then, so `bench/faults.py` can prove a decoder thread failing costs one batch of one call and
nothing else. Off unless `CALLCUE_FAULT_DECODER_RAISE_EVERY=N` is set (then every Nth accept
raises); the server logs a warning at start when it is on. Never set it in production.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading

from callcue.asr.base import AsrEngine, AsrHypothesis, RecognizerStream

log = logging.getLogger(__name__)
ENV = "CALLCUE_FAULT_DECODER_RAISE_EVERY"


class InjectedDecoderFault(RuntimeError):
    pass


class _FaultyStream(RecognizerStream):
    def __init__(self, inner: RecognizerStream, tick: itertools.count, every: int, lock: threading.Lock) -> None:
        self._inner, self._tick, self._every, self._lock = inner, tick, every, lock
        self.partial_is_costly = inner.partial_is_costly

    def begin_segment(self) -> None:
        self._inner.begin_segment()

    def accept(self, pcm: bytes, allow_partial: bool = True) -> list[AsrHypothesis]:
        with self._lock:
            n = next(self._tick)
        if n % self._every == self._every - 1:
            log.warning("injected decoder fault (%s=%d)", ENV, self._every)
            raise InjectedDecoderFault("injected decoder fault")
        self._forward_hints()
        return self._inner.accept(pcm, allow_partial)

    def end_segment(self) -> list[AsrHypothesis]:
        self._forward_hints()
        return self._inner.end_segment()

    def _forward_hints(self) -> None:
        self._inner.priority, self._inner.expect_digits = self.priority, self.expect_digits

    def close(self) -> None:
        self._inner.close()


class FaultyEngine(AsrEngine):
    def __init__(self, inner: AsrEngine, every: int) -> None:
        self.inner, self.every = inner, every
        self.name, self.model_name, self.sample_rate = inner.name, inner.model_name, inner.sample_rate
        self._tick = itertools.count()
        self._lock = threading.Lock()

    def open_stream(self) -> RecognizerStream:
        return _FaultyStream(self.inner.open_stream(), self._tick, self.every, self._lock)

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "injected_faults_every": self.every}

    @property
    def stream_threads(self) -> int:
        return self.inner.stream_threads

    def close(self) -> None:
        self.inner.close()


def with_injected_faults(engine: AsrEngine) -> AsrEngine:
    every = int(os.environ.get(ENV, "0") or 0)
    if every <= 0:
        return engine
    log.warning("fault injection on: every %dth decoder call raises (%s)", every, ENV)
    return FaultyEngine(engine, every)
