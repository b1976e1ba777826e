"""One live call: its channel audio pipelines feeding one understanding pipeline.

Transcripts from both channels are handed to a single per-call task through a bounded queue,
so detectors see one ordered stream per call (their per-call state needs no locks), and a
burst of partials cannot stall the recognizers: when the queue is full, partials are shed
(finals never are).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from callcue import metrics
from callcue.bot.runner import BotPorts, BotRunner
from callcue.bot.turns import hangover_ms
from callcue.decide.state import CallInfo
from callcue.events import Channel, Signal, Transcript
from callcue.pipeline.channel import ChannelPipeline
from callcue.pipeline.deps import PipelineDeps
from callcue.pipeline.digits_expected import DigitsExpectedProcessor
from callcue.pipeline.processor import Pipeline
from callcue.pipeline.recorder import CallRecorder
from callcue.pipeline.stages import (
    DecideProcessor,
    DetectProcessor,
    RecordingRedactProcessor,
    RedactProcessor,
    SinkProcessor,
    UrgencyProcessor,
)
from callcue.pipeline.streams import in_stream, outside_streams, run_step
from callcue.platforms.base import CallStart
from callcue.understand.base import AudioFrame, CallContext

log = logging.getLogger(__name__)

_DONE = object()


async def _nothing() -> None:
    return None


@dataclass(slots=True)
class _Step:
    step: Callable[[], Awaitable[Any]]
    done: asyncio.Future[Any]


class Call:
    def __init__(self, start: CallStart, deps: PipelineDeps, resume: dict[str, Any] | None = None) -> None:
        """`resume` (from the store) continues a call whose platform reconnected: the call
        clock and each channel's segment ids go on from the last stored transcript."""
        self.start_event = start
        self.call_id = start.call_id
        self.agent_id = start.agent_id
        self.platform = start.platform
        self.started_wall = time.time()
        self.deps = deps
        self.ctx = CallContext(
            call_id=start.call_id,
            agent_id=start.agent_id,
            metadata={**start.metadata, "platform": start.platform, "channels": list(start.channels)},
        )
        #: what playbooks may look at; built once from the start metadata
        self.info_for_decisions = CallInfo.from_metadata(start.call_id, start.agent_id, self.started_wall,
                                                         self.ctx.metadata)  # fmt: skip
        self._latest_audio = 0.0
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=256)
        self._text_clock = 0.0
        self._loop = asyncio.get_running_loop()
        self._audio_detectors = [d for d in deps.detectors if "audio" in d.inputs]
        self._tick_detectors = [d for d in deps.detectors if "tick" in d.inputs]
        #: the call's recording, redacted before it is written (None: not recorded, or no audio)
        self.recorder: CallRecorder | None = None
        if deps.recordings is not None and start.channels:
            rate, chans = deps.asr.sample_rate, [str(c) for c in start.channels]
            try:
                raw = deps.recordings.writer(start.call_id, rate, chans, "unredacted") if deps.record_unredacted else None
                self.recorder = CallRecorder(deps.recordings.writer(start.call_id, rate, chans), chans, rate,
                                             deps.record_hold_s, unredacted=raw)  # fmt: skip
            except Exception:
                # an earlier recording of this call id that the key ring cannot open, a full disk:
                # the call goes on (it is coached and transcribed), unrecorded, and says so
                log.exception("the call cannot be recorded", extra={"call_id": start.call_id})
                metrics.SHED.labels("recording").inc()
        self._bot_tasks: set[asyncio.Task[None]] = set()
        self._barge_pending = False
        self._bot_started = False
        self.bot: BotRunner | None = self._make_bot(start)
        self.pipeline = Pipeline([
            RedactProcessor(deps.redactor_factory(start.call_id) if deps.redactor_factory else None),
            *([RecordingRedactProcessor(self.recorder.silence)] if self.recorder is not None else []),
            DetectProcessor(deps.detectors, self.ctx, deps.detect_pool, deps.pipeline.history_finals),
            DecideProcessor(deps.decider, self.info_for_decisions, self._tail),
            UrgencyProcessor(self._mark_urgent, self._clear_urgent),
            DigitsExpectedProcessor(self._expect_digits, self._clear_digits),
            SinkProcessor(deps.sink),
        ])
        done = (resume or {}).get("channels", {})
        base = max((end for end, _ in done.values()), default=0.0)
        self.channels: dict[Channel, ChannelPipeline] = {
            ch: self._channel(ch, start.encoding, start.sample_rate, base, done.get(ch, (0.0, 0))[1])
            for ch in start.channels
        }
        self._decide_at = self.pipeline.index("decide")
        self._task = asyncio.create_task(self._understand_loop(), name=f"understand-{self.call_id}",
                                         context=outside_streams())  # fmt: skip
        if deps.streams is not None:
            deps.streams.opened(self.call_id, self)
        self._ticker = asyncio.create_task(self._tick_loop(), name=f"tick-{self.call_id}")
        for chp in self.channels.values():
            chp.start()
        self.ended = False

    # ---------------------------------------------------------------- the virtual agent
    def _make_bot(self, start: CallStart) -> BotRunner | None:
        """A call whose start names a flow (Twilio `customParameters.flow`, the native
        protocol's or a chat's metadata `flow`) is answered by the virtual agent."""
        setup = self.deps.bot
        params = start.metadata.get("custom_parameters")
        name = start.metadata.get("flow") or (params.get("flow") if isinstance(params, dict) else None)
        if setup is None or not isinstance(name, str) or not name:
            return None
        flow = setup.flows.get(name)
        if name in setup.paused:  # the kill switch: a person takes the call from the start
            log.info("flow %s is paused: the call goes to a person", name, extra={"call_id": self.call_id})
            if setup.handoff_agent and not self.agent_id:
                self.agent_id = start.agent_id = setup.handoff_agent  # opened on that agent's desk
                self.ctx.agent_id = self.agent_id
            return None
        if flow is None:
            log.warning("call names flow %r, which is not loaded (%s)", name, ", ".join(setup.flows) or "none",
                        extra={"call_id": self.call_id})  # fmt: skip
            return None
        sink, streams = self.deps.sink, self.deps.streams

        async def audit(kind: str, payload: dict[str, Any]) -> None:
            await sink.append(kind, call_id=self.call_id, agent_id=self.agent_id, actor=f"bot:{flow.id}", payload=payload)

        def event(ev: dict[str, Any]) -> None:
            if ev.get("type") == "handoff" and setup.handoff_agent and not self.agent_id:
                self.agent_id = setup.handoff_agent  # the human the call goes to
                sink.assign_agent(self.call_id, setup.handoff_agent)
            sink.event(self.call_id, ev)

        ports = BotPorts(audit=audit, event=event, transcript=sink.transcript,
                         speaker=lambda: streams.speaker(self.call_id) if streams is not None else None,
                         typist=lambda: streams.typist(self.call_id) if streams is not None else None,
                         flush=lambda: streams.flush(self.call_id) if streams is not None else _nothing(),
                         call_time=lambda: self.call_time, webhooks=setup.webhooks, executor=self.deps.detect_pool,
                         voice=setup.voice, knowledge=setup.knowledge, backend=setup.backend,
                         backend_token=setup.backend_token, approvals=setup.approvals,
                         supervisors=lambda ev: sink.event(self.call_id, ev, audience="supervisors"))  # fmt: skip
        runner = BotRunner(flow, self.call_id, ports)
        # the greeting waits (a moment at most) for the session that carries it back; a chat
        # posted whole (POST /api/v1/interactions) has none and starts at once
        self._bot_started = False
        self._loop.call_later(0.0 if start.platform in ("chat", "email") else 1.0, self.speaker_attached)
        return runner

    def speaker_attached(self) -> None:
        if self.bot is not None and not self._bot_started:
            self._bot_started = True
            self._spawn(self.bot.start())

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._bot_tasks.add(task)
        task.add_done_callback(self._bot_tasks.discard)

    def _take_turns(self, t: Transcript) -> None:
        """The caller's turn ends sooner on a complete answer, later on a trailing "and..."
        (bot/turns.py): the customer channel's silence window follows the latest partial."""
        chp = self.channels.get("customer")
        if self.bot is None or self.bot.handed_off or chp is None or self.deps.bot is None or not self.deps.bot.turn_taking:
            return
        default = self.deps.vad.hangover_ms
        d = self.bot.dialog
        chp.set_hangover(default if t.is_final else hangover_ms(t.text, d.expecting, d.confirming, default))

    def _bot_turn(self, t: Transcript) -> None:
        """After the pipeline handled a caller's final: the intents and risks it raised go
        with the words to the virtual agent (its own task, in order, under its lock)."""
        if self.bot is None or not self.bot.active:
            return
        intents: list[tuple[str, float]] = []
        risks: set[str] = set()
        for s in self.ctx.signals:
            ev = s.evidence
            if s.retracted or ev is None or ev.channel != t.channel or ev.segment_id != t.segment_id:
                continue
            if s.kind == "intent":
                intents.append((s.name, s.confidence))
            elif s.kind in ("risk", "sentiment", "compliance"):
                risks.add(s.name)
        masked = next((h.text for h in reversed(self.ctx.history) if h.channel == t.channel and h.segment_id == t.segment_id),
                      "")  # the redacted final the detectors saw; none: say nothing of it  # fmt: skip
        self._spawn(self.bot.turn(t, intents, risks, masked))

    def _barge(self) -> None:
        self._barge_pending = False
        if self.bot is not None:
            self.bot.barge_in()

    def pause_recording(self, paused: bool) -> None:
        if self.recorder is not None:
            self.recorder.pause(paused)

    def _mark_urgent(self, channel: Channel, seconds: float) -> None:
        chp = self.channels.get(channel)
        if chp is not None:
            chp.mark_urgent(seconds)

    def _clear_urgent(self) -> None:
        for chp in self.channels.values():
            chp.clear_urgent()

    def _expect_digits(self, channel: Channel, seconds: float) -> None:
        chp = self.channels.get(channel)
        if chp is not None:
            chp.expect_digits(seconds)

    def _clear_digits(self, channel: Channel) -> None:
        chp = self.channels.get(channel)
        if chp is not None:
            chp.clear_digits()

    def _channel(self, ch: Channel, encoding: str, rate: int, clock_base: float, segment_base: int) -> ChannelPipeline:
        return ChannelPipeline(
            call_id=self.call_id,
            channel=ch,
            encoding=encoding,
            sample_rate=rate,
            engine=self.deps.asr,
            executor=self.deps.asr_pool,
            vad_cfg=self.deps.vad,
            pipe_cfg=self.deps.pipeline,
            emit=self._on_transcript,
            on_frame=self._on_frame if self._audio_detectors or self.recorder is not None or self.bot is not None else None,
            clock_base=clock_base,
            segment_base=segment_base,
        )

    def open_channel(self, ch: Channel, encoding: str, rate: int) -> None:
        """A joining stream's channel: kept if it is still running in the same format (a
        continued session), else started where the call's clock stands, its segment ids
        going on from the channel it replaces."""
        old = self.channels.get(ch)
        if old is not None and not old.closing and old.encoding == encoding and old.in_rate == rate:
            return
        if old is not None and not old.closing:
            old.close_soon()
        clock = old.audio_seconds if old is not None else self.call_time
        chp = self._channel(ch, encoding, rate, clock, old.segment_id if old is not None else 0)
        self.channels[ch] = chp
        self.ctx.metadata["channels"] = list(self.channels)
        chp.start()

    async def finish_channels(self, channels: list[Channel]) -> None:
        """A leg left while others go on: flush its channels' last words, keep the call."""
        await asyncio.gather(*(self.channels[c].finish() for c in channels if c in self.channels))

    @property
    def latest_audio(self) -> float:
        """Wall time the audio behind the transcript being understood arrived."""
        return self._latest_audio

    @property
    def call_time(self) -> float:
        """Seconds of audio received on the longest channel (or, for a chat, the time of its
        latest turn): the call's own clock."""
        return max([c.audio_seconds for c in self.channels.values()] + [self._text_clock])

    async def text(self, t: Transcript) -> None:
        """A turn of a chat or email thread: it enters where an ASR final does (redaction,
        detectors, decider, store), so a text interaction gets the same understanding and QA."""
        self._text_clock = max(self._text_clock, t.end)
        await self._on_transcript(t)

    def info(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "agent_id": self.agent_id, "platform": self.platform,
                "channels": list(self.channels), "started_at": self.started_wall,
                "metadata": self.start_event.metadata}

    async def audio(self, channel: Channel, payload: bytes) -> None:
        await self.channels[channel].feed(payload)

    async def end_utterance(self) -> None:
        await asyncio.gather(*(c.end_utterance() for c in self.channels.values()))

    def dtmf(self) -> None:
        """A keypad press: clients learn that one happened; the digit itself is never
        forwarded or stored (keypad entry is how cards are typed)."""
        self.deps.sink.event(self.call_id, {"type": "dtmf", "call_id": self.call_id})

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
        # called from decoder threads of both channels; audio detectors lock their own state
        if self.recorder is not None:
            self.recorder.audio(channel, offset, pcm)
        if self.bot is not None and is_speech and channel == "customer" and not self._barge_pending:
            self._barge_pending = True  # the caller speaks: if the bot is talking, it stops
            self._loop.call_soon_threadsafe(self._barge)
        frame = AudioFrame(channel, offset, pcm, rate, is_speech)
        for d in self._audio_detectors:
            try:
                signals = d.on_audio(frame, self.ctx)
            except Exception:
                log.exception("audio detector %s failed", d.name, extra={"call_id": self.call_id})
                continue
            for sig in signals or ():
                self._loop.call_soon_threadsafe(self.push, sig)

    async def _tail(self, item: object) -> None:
        """What a decision produced, down the stages after the decide stage to the Sink."""
        await self.pipeline.push_from(self._decide_at + 1, item)

    async def enter(self, step: Callable[[], Awaitable[Any]]) -> Any:
        """A decision step from outside (a supervisor's command, an approval deadline), run
        in this call's stream after what is queued before it; returns its result."""
        if self._task.done():
            return await step()
        done: asyncio.Future[Any] = self._loop.create_future()
        await self._queue.put(_Step(step, done))
        await asyncio.wait({done, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():  # the stream ended before its turn came
            return await step()
        return done.result()

    async def _understand_loop(self) -> None:
        in_stream(self.call_id, self._tail)
        while True:
            item = await self._queue.get()
            if isinstance(item, _Step):
                await run_step(item.step, item.done)
                continue
            if item is _DONE:
                while not self._queue.empty():  # steps entered while the call was ending
                    late = self._queue.get_nowait()
                    if isinstance(late, _Step):
                        await run_step(late.step, late.done)
                return
            if isinstance(item, Transcript):
                self._latest_audio = item.audio_received_at
            await self.pipeline.push(item)
            if isinstance(item, Transcript) and item.channel == "customer" and item.engine != "bot":
                if item.is_final:
                    self._bot_turn(item)
                self._take_turns(item)

    async def _tick_loop(self) -> None:
        """Once a second, let time-based detectors speak: disclosure deadlines, dead air."""
        if not self._tick_detectors:
            return
        while True:
            await asyncio.sleep(1.0)
            now = self.call_time
            signals: list[Signal] = []
            for d in self._tick_detectors:
                try:
                    signals.extend(d.on_tick(self.ctx, now) or ())
                except Exception:
                    log.exception("ticker %s failed", d.name, extra={"call_id": self.call_id})
            for sig in signals:
                self.push(sig)

    async def _judge_at_end(self) -> None:
        """What was required and never happened, once every final is in: straight to the Sink
        (stored and shown), not through the decider, since no action can save it now."""
        now = self.call_time
        for d in self._tick_detectors:
            end = getattr(d, "on_call_end", None)
            if end is None:
                continue
            try:
                for sig in end(self.ctx, now) or ():
                    await self.deps.sink.signal(sig)
            except Exception:
                log.exception("end-of-call check %s failed", d.name, extra={"call_id": self.call_id})

    async def stop(self, reason: str = "stop") -> None:
        if self.ended:
            return
        self.ended = True
        self._ticker.cancel()
        await asyncio.gather(*(c.finish() for c in self.channels.values()))
        await self._queue.put(_DONE)
        await self._task
        if self._bot_tasks:  # the bot's last words and actions go on record before the call ends
            await asyncio.gather(*list(self._bot_tasks), return_exceptions=True)
        await self._judge_at_end()
        await self.pipeline.close()
        if self.recorder is not None:  # every final is in: nothing left to silence
            await asyncio.get_running_loop().run_in_executor(self.deps.asr_pool, self.recorder.close)
        if self.deps.streams is not None:
            self.deps.streams.closed(self.call_id, self)
        log.info("call ended", extra={"call_id": self.call_id, "reason": reason,
                                      "audio_s": round(self.call_time, 2)})
