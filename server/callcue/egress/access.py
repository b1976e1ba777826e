"""Who may see which call, and the agent's feedback on a hint: what `/ws/agent` and the
call REST endpoint ask of the server, behind one small object they are handed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from callcue.auth import Principal
from callcue.decide.engine import DecisionEngine
from callcue.pipeline.manager import CallManager
from callcue.pipeline.sink import Sink

log = logging.getLogger(__name__)

SupervisorHandler = Callable[[Principal, dict[str, Any]], Any]


class CallReader(Protocol):
    async def call_agent(self, call_id: str) -> str | bool | None: ...
    async def hint_call(self, hint_id: str) -> tuple[str, str | None] | None: ...
    async def call_record(self, call_id: str) -> dict[str, Any]: ...
    async def events_after(self, call_id: str, after: int, audiences: tuple[str, ...],
                           limit: int = 1000) -> list[dict[str, Any]]: ...  # fmt: skip
    async def ended_calls(self, since: float) -> list[dict[str, Any]]: ...
    async def call_ended_at(self, call_id: str) -> float | None: ...


class CallAccess:
    def __init__(self, calls: CallManager, store: CallReader, sink: Sink, engine: DecisionEngine | None) -> None:
        self.calls = calls
        self.store = store  # reads only: every write goes through the Sink
        self.sink = sink
        self.engine = engine
        #: cluster mode: runs feedback on the node holding the hint's call, None = here
        self.feedback_route: Callable[[Principal, dict[str, Any], str], Any] | None = None
        #: told of each suggested reply an agent copied or dismissed (the ranking learns it)
        self.reply_used: Callable[[str, str], None] | None = None
        #: pauses (True) or resumes a live call's recording and transcript storage
        self.recording_control: Callable[[str, bool], Any] | None = None

    def visible_calls(self, principal: Principal) -> list[dict[str, Any]]:
        """Live calls this principal may see: this node's and, in a cluster, the other nodes'."""
        here = [c.info() for c in self.calls.calls.values() if principal.may_see(c.agent_id)]
        remote: dict[str, dict[str, Any]] = getattr(self.sink, "remote_calls", dict)()
        return here + [info for cid, info in remote.items()
                       if cid not in self.calls.calls and principal.may_see(info.get("agent_id"))]

    async def recent_calls(self, principal: Principal, since: float) -> list[dict[str, Any]]:
        """Calls this principal may see that ended at or after `since`, newest first."""
        live = set(self.calls.calls)
        return [c for c in await self.store.ended_calls(since)
                if c["call_id"] not in live and principal.may_see(c.get("agent_id"))]  # fmt: skip

    async def call_ended_at(self, call_id: str) -> float | None:
        if call_id in self.calls.calls:
            return None
        return await self.store.call_ended_at(call_id)

    async def read_events(self, call_id: str, after: int, audiences: tuple[str, ...], limit: int) -> list[dict[str, Any]]:
        return await self.store.events_after(call_id, after, audiences, limit)

    async def call_agent(self, call_id: str) -> str | bool | None:
        """The call's agent, None if it has none, False if there is no such call. The stored
        row decides: a live stream reusing an ended call's id cannot claim it for its agent."""
        stored = await self.store.call_agent(call_id)
        if stored is not False:
            return stored
        call = self.calls.get(call_id)
        return call.agent_id if call is not None else False

    async def call_record(self, call_id: str) -> dict[str, Any]:
        return await self.store.call_record(call_id)

    async def record_feedback_here(self, principal: Principal, req: dict[str, Any]) -> dict[str, Any]:
        """Feedback another cluster node routed here because this node holds the call."""
        return await self.record_feedback(principal, req, here=True)

    async def pause_recording(self, principal: Principal, req: dict[str, Any]) -> dict[str, Any]:
        """The agent's own pause/resume of a live call's recording (a customer about to read
        a card number, a private moment): audited, and applied at once."""
        call_id, action = req.get("call_id"), req.get("action")
        if not isinstance(call_id, str) or action not in ("pause", "resume"):
            return {"type": "error", "code": "bad_request", "message": "recording needs call_id and action pause or resume"}
        if call_id not in self.calls.calls:
            return {"type": "error", "code": "unknown_call", "message": f"no live call {call_id!r} here"}
        if not principal.may_see(self.calls.calls[call_id].agent_id):
            return {"type": "error", "code": "forbidden", "message": f"not allowed on call {call_id!r}"}
        await self.sink.append(f"recording_{action}d", call_id=call_id, actor=principal.user_id, payload={"by": "agent"})
        if self.recording_control is not None:
            self.recording_control(call_id, action == "pause")
        self.sink.event(call_id, {"type": "call_control", "call_id": call_id, "control": f"{action}_recording", "by": principal.user_id})
        return {"type": "recording_ack", "call_id": call_id, "action": action}

    async def record_reply_feedback(self, principal: Principal, req: dict[str, Any]) -> dict[str, Any]:
        """An agent copied (used) or dismissed a suggested reply: audited, then counted."""
        call_id, reply_id, action = req.get("call_id"), req.get("reply_id"), req.get("action")
        if not isinstance(call_id, str) or not call_id or not isinstance(reply_id, str) or not reply_id or len(reply_id) > 200:
            return {"type": "error", "code": "bad_request", "message": "reply_feedback needs call_id and reply_id"}
        if action not in ("copied", "dismissed"):
            return {"type": "error", "code": "bad_request", "message": "reply_feedback action must be copied or dismissed"}
        agent = await self.call_agent(call_id)
        if agent is False:
            return {"type": "error", "code": "unknown_call", "message": f"no call {call_id!r}"}
        if not principal.may_see(agent):  # type: ignore[arg-type]
            return {"type": "error", "code": "forbidden", "message": f"not allowed on call {call_id!r}"}
        await self.sink.append("reply_feedback", call_id=call_id, agent_id=agent if isinstance(agent, str) else None,
                               actor=principal.user_id, payload={"reply_id": reply_id, "action": action})  # fmt: skip
        if self.reply_used is not None:
            self.reply_used(reply_id, action)
        return {"type": "reply_feedback_ack", "reply_id": reply_id, "action": action}

    async def record_feedback(self, principal: Principal, req: dict[str, Any], here: bool = False) -> dict[str, Any]:
        hint_id = req.get("hint_id")
        action = req.get("action")
        if not isinstance(hint_id, str) or not hint_id:
            return {"type": "error", "code": "bad_request", "message": "feedback needs hint_id"}
        if action not in ("accepted", "dismissed", "corrected"):
            return {"type": "error", "code": "bad_request",
                    "message": "feedback action must be accepted, dismissed or corrected"}
        reason = req.get("reason")
        correction = req.get("correction")
        for name, v in (("reason", reason), ("correction", correction)):
            if v is not None and (not isinstance(v, str) or len(v) > 2000):
                return {"type": "error", "code": "bad_request", "message": f"{name} must be a string of at most 2000 characters"}
        found = await self.store.hint_call(hint_id)
        if found is None:
            return {"type": "error", "code": "unknown_hint", "message": f"no hint {hint_id!r}"}
        call_id, agent_id = found
        if not principal.may_see(agent_id):
            return {"type": "error", "code": "forbidden", "message": f"not allowed to give feedback on {hint_id!r}"}
        if self.feedback_route is not None and not here:
            routed = await self.feedback_route(principal, req, call_id)
            if routed is not None:
                return routed
        await self.sink.feedback(hint_id, call_id, principal.user_id, action, reason, correction)
        if self.engine is not None:
            try:
                await self.engine.feedback(hint_id, principal.user_id, action, reason or "", correction,
                                           call_id=call_id, agent_id=agent_id)
            except Exception:
                log.exception("decision layer failed to take feedback", extra={"call_id": call_id})
        return {"type": "feedback_ack", "hint_id": hint_id, "action": action}
