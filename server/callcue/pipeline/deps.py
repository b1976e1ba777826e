"""Everything a call's pipeline needs, handed in once as one frozen, typed value.

Why frozen: the pipeline may not reach for anything it was not given, and nothing can be
swapped under a running call; the composition root (`wiring.py`) builds this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

from callcue.asr.base import AsrEngine
from callcue.bot.flows import Flow
from callcue.bot.voice import Voice
from callcue.config import PipelineConfig, VadConfig
from callcue.decide.state import CallInfo
from callcue.decide.webhooks import WebhookClient
from callcue.events import AuditIntent, Hint, Signal, Transcript
from callcue.pipeline.sink import Sink
from callcue.pipeline.streams import CallStreams
from callcue.store.recordings import RecordingStore
from callcue.understand.base import Detector


class Redactor(Protocol):
    def redact(self, t: Transcript) -> tuple[Transcript, list[Signal]]: ...
    def reset(self) -> None: ...


class Decider(Protocol):
    """Turns a signal into what flows on to the Sink: a playbook's output is emitted into the
    call's stream as it happens (pipeline/streams.py); the returned items (a fallback hint
    after its audit intent) flow on after it."""

    async def decide(self, call: CallInfo, signal: Signal) -> list[AuditIntent | Hint]: ...
    async def call_ended(self, call_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PipelineDeps:
    asr: AsrEngine
    asr_pool: Executor
    detect_pool: Executor
    vad: VadConfig
    pipeline: PipelineConfig
    max_calls: int
    detectors: tuple[Detector, ...]
    sink: Sink
    redactor_factory: Callable[[str], Redactor] | None = None
    decider: Decider | None = None
    #: where a call's decisions enter and leave; each call registers its stream here
    streams: CallStreams | None = None
    #: where calls are recorded (None: not recorded), and how long audio waits for redaction
    recordings: RecordingStore | None = None
    record_hold_s: float = 30.0
    #: also keep a copy nothing is silenced in (`[recording] keep_unredacted`)
    record_unredacted: bool = False
    #: the virtual agent's flows and what its runners need (None: no virtual agent)
    bot: BotSetup | None = None


@dataclass(frozen=True, slots=True)
class BotSetup:
    flows: dict[str, Flow]
    webhooks: WebhookClient
    voice: Callable[[], Voice]
    knowledge: Callable[[str], Awaitable[str]] | None = None
    backend: str = ""
    backend_token: str = ""
    handoff_agent: str | None = None
    #: the caller's turn ends by what was said, not only by the silence (bot/turns.py)
    turn_taking: bool = True
    #: flows a supervisor paused (the kill switch): their calls go straight to a person
    paused: set[str] = field(default_factory=set)
    #: bot actions waiting for a supervisor's approval (action id -> the caller's hold)
    approvals: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
