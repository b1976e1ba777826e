"""The processors a call's transcripts flow through, in order:

    Redact -> Detect -> Decide -> Sink

Redaction is first so nothing downstream (detectors, storage, clients, logs) ever sees an
unmasked secret. Detect yields the transcript before running detectors, so the agent sees
words as soon as the recognizer produced them. Decide turns signals into hints/actions. Sink
is the only place that writes to storage and to clients.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

from callcue import metrics
from callcue.events import Hint, Signal, Transcript
from callcue.pipeline.processor import Processor
from callcue.understand.base import CallContext, Detector

log = logging.getLogger(__name__)


class Redactor(Protocol):
    def redact(self, t: Transcript) -> tuple[Transcript, list[Signal]]: ...


class RedactProcessor(Processor):
    """One redactor per call: an agent asking for a card number arms masking on the
    customer's channel, and digits dictated across utterances are judged together."""

    name = "redact"

    def __init__(self, redactor: Redactor | None) -> None:
        self._redactor = redactor

    async def process(self, item: object) -> AsyncIterator[object]:
        if isinstance(item, Transcript) and self._redactor is not None:
            masked, signals = self._redactor.redact(item)
            yield masked
            for s in signals:
                yield s
            return
        yield item

    async def close(self) -> None:
        # the only place raw digits lived (to judge numbers split across utterances)
        if self._redactor is not None:
            self._redactor.reset()


class DetectProcessor(Processor):
    """Runs every detector on every transcript update, off the event loop."""

    name = "detect"

    def __init__(self, detectors: Sequence[Detector], ctx: CallContext, executor: Executor, history: int) -> None:
        self.detectors = list(detectors)
        self.ctx = ctx
        self.executor = executor
        ctx.history = deque(maxlen=history)  # type: ignore[assignment]
        ctx.state.setdefault("signals", deque(maxlen=500))
        self._names = {d.name for d in self.detectors}

    def _run_all(self, t: Transcript) -> list[Signal]:
        out: list[Signal] = []
        seen = self.ctx.state["signals"]
        for d in self.detectors:
            t0 = time.perf_counter()
            try:
                found = d.detect(t, self.ctx)
                # later detectors (churn) read what earlier ones found in this very update
                seen.extend(found)
                out.extend(found)
            except Exception:
                log.exception("detector %s failed", d.name, extra={"call_id": t.call_id})
            metrics.STAGE_LATENCY.labels(f"detector:{d.name}").observe(time.perf_counter() - t0)
        return out

    async def process(self, item: object) -> AsyncIterator[object]:
        yield item
        if isinstance(item, Transcript):
            if item.is_final:
                self.ctx.history.append(item)
            loop = asyncio.get_running_loop()
            t0 = time.perf_counter()
            signals = await loop.run_in_executor(self.executor, self._run_all, item)
            metrics.STAGE_LATENCY.labels("understand").observe(time.perf_counter() - t0)
            for s in signals:
                yield s
        elif isinstance(item, Signal) and item.detector not in self._names:
            # signals from outside the detectors (redaction, acoustic, timers)
            self.ctx.state["signals"].append(item)


Decider = Callable[[Signal], Awaitable[list[Any]]]


class DecideProcessor(Processor):
    name = "decide"

    def __init__(self, deciders: Sequence[Decider]) -> None:
        self.deciders = list(deciders)

    async def process(self, item: object) -> AsyncIterator[object]:
        yield item
        if isinstance(item, Signal):
            for decide in self.deciders:
                for out in await decide(item):
                    yield out


class SinkProcessor(Processor):
    """Storage and client fan-out; stamps latency metrics for the whole path."""

    name = "sink"

    def __init__(self, call_id: str, store: Any, hub: Any, latest_audio: Callable[[], float]) -> None:
        self.call_id = call_id
        self.store = store
        self.hub = hub
        self.latest_audio = latest_audio

    async def process(self, item: object) -> AsyncIterator[object]:
        now = time.time()
        if isinstance(item, Transcript):
            self.store.transcript(item)
            self.hub.publish(self.call_id, item.to_dict())
            metrics.STAGE_LATENCY.labels("transcript_final" if item.is_final else "transcript_partial").observe(
                max(0.0, now - item.audio_received_at))
        elif isinstance(item, Signal):
            self.store.signal(item)
            self.hub.publish(self.call_id, item.to_dict())
        elif isinstance(item, Hint):
            if not item.audio_received_at:
                item.audio_received_at = self.latest_audio()
            self.store.hint(item)
            self.hub.publish(self.call_id, item.to_dict())
            metrics.STAGE_LATENCY.labels("hint").observe(max(0.0, now - item.audio_received_at))
        elif isinstance(item, dict) and "type" in item:
            # an already-shaped event from the decision layer (alerts, action updates)
            self.hub.publish(self.call_id, item)
        yield item
