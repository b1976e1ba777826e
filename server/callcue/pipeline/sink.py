"""The Sink: the one place a call's rows are stored, its audit entries written and its
events fanned out to agent desktops and supervisor consoles.

Why one place: "what the agent was shown", "what was stored" and "what the audit trail says"
must be the same thing. A call's stream ends here (`write`: transcripts, signals, audit
intents, hints and events, in the order the stream made them); the call manager, the
ingress transports, agent feedback and post-call QA are handed this object too, and nothing else in the package holds the store or the hub
for writing; `tests/test_structure.py` checks that from the imports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from callcue import metrics
from callcue.audit.entries import AuditEntry
from callcue.audit.log import AuditLog
from callcue.events import AuditIntent, CallEvent, Hint, Signal, Transcript
from callcue.pipeline.sequencer import Sequencer
from callcue.platforms.base import CallStart
from callcue.store.calls import CallStore

log = logging.getLogger(__name__)


class Fanout(Protocol):
    """Client fan-out (egress/hub.py implements it); publishing never awaits a client."""

    def publish(self, call_id: str, event: dict[str, Any], agent_id: Any = ...) -> int: ...
    def publish_supervisors(self, event: dict[str, Any]) -> int: ...
    def call_opened(self, call_id: str, agent_id: str | None) -> None: ...
    def call_closed(self, call_id: str) -> None: ...


class Sink:
    def __init__(self, store: CallStore, audit: AuditLog, fanout: Fanout) -> None:
        self._store = store
        self._audit = audit
        self._fanout = fanout
        # per live call: when the audio behind what is being decided arrived (hint latency)
        self._latest_audio: dict[str, Callable[[], float]] = {}
        self._agents: dict[str, str | None] = {}
        #: called with every stored final, masked as clients see it (a platform that takes
        #: transcripts back, AudioHook's transcript events, is one)
        self.final_listeners: list[Callable[[Transcript], None]] = []
        #: called with the id of every call that ended here (post-call QA is one)
        self.call_end_listeners: list[Callable[[str], None]] = []
        #: numbers, stores and sends (in order, once stored) every event of a live call
        self.events = Sequencer(store.event, self._send)

    # ---------------------------------------------------------------- call lifecycle
    async def resume_point(self, call_id: str) -> dict[str, Any] | None:
        """Where a known call left off (a read, so a reconnect can continue it); its events'
        numbering goes on from there."""
        point = await self._store.resume_point(call_id)
        if point is not None:
            self.events.resume(call_id, int(point.get("last_seq") or 0))
        return point

    def call_opened(self, start: CallStart, info: dict[str, Any], latest_audio: Callable[[], float],
                    reopened: bool = False) -> None:  # fmt: skip
        self._latest_audio[start.call_id] = latest_audio
        self._agents[start.call_id] = start.agent_id
        if reopened:
            self._store.call_reopened(start.call_id)
        else:
            self._store.call_started(start.call_id, start.agent_id, start.platform, start.encoding,
                                     start.sample_rate, list(start.channels), start.metadata)  # fmt: skip
        self._fanout.call_opened(start.call_id, start.agent_id)
        self._emit(start.call_id, {"type": "call_started", **info})

    def assign_agent(self, call_id: str, agent_id: str) -> None:
        """The call now belongs to this agent (a handoff from the virtual agent): stored, and
        its events from now on reach that agent's desk."""
        self._agents[call_id] = agent_id
        self._store.call_assigned(call_id, agent_id)
        self._fanout.call_opened(call_id, agent_id)

    def call_closed(self, call_id: str, reason: str) -> None:
        self._store.call_ended(call_id, reason)
        self._emit(call_id, {"type": "call_ended", "call_id": call_id, "reason": reason})
        self.call_released(call_id)
        for listener in self.call_end_listeners:
            try:
                listener(call_id)
            except Exception:
                log.exception("call end listener failed", extra={"call_id": call_id})

    def call_released(self, call_id: str) -> None:
        """Forget the call here; alone (not through `call_closed`) when it goes on on another
        node: nothing is stored and nobody is told it ended."""
        self._fanout.call_closed(call_id)
        self._latest_audio.pop(call_id, None)
        self._agents.pop(call_id, None)
        self.events.forget(call_id)

    def _emit(self, call_id: str, event: dict[str, Any], audience: str = "call",
              also_stored: Any = None, record: dict[str, Any] | None = None) -> Any:  # fmt: skip
        """A live call's event: numbered and stored, then sent (to the agent the call had when
        it was emitted, so a call_ended still reaches its desk after the call let go)."""
        event.setdefault("call_id", call_id)
        return self.events.emit(call_id, event, audience, also_stored, route=self._agents.get(call_id), record=record)

    def _send(self, call_id: str, audience: str, agent_id: str | None, event: dict[str, Any]) -> None:
        if audience == "supervisors":
            self._fanout.publish_supervisors(event)
        else:
            self._fanout.publish(call_id, event, agent_id)

    # ---------------------------------------------------------------- what a call produces
    async def transcript(self, t: Transcript) -> None:
        """Durable, then sent: a final reaches a screen only once its row is committed, so
        what a client was shown survives a crash (partials are not stored, so not awaited)."""
        if not t.is_final:  # partials: at once, unnumbered, unstored
            self._fanout.publish(t.call_id, t.to_dict())
        else:
            stored = self._store.transcript(t)
            event = t.to_dict()
            # storage paused: the text was shown, not kept; a replay says so instead
            record = None if stored is not None else {**event, "text": "", "words": [], "storage_paused": True}
            await self._stored_then_sent(t.call_id, event, stored, record)
        if t.is_final:
            for listener in self.final_listeners:
                listener(t)
        metrics.STAGE_LATENCY.labels("transcript_final" if t.is_final else "transcript_partial").observe(
            max(0.0, time.time() - t.audio_received_at))

    async def _stored_then_sent(self, call_id: str, event: dict[str, Any], stored: Any,
                                record: dict[str, Any] | None = None) -> None:  # fmt: skip
        """A row's event, never seen before the row (`stored`, None when not kept) commits:
        numbered with the call's events while it is live here, else sent unnumbered."""
        if call_id in self._agents:
            await self._emit(call_id, event, also_stored=stored, record=record)
            return
        if stored is not None:
            await stored
        self._fanout.publish(call_id, event)

    async def signal(self, s: Signal) -> None:
        await self._stored_then_sent(s.call_id, s.to_dict(), self._store.signal(s))

    async def hint(self, h: Hint) -> None:
        """Committed before it is published, so feedback on a hint the agent sees finds its
        row, and a shown hint survives a crash."""
        if not h.audio_received_at:
            latest = self._latest_audio.get(h.call_id)
            h.audio_received_at = latest() if latest is not None else 0.0
        await self._stored_then_sent(h.call_id, h.to_dict(), self._store.hint(h))
        if h.audio_received_at:
            metrics.STAGE_LATENCY.labels("hint").observe(max(0.0, time.time() - h.audio_received_at))

    async def to_supervisors(self, event: dict[str, Any]) -> None:
        """Supervisor events of a live call (approval requests, action updates, alerts) are
        numbered with the call's, so a console opened late is replayed them too."""
        call_id = event.get("call_id")
        if isinstance(call_id, str) and call_id in self._agents:
            await self._emit(call_id, event, audience="supervisors")
        else:
            self._fanout.publish_supervisors(event)

    def event(self, call_id: str, event: dict[str, Any], audience: str = "call") -> None:
        """An event for whoever watches the call (DTMF, call controls, retractions), or for
        supervisors only (`audience="supervisors"`: a bot's approval request)."""
        event.setdefault("call_id", call_id)
        if call_id in self._agents:
            self._emit(call_id, event, audience=audience)
        elif audience == "supervisors":
            self._fanout.publish_supervisors(event)
        else:
            self._fanout.publish(call_id, event)

    # ---------------------------------------------------------------- audit trail
    async def append(self, kind: str, **fields: Any) -> AuditEntry:
        """The audit port of the decision engine and the supervisor API (AuditLog.append)."""
        return await self._audit.append(kind, **fields)

    def iter_entries(self, page: int = 1000, **filters: Any) -> AsyncIterator[AuditEntry]:
        return self._audit.iter_entries(page, **filters)

    # ---------------------------------------------------------------- the rest of a call's rows
    async def feedback(self, hint_id: str, call_id: str, user_id: str, action: str, reason: str | None,
                       correction: str | None) -> None:  # fmt: skip
        await self._store.feedback(hint_id, call_id, user_id, action, reason, correction)

    def remote_calls(self) -> dict[str, dict[str, Any]]:
        """Live calls other cluster nodes hold (empty on a single node)."""
        return dict(getattr(self._fanout, "remote_calls", {}))

    async def qa_evaluation(self, call_id: str, result: dict[str, Any], source: str = "auto") -> None:
        """A scorecard's result for an ended call: stored, then announced to supervisors."""
        await self._store.qa_evaluation(call_id, result, source)
        self._fanout.publish_supervisors({"type": "qa_scored", "call_id": call_id, "card_id": result["card_id"], "source": source,
                                          "card_version": result["card_version"], "score": result.get("score"),
                                          "auto_failed": result.get("auto_failed")})  # fmt: skip

    async def call_summary(self, call_id: str, result: dict[str, Any]) -> None:
        """The post-call summary: stored, then announced to supervisors."""
        await self._store.summary(call_id, result)
        self._fanout.publish_supervisors({"type": "summary_ready", "call_id": call_id,
                                          "outcome": (result.get("outcome") or {}).get("outcome")})  # fmt: skip

    def rejection(self, platform: str, call_id: str | None, code: int, reason: str) -> None:
        metrics.INGRESS_ERRORS.labels(platform, str(code)).inc()
        log.warning("rejected %s frame: %s", platform, reason,
                    extra={"call_id": call_id, "close_code": code, "platform": platform})
        self._store.rejection(platform, call_id, code, reason)

    def pause_storage(self, call_id: str, paused: bool) -> None:
        self._store.pause_storage(call_id, paused)

    async def write(self, item: object) -> None:
        """The one way out of a call's stream, by type. An audit intent is written before
        the stream goes on, and a failure raises back to the decision that needed it."""
        if isinstance(item, Transcript):
            await self.transcript(item)
        elif isinstance(item, Signal):
            await self.signal(item)
        elif isinstance(item, AuditIntent):
            await self._audit.append(item.kind, **item.fields)
        elif isinstance(item, Hint):
            await self.hint(item)
        elif isinstance(item, CallEvent):
            if item.audience == "supervisors":
                await self.to_supervisors(item.event)
            elif item.call_id is not None:
                self.event(item.call_id, item.event)
