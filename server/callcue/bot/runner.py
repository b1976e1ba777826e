"""The virtual agent on one call: the dialog (bot/dialog.py) driven by the caller's finals,
its words spoken (Piper, sentence by sentence, to the platform that carries audio back) or
sent as text (chat), its actions run under guardrails, and every decision audited.

Why it sits in the call's stream: the bot hears the same masked finals and the same intent
and risk signals the agent-assist pipeline made, so a caller's card number is as masked for
the bot's audit trail as for a desk, and a risk signal hands the call to a human at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from string import Template
from typing import Any

from callcue.bot.dialog import Dialog, End, Handoff, Out, Run, Say
from callcue.bot.flows import Flow, Step
from callcue.bot.voice import Voice
from callcue.decide.webhooks import WebhookClient, WebhookError
from callcue.events import Transcript, new_id
from callcue.platforms.base import SpeaksBack, TypesBack

log = logging.getLogger(__name__)

#: segment ids of the bot's own lines (the agent channel), far from any recognized segment
BOT_SEGMENTS = 200_000


@dataclass
class BotPorts:
    """What the runner may touch, handed in by the call (all through the call's Sink)."""

    audit: Callable[[str, dict[str, Any]], Awaitable[Any]]
    event: Callable[[dict[str, Any]], None]
    transcript: Callable[[Transcript], Awaitable[None]]
    speaker: Callable[[], SpeaksBack | None]
    typist: Callable[[], TypesBack | None]
    flush: Callable[[], Awaitable[None]]
    call_time: Callable[[], float]
    webhooks: WebhookClient
    executor: Executor
    voice: Callable[[], Voice]
    knowledge: Callable[[str], Awaitable[str]] | None = None
    supervisors: Callable[[dict[str, Any]], None] | None = None
    approvals: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    backend: str = ""
    backend_token: str = ""
    replies: list[dict[str, Any]] = field(default_factory=list)


class BotRunner:
    def __init__(self, flow: Flow, call_id: str, ports: BotPorts) -> None:
        self.flow = flow
        self.call_id = call_id
        self.ports = ports
        self.dialog = Dialog(flow)
        self.playing_until = 0.0  # monotonic time the queued bot audio ends
        self.handed_off = False
        self._seg = BOT_SEGMENTS
        self._lock = asyncio.Lock()
        self.first_audio_at: float | None = None  # for the latency budget (bench/voicebot.py)
        self._pending: asyncio.Future[Any] | None = None

    @property
    def active(self) -> bool:
        return self.dialog.phase not in ("handed_off", "ended")

    async def start(self) -> None:
        async with self._lock:
            await self.ports.audit("bot_started", {"flow": self.flow.id, "flow_version": self.flow.version,
                                                   "flow_digest": self.flow.digest})  # fmt: skip
            await self._handle(self.dialog.start())

    async def turn(self, t: Transcript, intents: list[tuple[str, float]], risks: set[str], masked: str) -> None:
        """A caller's final (`masked`: as stored and shown), with the intents and risks the
        detectors raised on it. Only the dialog sees the digits, to fill a slot."""
        if not self.active:
            return
        async with self._lock:
            heard_at = time.monotonic()
            outs = self.dialog.hear(t.text, intents, risks, shown=masked)
            await self.ports.audit("bot_heard", {"text": masked, "intents": [[n, round(c, 3)] for n, c in intents],
                                                 "risks": sorted(risks), "phase": self.dialog.phase,
                                                 "task": self.dialog.task.id if self.dialog.task else None})  # fmt: skip
            self.first_audio_at = None
            await self._handle(outs)
            if self.first_audio_at is not None:
                self.ports.replies.append({"latency_s": self.first_audio_at - heard_at})

    def barge_in(self) -> bool:
        """The caller speaks over the bot: stop its audio (Twilio `clear`) and listen."""
        if time.monotonic() >= self.playing_until:
            return False
        sp = self.ports.speaker()
        if sp is not None:
            sp.clear()
        self.playing_until = 0.0
        self._pending = asyncio.ensure_future(self.ports.audit("bot_barge_in", {"at_s": round(self.ports.call_time(), 2)}))
        return True

    # ---------------------------------------------------------------- outputs
    async def _handle(self, outs: list[Out]) -> None:
        for o in outs:
            if isinstance(o, Say):
                await self._say(o.text)
            elif isinstance(o, Run):
                await self._handle(await self._run(o))
            elif isinstance(o, Handoff):
                await self._handoff(o)
            elif isinstance(o, End):
                await self.ports.audit("bot_ended", {"reason": o.reason})

    async def _say(self, text: str) -> None:
        await self.ports.audit("bot_said", {"text": text})
        start = self.ports.call_time()
        self._seg += 1
        words = max(1, len(text.split()))
        await self.ports.transcript(Transcript(self.call_id, "agent", self._seg, 0, text, True, start, start + 0.35 * words,
                                               confidence=1.0, engine="bot"))  # fmt: skip
        self.ports.replies.append({"type": "bot", "text": text})
        typist = self.ports.typist()
        if typist is not None:
            typist.reply_text(text)
            await self.ports.flush()
        sp = self.ports.speaker()
        if sp is None or not sp.speak_rate:  # a chat: the line went as text
            return
        voice = self.ports.voice()
        loop = asyncio.get_running_loop()
        chunks = iter(voice.synthesize(text, sp.speak_rate))
        while True:  # one sentence at a time: the first plays while the next is made
            pcm = await loop.run_in_executor(self.ports.executor, next, chunks, None)
            if pcm is None:
                break
            now = time.monotonic()
            if self.first_audio_at is None:
                self.first_audio_at = now
            seconds = sp.play(pcm, mark=new_id("say"))
            self.playing_until = max(self.playing_until, now) + seconds
            await self.ports.flush()

    async def _run(self, r: Run) -> list[Out]:
        step = r.step
        action_id = new_id("botact")
        base = {"action_id": action_id, "task": r.task, "kind": step.kind, "flow": f"{self.flow.id}@{self.flow.version}"}
        if step.autonomy == "approve" and not await self._approved(step, base, r):
            return self.dialog.action_done(step, False)
        await self.ports.audit("bot_action_started", {**base, "slots": sorted(r.slots)})
        if step.kind == "kb_answer":
            last = next((t for w, t in reversed(self.dialog.turns) if w == "caller"), "")
            answer = await self.ports.knowledge(last) if self.ports.knowledge is not None else ""
            await self.ports.audit("bot_action_succeeded", {**base, "answered": bool(answer)})
            if not answer:
                return self.dialog.action_done(step, False)
            return self.dialog.action_done(step, True, answer=answer)
        values = {**r.slots, "backend": self.ports.backend}
        url = Template(step.url).safe_substitute(values)
        payload = {k: Template(v).safe_substitute(values) if isinstance(v, str) else v for k, v in step.payload.items()}
        headers = {"Authorization": f"Bearer {self.ports.backend_token}"} if self.ports.backend_token else None
        try:
            res = await self.ports.webhooks.post(url, {**payload, "call_id": self.call_id}, key=f"callcue-{action_id}",
                                                 timeout_s=step.timeout_s, retries=step.retries, headers=headers)  # fmt: skip
        except (WebhookError, ValueError) as e:
            await self.ports.audit("bot_action_failed", {**base, "error": str(e)[:300]})
            return self.dialog.action_done(step, False)
        body = res.body if isinstance(res.body, dict) else {}
        await self.ports.audit("bot_action_succeeded", {**base, "status": res.status, "attempts": res.attempts})
        return self.dialog.action_done(step, True, body)

    async def _approved(self, step: Step, base: dict[str, Any], r: Run) -> bool:
        """A supervisor approves the action within its deadline while the caller holds; no
        answer, or a rejection, and the call goes to a person."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        action_id = base["action_id"]
        self.ports.approvals[action_id] = fut
        await self.ports.audit("bot_approval_requested", {**base, "deadline_s": step.deadline_s})
        if self.ports.supervisors is not None:
            self.ports.supervisors({"type": "bot_approval_request", "call_id": self.call_id, **base,
                                    "slots": {k: v for k, v in r.slots.items() if not k.startswith("result_")},
                                    "deadline_s": step.deadline_s, "deadline_at": time.time() + step.deadline_s})  # fmt: skip
        await self._say(step.hold)
        try:
            ok = await asyncio.wait_for(fut, step.deadline_s)
        except TimeoutError:
            ok = False
            await self.ports.audit("bot_approval_expired", base)
        finally:
            self.ports.approvals.pop(action_id, None)
        return ok

    async def _handoff(self, h: Handoff) -> None:
        self.handed_off = True
        await self.ports.audit("bot_handoff", {"reason": h.reason, "context": h.context})
        self.ports.event({"type": "handoff", "call_id": self.call_id, **h.context})
        self.ports.replies.append({"type": "handoff", "reason": h.reason, "summary": h.context.get("summary")})

