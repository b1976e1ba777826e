"""One CallCue node in a cluster: which node acts on what, over the Redis bus.

Why route by call: a call's live state (its recognizers, its pending approvals, its cooldowns)
lives in the memory of the node its platform streams to, so a command about that call must
run there. Everything else a node can do itself: the store and the hash-chained audit log
are one PostgreSQL database (its appends lock the chain head, so nodes never fork it), and
global switches are applied by the node that received them (audited once) and mirrored by
the others at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from callcue.auth import Principal
from callcue.cluster import envelope as env
from callcue.cluster.bus import BusHandlers, RedisBus

log = logging.getLogger(__name__)

#: commands about one action: they run where the action's call is held
ACTION_COMMANDS = frozenset({"get_action", "approve", "reject", "cancel", "rollback", "override"})
#: global kill switch and its release: here, then mirrored everywhere
SWITCHES = {"pause_playbook": True, "resume_playbook": False}
#: versions shared through the database whose caches every node must drop when they change
LEARNING = {"promote_threshold": "threshold", "rollback_threshold": "threshold",
            "promote_intent_dataset": "dataset", "rollback_intent_dataset": "dataset"}  # fmt: skip
_STATUS = {"not_found": 404, "conflict": 409, "bad_request": 400, "forbidden": 403, "audit_unavailable": 503}


class ClusterNode:
    def __init__(self, bus: RedisBus, *, hub: Any, calls: Any, engine: Any, supervisor: Any, access: Any,
                 learning: Any, load: Callable[[], dict[str, Any]], command_error: type[Exception]) -> None:  # fmt: skip
        self.bus = bus
        self.node_id = bus.node_id
        self.hub = hub
        self.calls = calls
        self.engine = engine
        self.supervisor = supervisor
        self.access = access
        self.learning = learning
        self._load = load
        self._command_error = command_error
        #: action id -> call id, from the action updates every node sees (bounded)
        self._action_calls: OrderedDict[str, str] = OrderedDict()
        #: what this node drops when another node erases a call (its engine's records, its
        #: recording file: recordings live on the disk of the node that recorded them)
        self.on_erased: list[Callable[[str], Any]] = []
        #: other state ops a part of the server listens for (a flow promoted on another node)
        self.on_state: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.hub.forward = self._forward
        self.hub.on_local_call_closed = self._local_call_closed
        self.supervisor.route = self.route
        self.access.feedback_route = self.feedback
        self.calls.claim = self.claim
        await self.bus.start(BusHandlers(on_event=self._remote_event, on_state=self._state,
                                         on_request=self._request, load=self._load))  # fmt: skip

    async def close(self) -> None:
        self.hub.forward = None
        self.hub.on_local_call_closed = None
        self.supervisor.route = None
        self.access.feedback_route = None
        self.calls.claim = None
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bus.close()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ events
    def _note_action(self, event: dict[str, Any]) -> None:
        aid, cid = event.get("action_id"), event.get("call_id")
        if isinstance(aid, str) and isinstance(cid, str) and cid:
            self._action_calls[aid] = cid
            self._action_calls.move_to_end(aid)
            while len(self._action_calls) > 100_000:
                self._action_calls.popitem(last=False)

    def _forward(self, call_id: str | None, agent_id: str | None, event: dict[str, Any], supervisors: bool) -> None:
        self._note_action(event)
        self.bus.publish_event(call_id, agent_id, event, supervisors)

    def _remote_event(self, ev: env.EventEnvelope) -> None:
        self._note_action(ev.event)
        self.hub.deliver(ev.call_id, ev.agent_id, ev.event, ev.supervisors_only)

    def _local_call_closed(self, call_id: str) -> None:
        # its lease was taken by `claim`, before the call opened here
        self._spawn(self.bus.release(call_id))

    async def claim(self, call_id: str) -> None:
        """Before this node opens a call: take its lease and, if a live node still holds it (a
        session continued here while the old node waits for it), have that node flush and let
        go first, so this node resumes after the old node's last stored words."""
        previous = await self.bus.own(call_id)
        if previous is None:
            return
        if await self.bus.alive(previous):
            reply = await self.bus.request(previous, {"user_id": self.node_id, "role": "node"}, {"call_id": call_id},
                                           kind="hand_over")  # fmt: skip
            if reply is None:
                log.warning("node %s did not hand the call over within %.0f s; resuming anyway", previous,
                            self.bus.control_timeout_s, extra={"call_id": call_id})  # fmt: skip
            else:
                log.info("call handed over by node %s", previous, extra={"call_id": call_id})
        restored = await self.engine.restore_call(call_id)
        if restored:
            log.info("%d pending approval(s) of the call restored from the audit log", restored,
                     extra={"call_id": call_id})  # fmt: skip

    async def erase(self, call_id: str) -> int:
        """A call erased here: Redis forgets it, and every other node drops its copies."""
        n = await self.bus.erase(call_id)
        self._forget_actions(call_id)
        await self.bus.broadcast_state("erase", call_id=call_id)
        return n

    def _forget_actions(self, call_id: str) -> None:
        for aid in [a for a, c in self._action_calls.items() if c == call_id]:
            del self._action_calls[aid]

    async def _state(self, st: env.StateChange) -> None:
        a = st.args
        if st.op in self.on_state:
            await self.on_state[st.op](a)
            return
        if st.op == "erase" and isinstance(a.get("call_id"), str):
            cid = a["call_id"]
            self._forget_actions(cid)
            self.bus.forget(cid)
            for drop in self.on_erased:
                try:
                    drop(cid)
                except Exception:
                    log.exception("a cache did not forget a call erased on node %s", st.node)
            log.info("call erased on node %s: dropped here too", st.node, extra={"call_id": cid})
            return
        if st.op == "pause" or st.op == "resume":
            n = await self.engine.mirror_pause(str(a.get("playbook_id")), str(a.get("user")), st.op == "pause",
                                               reason=str(a.get("reason") or ""))  # fmt: skip
            log.info("kill switch from node %s: %s %s here (%d action(s) cancelled)", st.node, st.op,
                     a.get("playbook_id"), n)  # fmt: skip
        elif st.op == "learning":
            if a.get("what") == "threshold":
                self.learning.forget_thresholds()
            elif self.learning.on_dataset_change is not None:
                await self.learning.on_dataset_change()

    # ------------------------------------------------------------------ commands
    async def route(self, kind: str, principal: Any, args: dict[str, Any]) -> dict[str, Any] | None:
        """Run `kind` where it belongs: the result, or None to run it here as usual."""
        if kind in SWITCHES and not args.get("call_id"):
            out = await self.supervisor.run(kind, principal, args, here=True)
            await self.bus.broadcast_state("pause" if SWITCHES[kind] else "resume", playbook_id=args.get("playbook_id"),
                                           user=principal.user_id, reason=args.get("reason") or "")  # fmt: skip
            return out
        if kind in LEARNING:
            out = await self.supervisor.run(kind, principal, args, here=True)
            await self.bus.broadcast_state("learning", what=LEARNING[kind])
            return out
        if kind == "list_actions":
            return await self._everywhere(kind, principal, args)
        call_id = args.get("call_id") if isinstance(args.get("call_id"), str) else None
        if kind in ACTION_COMMANDS and call_id is None:
            call_id = self._action_calls.get(str(args.get("action_id")))
            if call_id is None and args.get("action_id") and not self._known_here(str(args["action_id"])):
                return await self._anywhere(kind, principal, args)
        if call_id is None or (kind not in ACTION_COMMANDS and kind not in SWITCHES):
            return None
        owner = await self.bus.owner_of(call_id)
        if owner is None or owner == self.node_id:
            return None
        return await self._remote(owner, kind, principal, args)

    async def _remote(self, node: str, kind: str, principal: Any, args: dict[str, Any]) -> dict[str, Any]:
        reply = await self.bus.request(node, _principal(principal), {**args, "type": kind})
        if reply is None:
            raise self._command_error("owner_unreachable", 503,
                                      f"node {node} holds this call and did not answer within "
                                      f"{self.bus.control_timeout_s:g} s")  # fmt: skip
        return _unwrap(reply, self._command_error)

    def _known_here(self, action_id: str) -> bool:
        try:
            self.engine.action(action_id)
        except Exception:  # UnknownAction
            return False
        return True

    async def _anywhere(self, kind: str, principal: Any, args: dict[str, Any]) -> dict[str, Any] | None:
        """An action this node never saw (it joined later): the node that knows it answers."""
        for n in await self.bus.nodes():
            node = n.get("node")
            if node == self.node_id:
                continue
            reply = await self.bus.request(str(node), _principal(principal), {**args, "type": kind})
            if reply is not None and reply.get("error", {}).get("code") != "not_found":
                return _unwrap(reply, self._command_error)
        return None

    async def _everywhere(self, kind: str, principal: Any, args: dict[str, Any]) -> dict[str, Any]:
        """Pending approvals and other action lists are cluster-wide: merge every node's."""
        out = await self.supervisor.run(kind, principal, args, here=True)
        others = [n["node"] for n in await self.bus.nodes() if n.get("node") != self.node_id]
        replies = await asyncio.gather(*(self.bus.request(n, _principal(principal), {**args, "type": kind}) for n in others))
        actions = list(out.get("actions", []))
        missing = []
        for node, rep in zip(others, replies):
            if rep is None or "error" in rep:
                missing.append(node)
            else:
                actions += rep.get("out", {}).get("actions", [])
        return {**out, "actions": actions, **({"unreachable_nodes": missing} if missing else {})}

    async def _request(self, req: env.ControlRequest) -> dict[str, Any]:
        """A command another node routed here: run it as the principal that sent it."""
        if req.kind == "hand_over":
            call_id = str(req.message.get("call_id"))
            self.bus.forget(call_id)
            handed = await self.calls.hand_over(call_id)
            self.engine.forget_call(call_id)  # after the flush: the new holder restores what is pending
            return {"out": {"handed_over": handed}}
        scope = req.principal.get("scope")
        p = Principal(user_id=str(req.principal.get("user_id")), role=req.principal.get("role", "agent"),
                      scope=None if scope is None else frozenset(str(a) for a in scope),
                      grants=frozenset(str(g) for g in req.principal.get("grants") or ()))  # fmt: skip
        if req.kind == "feedback":
            return {"out": await self.access.record_feedback_here(p, req.message)}
        kind = str(req.message.get("type"))
        op = self.supervisor.has(kind)
        if not op or not self.supervisor.allowed(p, kind):
            return {"error": {"code": "forbidden" if op else "unknown_type", "status": 403 if op else 400,
                              "message": f"cannot run {kind!r} for {p.role}"}}  # fmt: skip
        args = {k: v for k, v in req.message.items() if k != "type"}
        try:
            return {"out": await self.supervisor.run(kind, p, args, here=True)}
        except self._command_error as e:
            return {"error": {"code": e.code, "status": e.status, "message": e.message}}  # type: ignore[attr-defined]

    async def feedback(self, principal: Any, req: dict[str, Any], call_id: str) -> dict[str, Any] | None:
        """An agent's feedback on a hint of a call another node holds: run it there (the
        suggestion it accepts is that node's); None to take it here."""
        owner = await self.bus.owner_of(call_id)
        if owner is None or owner == self.node_id:
            return None
        reply = await self.bus.request(owner, _principal(principal), req, kind="feedback")
        if reply is None:
            return {"type": "error", "code": "owner_unreachable", "message": f"node {owner} did not answer"}
        return dict(reply.get("out") or {})


def _unwrap(reply: dict[str, Any], error: type[Exception]) -> dict[str, Any]:
    if "error" in reply:
        e = reply["error"]
        raise error(e.get("code", "internal"), int(e.get("status") or _STATUS.get(e.get("code"), 500)),
                    e.get("message", ""))  # fmt: skip
    return dict(reply.get("out") or {})


def _principal(p: Any) -> dict[str, Any]:
    scope = getattr(p, "scope", None)
    return {"user_id": p.user_id, "role": p.role, "scope": None if scope is None else sorted(scope),
            "grants": sorted(getattr(p, "grants", ()))}  # fmt: skip
