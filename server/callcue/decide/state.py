"""What the decision engine knows: its records, firings, calls and pauses, and the audit
entry shape. The gating, lifecycle and human-control parts all work on this one state."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from callcue import metrics
from callcue.audit.entries import SensitiveDataError
from callcue.decide.actions.dispatcher import ActionDispatcher
from callcue.decide.actions.record import ActionRecord
from callcue.decide.anomalies import AnomalyMonitor
from callcue.decide.playbooks import Playbook, PlaybookSet

log = logging.getLogger(__name__)

HUMAN_PLAYBOOK = "human"  # playbook id recorded for actions a supervisor created from scratch
MAX_SIGNALS_PER_CALL = 500
FEEDBACK_ACTIONS = ("accepted", "dismissed", "corrected")

_ALLOWED: dict[str, set[str]] = {
    "proposed": {"pending_approval", "suggested", "dispatched", "cancelled"},
    "pending_approval": {"approved", "rejected", "expired", "cancelled", "overridden"},
    "suggested": {"approved", "dismissed", "cancelled", "overridden"},
    "approved": {"dispatched", "cancelled"},
    "expired": {"dispatched"},
    "dispatched": {"succeeded", "failed", "cancelled", "overridden"},
    "succeeded": {"rolled_back", "overridden"},
    "failed": {"overridden"},
}


class AuditSink(Protocol):
    async def append(
        self, kind: str, *, call_id: str | None = None, agent_id: str | None = None,
        playbook_id: str | None = None, playbook_version: int | str | None = None,
        action_id: str | None = None, actor: str = "system", payload: dict[str, Any] | None = None,
    ) -> Any: ...  # fmt: skip


class DecisionError(Exception):
    """Base for refusals of a human command; the API maps subclasses to HTTP codes."""


class UnknownAction(DecisionError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else "unknown"


class AuditUnavailable(DecisionError):
    """The audit trail refused an entry, so the step it records was not taken."""


class InvalidTransition(DecisionError):
    """E.g. approving an action that already expired."""


@dataclass
class CallInfo:
    """Call metadata playbooks may look at. `started_at` is on the engine's clock."""

    call_id: str
    agent_id: str | None = None
    queue: str | None = None
    tier: str | None = None
    started_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, call_id: str, agent_id: str | None, started_at: float | None,
                      metadata: dict[str, Any]) -> CallInfo:  # fmt: skip
        """Queue and tier as platforms name them in a call's start metadata."""
        meta = dict(metadata)
        return cls(call_id=call_id, agent_id=agent_id, queue=meta.get("queue"),
                   tier=meta.get("tier") or meta.get("customer_tier"), started_at=started_at, metadata=meta)  # fmt: skip


@dataclass
class _CallState:
    info: CallInfo
    signals: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_SIGNALS_PER_CALL))
    last_fired: dict[str, float] = field(default_factory=dict)
    dedupe: dict[str, set[str]] = field(default_factory=dict)
    fired: dict[str, int] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)




class EngineState:
    def __init__(
        self,
        playbooks: PlaybookSet,
        audit: AuditSink,
        dispatcher: ActionDispatcher,
        clock: Callable[[], float] = time.time,
        learning: Any = None,
    ) -> None:
        """`learning` (a `callcue.learning.store.Learning`, optional) supplies the active
        confidence threshold per playbook and shadow candidates to evaluate silently."""
        self.playbooks = playbooks
        self.learning = learning
        self._shadow_cache: dict[str, tuple[float, list[tuple[int, float]]]] = {}
        self.audit = audit
        self.dispatcher = dispatcher
        self.clock = clock
        self.anomalies = AnomalyMonitor({p.id: p.anomaly for p in playbooks}, clock)
        self._calls: dict[str, _CallState] = {}
        self._paused: set[str] = {p.id for p in playbooks if not p.enabled}
        self._actions: dict[str, ActionRecord] = {}
        self._firings: dict[str, list[str]] = {}
        self._by_hint: dict[str, str] = {}  # hint_id -> firing_id
        self._tasks: dict[str, asyncio.Task[None]] = {}  # action_id -> in-flight execution
        self._timers: dict[str, asyncio.Task[None]] = {}  # firing_id -> approval deadline
        self._busy: set[str] = set()  # action ids with an undo in flight

    # ------------------------------------------------------------------ queries
    def action(self, action_id: str) -> ActionRecord:
        try:
            return self._actions[action_id]
        except KeyError:
            raise UnknownAction(f"unknown action {action_id!r}") from None

    def actions(self, *, state: str | None = None, call_id: str | None = None,
                playbook_id: str | None = None) -> list[ActionRecord]:  # fmt: skip
        return [r for r in self._actions.values()
                if (state is None or r.state == state) and (call_id is None or r.call_id == call_id)
                and (playbook_id is None or r.playbook_id == playbook_id)]  # fmt: skip

    def playbook(self, playbook_id: str) -> Playbook:
        """The loaded playbook; UnknownAction (-> 404 in the API) if there is none."""
        return self._playbook(playbook_id)

    def refresh_shadows(self, playbook_id: str) -> None:
        """Re-read shadow candidates on the next signal (after a human started or ended one)."""
        self._shadow_cache.pop(playbook_id, None)

    def is_paused(self, playbook_id: str, call_id: str | None = None) -> bool:
        if playbook_id in self._paused:
            return True
        st = self._calls.get(call_id) if call_id else None
        return bool(st and playbook_id in st.paused)

    def playbook_status(self) -> list[dict[str, Any]]:
        return [{"id": p.id, "version": p.version, "description": p.description, "autonomy": p.autonomy,
                 "paused": p.id in self._paused,
                 "paused_calls": sorted(c for c, st in self._calls.items() if p.id in st.paused),
                 "stats": self.anomalies.rates(p.id)} for p in self.playbooks]  # fmt: skip

    def _playbook(self, playbook_id: str) -> Playbook:
        try:
            return self.playbooks.get(playbook_id)
        except KeyError:
            raise UnknownAction(f"unknown playbook {playbook_id!r}") from None

    def _pending_group(self, action_id: str, state: str) -> list[ActionRecord]:
        rec = self.action(action_id)
        if rec.state != state:
            raise InvalidTransition(f"action {action_id} is {rec.state}, not {state}")
        return [r for r in self._firing(rec.firing_id) if r.state == state]

    def _cancel_timer(self, firing_id: str) -> None:
        t = self._timers.pop(firing_id, None)
        if t is not None:
            t.cancel()

    def _firing(self, firing_id: str) -> list[ActionRecord]:
        return [self._actions[a] for a in self._firings.get(firing_id, [])]

    async def pause(self, playbook_id: str, user: str, call_id: str | None = None, reason: str = "") -> int:
        raise NotImplementedError  # HumanControl.pause

    async def _audit(self, kind: str, *, rec: ActionRecord | None = None, call_id: str | None = None,
                     agent_id: str | None = None, playbook_id: str | None = None,
                     playbook_version: int | str | None = None, action_id: str | None = None,
                     actor: str = "system", payload: dict[str, Any] | None = None) -> None:  # fmt: skip
        if rec is not None:
            call_id, agent_id, action_id = rec.call_id, rec.agent_id, rec.action_id
            playbook_id, playbook_version = rec.playbook_id, rec.playbook_version
        body = _jsonable(payload or {})
        try:
            try:
                await self.audit.append(kind, call_id=call_id, agent_id=agent_id, playbook_id=playbook_id,
                                        playbook_version=playbook_version, action_id=action_id, actor=actor,
                                        payload=body)  # fmt: skip
            except SensitiveDataError:
                # an upstream masker missed a card/account number: keep the step, lose the digits
                await self.audit.append(kind, call_id=call_id, agent_id=agent_id, playbook_id=playbook_id,
                                        playbook_version=playbook_version, action_id=action_id, actor=actor,
                                        payload={**_scrub(body), "scrubbed": True})  # fmt: skip
        except Exception as e:
            # fail closed: the step that needed this entry does not happen; supervisors hear of it
            metrics.AUDIT_FAILURES.labels(kind).inc()
            log.exception("audit append failed for %s (call %s, action %s); holding the step", kind, call_id, action_id)
            try:
                await self.dispatcher.publish_to_supervisors({
                    "type": "audit_unavailable", "kind": kind, "call_id": call_id, "action_id": action_id,
                    "playbook_id": playbook_id, "error": f"{type(e).__name__}: {e}"[:300]})  # fmt: skip
            except Exception:
                log.exception("could not alert supervisors that the audit trail is unavailable")
            raise AuditUnavailable(f"audit entry {kind!r} could not be written; the step is held") from e



def template_values(signal: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
    """Flat names for `$placeholders` in hint/alert text, and the signal for webhook payloads."""
    v: dict[str, Any] = {
        "signal_kind": signal.get("kind", ""), "signal_name": signal.get("name", ""),
        "confidence": signal.get("confidence", ""),
        **{f"call_{k}": ("" if call.get(k) is None else call.get(k))
           for k in ("call_id", "agent_id", "queue", "tier", "seconds_in_call")},
        "signal": {k: signal.get(k) for k in ("signal_id", "kind", "name", "confidence", "attrs", "text")} if signal else None,
    }  # fmt: skip
    v["call_id"] = v.pop("call_call_id")
    for k, val in (signal.get("attrs") or {}).items():
        if isinstance(k, str) and k.isidentifier():
            v[f"attr_{k}"] = val
    return v


_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){12,}")


def _scrub(v: Any) -> Any:
    if isinstance(v, str):
        return _DIGIT_RUN.sub("[redacted-digits]", v)
    if isinstance(v, dict):
        return {k: _scrub(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_scrub(x) for x in v]
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)
