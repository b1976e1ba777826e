"""Supervisor commands for the virtual agent, the same over /ws/agent and REST: the flows it
runs, and the kill switch (`pause_flow`: new calls of that flow go straight to a person;
`resume_flow`). Each switch is audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callcue.egress.supervisor_api import CommandError
from callcue.pipeline.deps import BotSetup

# (path under /api/v1, operation, takes a JSON body, method)
ROUTES: list[tuple[str, str, bool, str]] = [
    ("/flows", "list_flows", False, "GET"),
    ("/flows/{flow_id}/pause", "pause_flow", True, "POST"),
    ("/flows/{flow_id}/resume", "resume_flow", True, "POST"),
    ("/bot-actions/{action_id}/approve", "bot_approve", True, "POST"),
    ("/bot-actions/{action_id}/reject", "bot_reject", True, "POST"),
]


class BotCommands:
    def __init__(self, setup: BotSetup, writer: Any) -> None:
        self.setup = setup
        self.writer = writer  # the Sink: the switch's audit entry

    def ops(self) -> dict[str, Callable[[Any, dict[str, Any]], Any]]:
        return {"list_flows": self.list_flows, "pause_flow": self.pause_flow, "resume_flow": self.resume_flow,
                "bot_approve": self.bot_approve, "bot_reject": self.bot_reject}  # fmt: skip

    async def _decide(self, p: Any, a: dict[str, Any], ok: bool) -> dict[str, Any]:
        aid = a.get("action_id")
        fut = self.setup.approvals.get(aid) if isinstance(aid, str) else None
        if fut is None or fut.done():
            raise CommandError("not_found", 404, f"no bot action {aid!r} is waiting for approval")
        await self.writer.append("bot_action_approved" if ok else "bot_action_rejected", actor=p.user_id,
                                 payload={"action_id": aid, "note": str(a.get("note") or a.get("reason") or "")})  # fmt: skip
        fut.set_result(ok)
        return {"action_id": aid, "approved": ok}

    async def bot_approve(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        return await self._decide(p, a, True)

    async def bot_reject(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        return await self._decide(p, a, False)

    def _flow(self, a: dict[str, Any]) -> str:
        fid = a.get("flow_id")
        if not isinstance(fid, str) or fid not in self.setup.flows:
            raise CommandError("not_found", 404, f"no flow {fid!r} (have: {', '.join(sorted(self.setup.flows))})")
        return fid

    async def list_flows(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        return {"flows": [{"id": f.id, "version": f.version, "digest": f.digest, "description": f.description,
                           "tasks": [t.id for t in f.tasks], "paused": f.id in self.setup.paused}
                          for f in self.setup.flows.values()]}  # fmt: skip

    async def pause_flow(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        fid = self._flow(a)
        await self.writer.append("flow_paused", actor=p.user_id, payload={"flow": fid, "reason": str(a.get("reason") or "")})
        self.setup.paused.add(fid)
        return {"flow": fid, "paused": True}

    async def resume_flow(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        fid = self._flow(a)
        await self.writer.append("flow_resumed", actor=p.user_id, payload={"flow": fid})
        self.setup.paused.discard(fid)
        return {"flow": fid, "paused": False}
