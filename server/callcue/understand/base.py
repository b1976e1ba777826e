"""The interface every understanding detector implements.

A detector sees each transcript update (partials and finals, both channels) together with a
small per-call context, and returns signals. Detectors must be cheap enough to run on every
partial; heavy ones (embeddings) are called from an executor by the pipeline, so `detect` may
block but must be thread-safe across calls (per-call state lives in `CallContext`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from callcue.events import Signal, Transcript


@dataclass
class CallContext:
    """What a detector may remember about one call. Keyed by detector name in `state`."""

    call_id: str
    agent_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    # last final transcripts per channel, oldest first (bounded by the pipeline)
    history: list[Transcript] = field(default_factory=list)


class Detector(ABC):
    name: str = ""
    version: str = "1"

    @abstractmethod
    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        """Return new signals for this transcript update (already de-duplicated per evidence)."""
