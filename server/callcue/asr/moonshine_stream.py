"""One channel's open segment for Moonshine: committed pieces plus a bounded open tail.

Why pieces: Moonshine's encoder is not incremental, so a partial re-encodes all it decodes.
Once the open audio passes `commit_after_s`, the audio up to its quietest 200 ms is decoded
once and its text committed; partials decode only what follows, so no partial costs more than
about `commit_after_s` of audio however long the segment runs, and the final decodes only the
last piece (docs/asr.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from callcue.asr.base import AsrHypothesis, AsrWord, RecognizerStream
from callcue.asr.whisper_engine import agreed_prefix
from callcue.asr.word_times import RATE, proportional_word_times, quietest_cut

if TYPE_CHECKING:
    from callcue.asr.moonshine_engine import Decoded, MoonshineEngine

#: segments shorter than this are VAD blips: no decode at all
MIN_DECODE_S = 0.2

@dataclass(slots=True)
class _Piece:
    start: int  # samples from the segment start
    end: int
    decoded: Decoded


class MoonshineStream(RecognizerStream):
    """One channel's open segment, decoded as committed pieces plus a bounded open tail."""

    partial_is_costly = True

    def __init__(self, engine: MoonshineEngine) -> None:
        self._engine = engine
        self._buf = bytearray()
        self.begin_segment()

    def begin_segment(self) -> None:
        self._buf.clear()
        self._pieces: list[_Piece] = []
        self._committed = 0  # samples
        self._at_last_partial = 0
        self._previous: Decoded | None = None  # the last partial of the open tail
        self._before: Decoded | None = None  # the one before it
        self._previous_words: list[str] = []
        self._waiting_since: float | None = None

    @property
    def _samples(self) -> int:
        return len(self._buf) // 2

    def _audio(self, start: int = 0, end: int | None = None) -> np.ndarray:
        end = self._samples if end is None else end
        return np.frombuffer(self._buf, dtype=np.int16, count=end - start, offset=2 * start).astype(np.float32) / 32768.0

    def accept(self, pcm: bytes, allow_partial: bool = True) -> list[AsrHypothesis]:
        if len(pcm) % 2:
            raise ValueError(f"PCM must be 16-bit samples (an even number of bytes), got {len(pcm)} bytes")
        if pcm:
            self._buf += pcm
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
        s = self._engine.settings
        due = self._samples - self._at_last_partial >= self._engine.partial_step_s() * RATE
        if not (allow_partial and due) or self._samples - self._committed < MIN_DECODE_S * RATE:
            return []
        self._at_last_partial = self._samples
        waited, self._waiting_since = self._waiting_since, None
        if self._samples - self._committed > s.commit_after_s * RATE:
            self._commit_piece()
        prefix: Sequence[int] = ()
        if s.force_prefix and self._previous is not None and self._before is not None:
            # only what the last two partials agreed on (LocalAgreement-2), less the last two
            # tokens: one partial's misreading is never locked into the next
            agreed = 0
            for x, y in zip(self._previous.ids, self._before.ids):
                if x != y:
                    break
                agreed += 1
            prefix = self._previous.ids[: max(0, agreed - 2)]
        audio = self._audio(self._committed)
        tail = self._engine.decode(audio, kind="partial", prefix=prefix, waiting_since=waited, priority=self.priority)
        if tail.looped and prefix:  # the forced words set it looping: decode freely
            tail = self._engine.decode(audio, kind="partial", priority=self.priority)
        self._before = self._previous
        self._previous = None if tail.looped else tail  # never force a looping reading again
        text = self._text(tail.text)
        words = text.split()
        if not words:
            return []
        stable = agreed_prefix(self._previous_words, words)
        self._previous_words = words
        return [AsrHypothesis(text=text, is_final=False, confidence=tail.confidence, stable_words=stable)]

    def _commit_piece(self) -> None:
        """Decode the open audio up to its quietest point once, and keep that text."""
        s = self._engine.settings
        lo = self._committed / RATE + s.commit_min_s
        hi = self._samples / RATE - 1.5
        cut = quietest_cut(self._audio(), lo, hi) if hi > lo else int((self._committed / RATE + s.commit_min_s) * RATE)
        decoded = self._engine.decode(self._audio(self._committed, cut), kind="final", priority=self.priority)
        self._pieces.append(_Piece(self._committed, cut, decoded))
        self._committed = cut
        self._previous = self._before = None

    def _text(self, tail: str) -> str:
        return " ".join(t for t in [*(p.decoded.text for p in self._pieces), tail] if t)

    def end_segment(self) -> list[AsrHypothesis]:
        pieces = list(self._pieces)
        if self._samples - self._committed >= MIN_DECODE_S * RATE or (not pieces and self._samples >= MIN_DECODE_S * RATE):
            tail_audio = self._audio(self._committed)
            decoded = self._engine.decode(tail_audio, kind="final", digits=self.expect_digits, priority=self.priority)
            pieces.append(_Piece(self._committed, self._samples, decoded))
        words: list[AsrWord] = []
        texts = []
        confs = []
        for p in pieces:
            toks = p.decoded.text.split()
            if not toks:
                continue
            texts.append(p.decoded.text)
            confs.append(p.decoded.confidence)
            for w, (a, b) in zip(toks, proportional_word_times(toks, self._audio(p.start, p.end), p.start / RATE)):
                words.append(AsrWord(w, a, b, p.decoded.confidence))
        hyp = AsrHypothesis(text=" ".join(texts), is_final=True, words=words,
                            confidence=sum(confs) / len(confs) if confs else 0.0)  # fmt: skip
        self.begin_segment()
        return [hyp]

    def close(self) -> None:
        self._buf.clear()
