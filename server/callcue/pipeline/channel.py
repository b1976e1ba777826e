"""Audio of one channel of one call: decode -> resample -> VAD -> ASR -> Transcript.

Why a batch worker: the event loop only appends encoded frames to a list; one worker task per
channel hands everything that accumulated to an executor thread in one go. That keeps the loop
free (decoding is CPU work), keeps each channel's audio strictly ordered, and lets the worker
catch up after a slow decode by shedding costly partial re-decodes (never audio: the final
needs every sample). The list is bounded in seconds of audio; past the bound `feed` waits,
which back-pressures the platform's socket instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from callcue import metrics
from callcue.asr.base import AsrEngine, AsrHypothesis, RecognizerStream
from callcue.audio.codecs import BYTES_PER_SAMPLE, Resampler, decode
from callcue.audio.vad import SpeechAudio, SpeechEnded, SpeechStarted, VadSegmenter
from callcue.config import PipelineConfig, VadConfig
from callcue.events import Channel, Transcript, Word

log = logging.getLogger(__name__)


FrameHook = Callable[[Channel, float, bytes, int, bool], None]


class ChannelPipeline:
    def __init__(
        self,
        *,
        call_id: str,
        channel: Channel,
        encoding: str,
        sample_rate: int,
        engine: AsrEngine,
        executor: Executor,
        vad_cfg: VadConfig,
        pipe_cfg: PipelineConfig,
        emit: Callable[[Transcript], Awaitable[None]],
        on_frame: FrameHook | None = None,
        clock_base: float = 0.0,
        segment_base: int = 0,
    ) -> None:
        """`clock_base`/`segment_base` continue a call that reconnected: its audio time and
        segment ids go on from where the earlier connection left them."""
        self.call_id = call_id
        self.channel = channel
        self.encoding = encoding
        self.in_rate = sample_rate
        self.engine = engine
        self.executor = executor
        self.pipe_cfg = pipe_cfg
        self.emit = emit
        self.on_frame = on_frame
        self.rate = engine.sample_rate
        self._bytes_per_second = sample_rate * BYTES_PER_SAMPLE[encoding]
        self._resampler = Resampler(sample_rate, self.rate) if sample_rate != self.rate else None
        self._vad = VadSegmenter(
            sample_rate=self.rate,
            aggressiveness=vad_cfg.aggressiveness,
            frame_ms=vad_cfg.frame_ms,
            preroll_ms=vad_cfg.preroll_ms,
            hangover_ms=vad_cfg.hangover_ms,
            max_segment_s=vad_cfg.max_segment_s,
        )
        # opened and closed on the executor by the worker: a Kaldi recognizer takes ~70 ms to
        # build and ~100 ms (more after a long call) to free, time the event loop cannot give
        self._stream: RecognizerStream | None = None
        self._partial_is_costly = bool(getattr(engine, "partial_is_costly", False))
        self._pending: list[tuple[bytes, float]] = []
        self._pending_bytes = 0
        self._cond = asyncio.Condition()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        # decoder-thread state (touched only inside the executor, one batch at a time)
        self._base = clock_base
        self._segment_id = segment_base
        self._revision = 0
        self._seg_start = 0.0
        self._in_segment = False
        self._clock = clock_base  # seconds of audio processed on this channel
        self._last_partial_text = ""
        self.shed = 0
        # until when (monotonic) a hint may hang on this channel's next words
        self._urgent_until = 0.0
        # until when (monotonic) the conversation expects digits on this channel
        self._digits_until = 0.0
        self.audio_seconds = clock_base
        self._audio_seconds_metric = metrics.AUDIO_SECONDS.labels(channel)  # per frame: look the child up once

    # -- event-loop side -------------------------------------------------------------
    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name=f"asr-{self.call_id}-{self.channel}")

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def segment_id(self) -> int:
        return self._segment_id

    def close_soon(self) -> None:
        """Stop taking audio and flush in the background (a replaced channel)."""
        asyncio.get_running_loop().create_task(self.finish())

    def mark_urgent(self, seconds: float) -> None:
        """A signal was raised on this channel: for `seconds`, its partials go first."""
        self._urgent_until = max(self._urgent_until, time.monotonic() + seconds)

    def clear_urgent(self) -> None:
        self._urgent_until = 0.0

    def set_hangover(self, ms: int) -> None:
        """How long a silence ends the current utterance (the virtual agent's turn-taking)."""
        self._vad.set_hangover(ms)

    def expect_digits(self, seconds: float) -> None:
        """The conversation expects digits on this channel for `seconds` (pipeline/digits_expected.py)."""
        self._digits_until = max(self._digits_until, time.monotonic() + seconds)

    def clear_digits(self) -> None:
        self._digits_until = 0.0

    @property
    def backlog_seconds(self) -> float:
        return self._pending_bytes / self._bytes_per_second

    @property
    def lag_seconds(self) -> float:
        """Audio received but not yet through the recognizer: how far behind real time this
        channel is (unlike `backlog_seconds`, it includes the batch being decoded now)."""
        return max(0.0, self.audio_seconds - self._clock)

    async def feed(self, payload: bytes) -> None:
        """Queue encoded audio; waits (back-pressure) while the backlog is over its bound."""
        if self._closing:
            return
        seconds = len(payload) / self._bytes_per_second
        async with self._cond:
            while self.backlog_seconds > self.pipe_cfg.queue_max_seconds and not self._closing:
                await self._cond.wait()
            self._pending.append((payload, time.time()))
            self._pending_bytes += len(payload)
            metrics.QUEUE_SECONDS.inc(seconds)
            self._audio_seconds_metric.inc(seconds)
            self.audio_seconds += seconds
            self._cond.notify_all()

    async def end_utterance(self) -> None:
        """Finalize the open segment at this point of the audio (queued in order with it);
        speech that goes on opens the next segment."""
        if self._closing:
            return
        async with self._cond:
            self._pending.append((None, time.time()))  # type: ignore[arg-type]
            self._cond.notify_all()

    async def finish(self) -> None:
        """Flush everything (final results for an open segment) and stop the worker."""
        async with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._worker is not None:
            await self._worker

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._stream = await loop.run_in_executor(self.executor, self.engine.open_stream)
        except Exception:
            log.exception("recognizer could not be opened", extra={"call_id": self.call_id, "channel": self.channel})
            async with self._cond:
                self._closing = True
                self._pending, self._pending_bytes = [], 0
                self._cond.notify_all()
            return
        self._partial_is_costly = self._stream.partial_is_costly
        while True:
            async with self._cond:
                while not self._pending and not self._closing:
                    await self._cond.wait()
                batch, self._pending = self._pending, []
                batch_bytes, self._pending_bytes = self._pending_bytes, 0
                closing = self._closing
                self._cond.notify_all()
            backlog = batch_bytes / self._bytes_per_second
            metrics.QUEUE_DEPTH_HIST.observe(backlog)
            # only costly partials (Whisper re-decodes) are shed; Vosk partials are nearly free
            allow_partial = backlog <= self.pipe_cfg.shed_backlog_seconds or not self._partial_is_costly
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self._decode_batch, batch, allow_partial, closing)
            except Exception:
                log.exception("decoder failed", extra={"call_id": self.call_id, "channel": self.channel})
                results = []
            finally:
                metrics.QUEUE_SECONDS.dec(backlog)
            if backlog > 0:
                metrics.RTF.labels(self.engine.name).observe((time.perf_counter() - t0) / backlog)
            for t in results:
                await self.emit(t)
            if closing:
                await loop.run_in_executor(self.executor, self._stream.close)
                return

    # -- decoder-thread side ---------------------------------------------------------
    def _decode_batch(self, batch: list[tuple[bytes, float]], allow_partial: bool, closing: bool) -> list[Transcript]:
        out: list[Transcript] = []
        if self._stream is not None:
            now = time.monotonic()
            self._stream.priority = 1 if now < self._urgent_until else 0
            self._stream.expect_digits = now < self._digits_until
        skipped_partial = False
        for payload, arrived in batch:
            if payload is None:  # end_utterance()
                if self._in_segment:
                    self._finalize(arrived, out, self._clock)
                    self._open_segment(self._clock)
                continue
            pcm = decode(self.encoding, payload)
            if self._resampler is not None:
                pcm = self._resampler.process(pcm)
            events = self._vad.feed(pcm)
            if self.on_frame is not None and pcm:
                # told before the segment's audio is decoded: a caller's voice reaches the
                # virtual agent's barge-in (and the audio detectors) without waiting on a decode
                speech = self._vad.in_speech or any(isinstance(ev, SpeechStarted) for ev in events)
                self.on_frame(self.channel, self._clock, pcm, self.rate, speech)
            self._clock += len(pcm) / (2 * self.rate)
            for ev in events:
                self._handle_vad(ev, allow_partial, arrived, out)
            skipped_partial |= self._in_segment and not allow_partial and self._partial_is_costly
        if closing:
            tail = self._resampler.flush() if self._resampler is not None else b""
            events = self._vad.feed(tail) if tail else []
            events += self._vad.flush()
            arrived = batch[-1][1] if batch else time.time()
            for ev in events:
                self._handle_vad(ev, False, arrived, out)
            if self._in_segment:  # the segmenter did not close it: do it ourselves
                self._finalize(arrived, out, self._clock)
        if skipped_partial:
            self.shed += 1
            metrics.SHED.labels("partial_decode").inc()
        return out

    def _handle_vad(self, ev: object, allow_partial: bool, arrived: float, out: list[Transcript]) -> None:
        if isinstance(ev, SpeechStarted):
            if self._in_segment:
                self._finalize(arrived, out, self._base + ev.offset)
            self._open_segment(self._base + ev.offset)
        elif isinstance(ev, SpeechAudio):
            if not self._in_segment or self._stream is None:
                return
            end = self._base + ev.offset + len(ev.pcm) / (2 * self.rate)
            for hyp in self._stream.accept(ev.pcm, allow_partial):
                self._add(hyp, arrived, out, end)
        elif isinstance(ev, SpeechEnded):
            if self._in_segment:
                self._finalize(arrived, out, self._base + ev.offset)

    def _open_segment(self, start: float) -> None:
        self._in_segment = True
        self._segment_id += 1
        self._revision = 0
        self._seg_start = start
        self._last_partial_text = ""
        assert self._stream is not None  # opened by the worker before any audio is decoded
        self._stream.begin_segment()

    def _finalize(self, arrived: float, out: list[Transcript], end: float) -> None:
        assert self._stream is not None
        for hyp in self._stream.end_segment():
            self._add(hyp, arrived, out, end, force_final=True)
        self._in_segment = False

    def _add(self, hyp: AsrHypothesis, arrived: float, out: list[Transcript], end: float, force_final: bool = False) -> None:
        text = hyp.text.strip()
        final = hyp.is_final or force_final
        if not final and (not text or text == self._last_partial_text):
            return
        if final and not text and not self._last_partial_text:
            return  # nothing was said and nothing was shown: no event
        words = [Word(w.text, self._seg_start + w.start, self._seg_start + w.end, w.conf) for w in hyp.words]
        out.append(
            Transcript(
                call_id=self.call_id,
                channel=self.channel,
                segment_id=self._segment_id,
                revision=self._revision,
                text=text,
                is_final=final,
                start=self._seg_start,
                end=words[-1].end if words else end,
                words=words,
                confidence=hyp.confidence,
                engine=self.engine.name,
                stable_words=0 if final else hyp.stable_words,
                audio_received_at=arrived,
            )
        )
        self._revision += 1
        if final:
            # an engine-side endpoint inside a VAD segment: later words form a new segment id
            self._last_partial_text = ""
            self._segment_id += 1 if self._in_segment and not force_final else 0
            self._revision = 0
        else:
            self._last_partial_text = text
