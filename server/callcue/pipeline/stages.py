"""The processors a call's transcripts flow through, in order:

    Redact -> Detect -> Decide -> Sink

Redaction is first so nothing downstream (detectors, storage, clients, logs) ever sees an
unmasked secret. Detect yields the transcript before running detectors, so the agent sees
words as soon as the recognizer produced them. Decide turns signals into hints/actions. Sink
hands everything to the one Sink (pipeline/sink.py), which stores, audits and fans out.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from callcue import metrics
from callcue.decide.state import CallInfo
from callcue.events import Channel, Hint, Signal, Transcript
from callcue.pipeline.deps import Decider, Redactor
from callcue.pipeline.digits_expected import asks_for_digits
from callcue.pipeline.processor import Processor
from callcue.pipeline.sentence_views import SegmentSignals, SentenceViews, back_to_segment, is_boundary
from callcue.pipeline.sink import Sink
from callcue.pipeline.streams import deciding
from callcue.understand.base import CallContext, Detector

log = logging.getLogger(__name__)


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


#: signals whose evidence span is silenced in the recording
REDACTED_SIGNALS = frozenset({"card_number", "cvv", "ssn", "account_number", "security_code", "pin"})


#: an agent asking for card data: the customer's answer is silenced whole in the recording
_PCI_ASK = re.compile(
    r"\b(card number|credit card|debit card|long number|number on the card|security code|cvv|cvc|cv2|"
    r"(three|four|3|4)[ -]digit|code on the back|expiry|expiration|pin|social security|ssn)\b", re.IGNORECASE)
#: how long after that ask, and for how many of the customer's utterances
PCI_WINDOW_S = 20.0
PCI_UTTERANCES = 3


class RecordingRedactProcessor(Processor):
    """Tells the recorder what to silence before that audio leaves its hold: the words a
    final's masking hid (their times), the span of every redaction signal, and, whatever the
    recogniser made of it, the customer's answer to an agent's request for card data (up to
    three utterances within 20 s): a security code misheard as words is still a code."""

    name = "recording_redact"

    def __init__(self, silence: Callable[[float, float, list[str]], object]) -> None:
        self.silence = silence
        self._ask_end: float | None = None
        self._left = 0
        self._recent: list[Transcript] = []  # the customer's last finals (an ask may arrive after them)

    def _answer(self, t: Transcript) -> None:
        self.silence(t.start, t.end, [t.channel])
        self._left -= 1

    async def process(self, item: object) -> AsyncIterator[object]:
        if isinstance(item, Transcript):
            for w in item.words:
                if any(c in w.text for c in "*#") or "redacted" in w.text:
                    self.silence(w.start, w.end, [item.channel])
            if not item.words and ("*" in item.text or "[redacted" in item.text):
                self.silence(item.start, item.end, [item.channel])  # no word times: the whole segment
            if item.is_final and item.channel == "agent" and _PCI_ASK.search(item.text) and asks_for_digits(item.text):
                self._ask_end, self._left = item.end, PCI_UTTERANCES
                for c in [c for c in self._recent if c.start >= item.end - 1.0][: self._left]:
                    self._answer(c)
            elif item.is_final and item.channel == "customer":
                if self._ask_end is not None and self._left > 0 and item.start <= self._ask_end + PCI_WINDOW_S:
                    self._answer(item)
                self._recent = [*self._recent[-2:], item]
        elif isinstance(item, Signal) and item.name in REDACTED_SIGNALS and item.evidence is not None:
            self.silence(item.evidence.start, item.evidence.end, [item.evidence.channel])
        yield item


class DetectProcessor(Processor):
    """Runs every detector on every transcript update, off the event loop."""

    name = "detect"

    def __init__(self, detectors: Sequence[Detector], ctx: CallContext, executor: Executor, history: int) -> None:
        # in the registry's order (understand/registry.py); only those that read text here
        self.detectors = [d for d in detectors if "text" in d.inputs]
        self.ctx = ctx
        self.executor = executor
        ctx.history = deque(maxlen=history)  # type: ignore[assignment]
        ctx.state.setdefault("signals", deque(maxlen=500))
        self._names = {d.name for d in self.detectors}
        self._views = SentenceViews()
        self._merged = SegmentSignals()

    def _previous_final(self, t: Transcript) -> Transcript | None:
        """The channel's last final before `t`'s segment (history holds finals, oldest first)."""
        for h in reversed(self.ctx.history):
            if h.channel == t.channel and h.segment_id != t.segment_id:
                return h
        return None

    def _run_all(self, t: Transcript) -> list[Signal]:
        """Every detector on every sentence view of `t` (pipeline/sentence_views.py).

        A view across the last cut only adds what neither this update's own sentences nor the
        previous segment already raised: the same request is not raised twice."""
        out: list[Signal] = []
        seen = self.ctx.signals
        previous = self._previous_final(t)
        views = self._views.views(t, previous)
        for d in self.detectors:
            t0 = time.perf_counter()
            found: list[Signal] = []
            for view in views if d.per_sentence else [t]:
                try:
                    raised = [back_to_segment(s, t, view) for s in d.detect(view, self.ctx)]
                except Exception:
                    log.exception("detector %s failed", d.name, extra={"call_id": t.call_id})
                    continue
                if is_boundary(view):
                    had = {(s.kind, s.name) for s in found} | {
                        (s.kind, s.name) for s in seen
                        if previous is not None and s.evidence is not None and not s.retracted
                        and s.evidence.channel == t.channel and s.evidence.segment_id == previous.segment_id
                    }  # fmt: skip
                    raised = [s for s in raised if (s.kind, s.name) not in had]
                found.extend(raised)
            # one request raised by two sentences reaches the decider once
            found = self._merged.merge(t, found)
            # later detectors (churn) read what earlier ones found in this very update
            seen.extend(found)
            out.extend(found)
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
            self.ctx.signals.append(item)


class DecideProcessor(Processor):
    """Signals to the decider. What a decision produces (audit intents, hints, events) goes
    down the rest of this call's pipeline through `emit`, raising if the Sink refused it, so
    a hint whose audit intent was refused is never shown."""

    name = "decide"

    def __init__(self, decider: Decider | None, call: CallInfo, emit: Callable[[object], Awaitable[None]]) -> None:
        self.decider = decider
        self.call = call
        self.emit = emit

    async def process(self, item: object) -> AsyncIterator[object]:
        yield item
        if isinstance(item, Signal) and self.decider is not None:
            for out in await self._decide(self.decider, item):
                await self.emit(out)

    async def _decide(self, decider: Decider, signal: Signal) -> list[Any]:
        # no yield inside: the context variable is set and reset in this one coroutine
        with deciding(self.call.call_id, self.emit):
            return list(await decider.decide(self.call, signal))


class UrgencyProcessor(Processor):
    """Tells the recognizer which channel a hint may hang on.

    A signal raised on a channel (an intent, a risk, on a partial or a final) is where the
    playbooks are deciding: the channel's next words make or confirm the hint, so for
    `seconds` its partial re-decodes go ahead of other channels' in the recognizer's queue
    (Whisper's decode queue reads it; engines with cheap partials ignore it). A hint shown
    ends it for the call.
    """

    name = "urgency"

    def __init__(self, mark: Callable[[Channel, float], None], clear: Callable[[], None], seconds: float = 3.0) -> None:
        self.mark = mark
        self.clear = clear
        self.seconds = seconds

    async def process(self, item: object) -> AsyncIterator[object]:
        if isinstance(item, Signal) and item.evidence is not None and not item.retracted:
            self.mark(item.evidence.channel, self.seconds)
        elif isinstance(item, Hint):
            self.clear()
        yield item


class SinkProcessor(Processor):
    """The pipeline's end: everything that reached here is handed to the one Sink."""

    name = "sink"

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def process(self, item: object) -> AsyncIterator[object]:
        await self.sink.write(item)
        yield item
