"""One live call: its channel audio pipelines feeding one understanding pipeline.

Transcripts from both channels are handed to a single per-call task through a bounded queue,
so detectors see one ordered stream per call (their per-call state needs no locks), and a
burst of partials cannot stall the recognizers: when the queue is full, partials are shed
(finals never are).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from callcue import metrics
from callcue.events import Channel, Transcript
from callcue.platforms.base import CallStart
from callcue.pipeline.channel import ChannelPipeline
from callcue.pipeline.processor import Pipeline
from callcue.pipeline.stages import DecideProcessor, DetectProcessor, RedactProcessor, SinkProcessor
from callcue.understand.base import CallContext

if TYPE_CHECKING:
    from callcue.services import Services

log = logging.getLogger(__name__)

_DONE = object()


class Call:
    def __init__(self, start: CallStart, services: Services) -> None:
        self.start_event = start
        self.call_id = start.call_id
        self.agent_id = start.agent_id
        self.platform = start.platform
        self.started_wall = time.time()
        self.services = services
        s = services.settings
        self.ctx = CallContext(
            call_id=start.call_id,
            agent_id=start.agent_id,
            metadata={**start.metadata, "platform": start.platform, "channels": list(start.channels)},
        )
        self._latest_audio = 0.0
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=256)
        self._loop = asyncio.get_running_loop()
        self._frame_lock = threading.Lock()
        self._acoustic = services.make_acoustic_monitor(self.ctx)
        self.pipeline = Pipeline([
            RedactProcessor(services.redactor_factory(start.call_id) if services.redactor_factory else None),
            DetectProcessor(services.detectors, self.ctx, services.detect_pool, s.pipeline.history_finals),
            DecideProcessor(services.deciders_for(self)),
            SinkProcessor(self.call_id, services.store, services.hub, lambda: self._latest_audio),
        ])
        self.channels: dict[Channel, ChannelPipeline] = {
            ch: ChannelPipeline(
                call_id=start.call_id,
                channel=ch,
                encoding=start.encoding,
                sample_rate=start.sample_rate,
                engine=services.engine,
                executor=services.asr_pool,
                vad_cfg=s.vad,
                pipe_cfg=s.pipeline,
                emit=self._on_transcript,
                on_frame=self._on_frame if self._acoustic is not None else None,
            )
            for ch in start.channels
        }
        self._task = asyncio.create_task(self._understand_loop(), name=f"understand-{self.call_id}")
        self._ticker = asyncio.create_task(self._tick_loop(), name=f"tick-{self.call_id}")
        for ch in self.channels.values():
            ch.start()
        self.ended = False

    @property
    def latest_audio(self) -> float:
        """Wall time the audio behind the transcript being understood arrived."""
        return self._latest_audio

    @property
    def call_time(self) -> float:
        """Seconds of audio received on the longest channel: the call's own clock."""
        return max((c.audio_seconds for c in self.channels.values()), default=0.0)

    def info(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "agent_id": self.agent_id, "platform": self.platform,
                "channels": list(self.channels), "started_at": self.started_wall,
                "metadata": self.start_event.metadata}

    async def audio(self, channel: Channel, payload: bytes) -> None:
        await self.channels[channel].feed(payload)

    async def _on_transcript(self, t: Transcript) -> None:
        if t.is_final:
            await self._queue.put(t)
            return
        try:
            self._queue.put_nowait(t)
        except asyncio.QueueFull:
            metrics.SHED.labels("partial_understanding").inc()

    def push(self, item: object) -> None:
        """Inject a signal (or event) from outside the transcript path, e.g. a timer."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._loop.create_task(self._queue.put(item))

    def _on_frame(self, channel: Channel, offset: float, pcm: bytes, rate: int, is_speech: bool) -> None:
        # called from decoder threads of both channels
        with self._frame_lock:
            signals = self._acoustic.feed(channel, offset, pcm, rate, is_speech)
        for sig in signals or ():
            self._loop.call_soon_threadsafe(self.push, sig)

    async def _understand_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, Transcript):
                self._latest_audio = item.audio_received_at
                if self._acoustic is not None and item.is_final:
                    for sig in self._acoustic.on_transcript(item) or ():
                        await self.pipeline.push(sig)
            await self.pipeline.push(item)

    async def _tick_loop(self) -> None:
        """Once a second, let time-based detectors speak: disclosure deadlines, dead air."""
        tickers = list(self.services.tickers)
        if not tickers and self._acoustic is None:
            return
        while True:
            await asyncio.sleep(1.0)
            now = self.call_time
            signals: list[object] = []
            for tick in tickers:
                try:
                    signals.extend(tick(self.ctx, now) or ())
                except Exception:
                    log.exception("ticker failed", extra={"call_id": self.call_id})
            if self._acoustic is not None:
                with self._frame_lock:
                    signals.extend(self._acoustic.tick(now) or ())
            for sig in signals:
                self.push(sig)

    async def stop(self, reason: str = "stop") -> None:
        if self.ended:
            return
        self.ended = True
        self._ticker.cancel()
        await asyncio.gather(*(c.finish() for c in self.channels.values()))
        await self._queue.put(_DONE)
        await self._task
        await self.pipeline.close()
        log.info("call ended", extra={"call_id": self.call_id, "reason": reason,
                                      "audio_s": round(self.call_time, 2)})


