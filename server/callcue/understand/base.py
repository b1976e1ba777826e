"""The interface every understanding detector implements.

A detector declares what it listens to (`inputs`: transcript updates, audio frames, clock
ticks) and what it reads and writes (`consumes` / `produces`: signal kinds as `signal:KIND`,
shared per-call facts as `fact:NAME`). The registry (`understand/registry.py`) orders
detectors from those declarations, so a detector that combines others' findings (churn)
runs after the ones it reads, whatever order they were listed in.

Detectors must be cheap enough to run on every partial; heavy ones (embeddings) are called
from an executor by the pipeline, so a detector may block but must be thread-safe across
calls: per-call state lives in `CallContext`, never on the detector.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import MutableSequence
from dataclasses import dataclass, field
from typing import Any, Literal

from callcue.events import Channel, Signal, Transcript

Input = Literal["text", "audio", "tick"]


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One decoded frame of one channel, on the call clock (16-bit PCM, mono)."""

    channel: Channel
    offset: float
    pcm: bytes
    sample_rate: int
    is_speech: bool


@dataclass
class CallContext:
    """What a detector may know about one call.

    `state` is private per detector (keyed by its name); `facts` is what detectors share on
    purpose, each fact named in its writer's `produces` and its readers' `consumes`;
    `signals` is every signal the call has shown so far, this update's earlier ones included.
    """

    call_id: str
    agent_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    # last final transcripts per channel, oldest first (bounded by the pipeline)
    history: list[Transcript] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def signals(self) -> MutableSequence[Signal]:
        return self.state.setdefault("signals", [])


class Detector(ABC):
    name: str = ""
    version: str = "1"
    #: class-level defaults; an instance may narrow them from its config (phrase rules)
    inputs: frozenset[Input] = frozenset({"text"})
    produces: frozenset[str] = frozenset()
    consumes: frozenset[str] = frozenset()
    #: True: an update of several sentences is judged sentence by sentence, plus a window
    #: across the last segment cut (pipeline/sentence_views.py), so a sentence in front never
    #: hides the one that matters. False: the detector judges whole utterances (a trend
    #: over utterances, such as sentiment, would see one update as several)
    per_sentence: bool = True

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        """New signals for this transcript update (already de-duplicated per evidence)."""
        return []

    def on_audio(self, frame: AudioFrame, ctx: CallContext) -> list[Signal]:
        """Called from the channel's decoder thread; the call serializes audio detectors."""
        return []

    def on_tick(self, ctx: CallContext, call_time: float) -> list[Signal]:
        """Once a second of call time: deadlines and silences are judged here."""
        return []
