"""The one interface every ASR engine implements.

Why this shape: the channel pipeline owns timing, VAD and queueing; an engine only turns
PCM of one speech segment into hypotheses. All methods here are *blocking CPU work* and are
only ever called from an executor thread, never on the event loop. One `RecognizerStream`
serves one channel of one call and is never used from two threads at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass(slots=True)
class AsrWord:
    text: str
    start: float  # seconds from the start of the current segment
    end: float
    conf: float = 1.0


@dataclass(slots=True)
class AsrHypothesis:
    text: str
    is_final: bool
    words: list[AsrWord] = field(default_factory=list)
    confidence: float = 0.0
    # leading words of a partial the engine will not take back within the segment
    stable_words: int = 0


class RecognizerStream(ABC):
    """Decodes one channel, one VAD speech segment at a time."""

    #: True when producing a partial costs a full re-decode (Whisper); the pipeline sheds
    #: these first when it falls behind. False when partials are nearly free (Vosk).
    partial_is_costly: bool = False
    #: set by the pipeline before each call: 1 while a hint may hang on this channel's next
    #: words (a signal was just raised on it), so an engine that queues decodes serves it first
    priority: int = 0
    #: set by the pipeline before each call: True while the conversation expects digits on
    #: this channel (the agent asked for a number, or a digit run is open), so an engine that
    #: can decode under a digit vocabulary may do so; others ignore it
    expect_digits: bool = False

    @abstractmethod
    def begin_segment(self) -> None:
        """A new speech segment starts; word times restart from 0."""

    @abstractmethod
    def accept(self, pcm: bytes, allow_partial: bool = True) -> list[AsrHypothesis]:
        """Feed 16-bit little-endian mono PCM at the engine's sample rate.

        Returns zero or more hypotheses: partials (when `allow_partial`), or a final when the
        engine itself found an endpoint inside the segment.
        """

    @abstractmethod
    def end_segment(self) -> list[AsrHypothesis]:
        """The VAD closed the segment: return the final hypothesis (may be empty text)."""

    def close(self) -> None:
        """Release native resources."""


class AsrEngine(ABC):
    """A loaded model, shared by all streams (loading is expensive, recognizers are cheap).

    Hooks an engine may offer besides `open_stream` (the pipeline reads only these):
    `stream_threads` (executor threads its channels should get), `describe` (what `/healthz`
    and the startup log say), `close` (stop decode workers at shutdown).
    """

    name: str = ""
    model_name: str = ""
    sample_rate: int = 16000

    @abstractmethod
    def open_stream(self) -> RecognizerStream: ...

    def describe(self) -> dict[str, object]:
        return {"engine": self.name, "model": self.model_name, "sample_rate": self.sample_rate}

    @property
    def stream_threads(self) -> int:
        """Executor threads the pipeline should give this engine's channels; 0 = the default
        (one per core). Engines that queue decodes internally want more, so that every
        waiting channel sits in their queue instead of waiting for a thread."""
        return 0

    def close(self) -> None:
        """Stop background decode workers (server shutdown)."""
