"""One pipeline abstraction: items flow through processors in one direction.

Modelled on pipecat's frame processors: each processor receives every item, handles the
types it knows, and yields what flows on (usually the item itself first, then anything it
derived). Yielding the input before doing slow work keeps downstream latency low: a
transcript reaches the agent before detectors have looked at it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence

log = logging.getLogger(__name__)


class Processor(ABC):
    name: str = "processor"

    @abstractmethod
    def process(self, item: object) -> AsyncIterator[object]:
        """Yield the items that flow to the next processor."""

    async def close(self) -> None:
        """Called once when the call ends, in pipeline order."""


class Pipeline:
    """A fixed chain of processors. `push` returns when the item and all it derived are done."""

    def __init__(self, processors: Sequence[Processor]) -> None:
        self.processors = list(processors)

    async def push(self, item: object) -> None:
        await self._run(0, item, strict=False)

    def index(self, name: str) -> int:
        return next(i for i, p in enumerate(self.processors) if p.name == name)

    async def push_from(self, idx: int, item: object) -> None:
        """Run an item from the processor at `idx` on, raising what a processor raised: a
        decision emitting an audit intent must learn that the Sink could not write it."""
        await self._run(idx, item, strict=True)

    async def _run(self, idx: int, item: object, strict: bool) -> None:
        if idx >= len(self.processors):
            return
        proc = self.processors[idx]
        try:
            async for out in proc.process(item):
                await self._run(idx + 1, out, strict)
        except Exception:
            if strict:
                raise
            # one faulty processor must not take the call (or the server) down with it
            log.exception("processor %s failed on %s", proc.name, type(item).__name__)

    async def close(self) -> None:
        for p in self.processors:
            try:
                await p.close()
            except Exception:
                log.exception("processor %s failed to close", p.name)
