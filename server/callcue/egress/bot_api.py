"""Supervisor commands for the virtual agent, the same over /ws/agent and REST: the flows it
runs, their stored versions (promote one, roll back), and the kill switch (`pause_flow`: new
calls of that flow go straight to a person; `resume_flow`). Each is audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from callcue.bot.flows import FlowError
from callcue.bot.versions import FlowVersions
from callcue.egress.supervisor_api import CommandError
from callcue.pipeline.deps import BotSetup

# (path under /api/v1, operation, takes a JSON body, method)
ROUTES: list[tuple[str, str, bool, str]] = [
    ("/flows", "list_flows", False, "GET"),
    ("/flows/{flow_id}/pause", "pause_flow", True, "POST"),
    ("/flows/{flow_id}/resume", "resume_flow", True, "POST"),
    ("/flows/{flow_id}/versions", "flow_versions", False, "GET"),
    ("/flows/{flow_id}/versions/{version}/promote", "promote_flow", True, "POST"),
    ("/flows/{flow_id}/rollback", "rollback_flow", True, "POST"),
    ("/bot-actions/{action_id}/approve", "bot_approve", True, "POST"),
    ("/bot-actions/{action_id}/reject", "bot_reject", True, "POST"),
]


class BotCommands:
    def __init__(self, setup: BotSetup, writer: Any, versions: FlowVersions | None = None) -> None:
        self.setup = setup
        self.writer = writer  # the Sink: the switch's audit entry
        self.versions = versions
        #: after a promotion or rollback here: tell the cluster's other nodes (they reload)
        self.on_change: Callable[[str], Awaitable[None]] | None = None

    def ops(self) -> dict[str, Callable[[Any, dict[str, Any]], Any]]:
        return {"list_flows": self.list_flows, "pause_flow": self.pause_flow, "resume_flow": self.resume_flow,
                "bot_approve": self.bot_approve, "bot_reject": self.bot_reject, "flow_versions": self.flow_versions,
                "promote_flow": self.promote_flow, "rollback_flow": self.rollback_flow}  # fmt: skip

    def _stored(self, a: dict[str, Any]) -> tuple[FlowVersions, str]:
        if self.versions is None:
            raise CommandError("not_found", 404, "flow versions are not kept here")
        return self.versions, self._flow(a)

    async def flow_versions(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        store, fid = self._stored(a)
        return {"flow": fid, "versions": await store.versions(fid)}

    async def promote_flow(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        store, fid = self._stored(a)
        ref = a.get("version")
        if not isinstance(ref, (str, int)) or isinstance(ref, bool) or not str(ref):
            raise CommandError("bad_request", 400, "name the version: its number or digest")
        try:
            out = await store.promote(fid, str(ref), actor=p.user_id, reason=str(a.get("reason") or ""))
        except FlowError as e:
            raise CommandError("not_found", 404, str(e)) from None
        await self.reload(fid)
        return out

    async def rollback_flow(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        store, fid = self._stored(a)
        try:
            out = await store.rollback(fid, actor=p.user_id, reason=str(a.get("reason") or ""))
        except FlowError as e:
            raise CommandError("conflict", 409, str(e)) from None
        await self.reload(fid)
        return out

    async def reload(self, fid: str | None = None, broadcast: bool = True) -> None:
        """New calls take the active versions now; calls already talking keep theirs."""
        if self.versions is None:
            return
        active = await self.versions.active_flows()
        self.setup.flows.clear()
        self.setup.flows.update(active)
        if broadcast and self.on_change is not None:
            await self.on_change(fid or "")

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
