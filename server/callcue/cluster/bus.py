"""The Redis side of a cluster node: fan-out, ownership heartbeats, commands between nodes.

Why these Redis parts (and not a home-made protocol between nodes): pub/sub is the cheapest
way to give every node every client event (each node keeps its own agent sockets); a key with
a TTL refreshed by a heartbeat is the standard lease, so a dead node's calls free themselves
without anyone deciding it died; a stream per node read through a consumer group holds the
commands for that node's calls until it has acted on them and acknowledged them (XACK), so a
command that arrives while the node is busy or briefly disconnected is not lost, and
`XPENDING` shows what it never finished.

Publishing never awaits Redis: events go through a bounded queue drained by one task, so a
slow or absent Redis delays remote desktops, never a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from callcue import metrics
from callcue.cluster import envelope as env

log = logging.getLogger(__name__)

_QUEUE_MAX = 50_000


@dataclass
class BusHandlers:
    on_event: Callable[[env.EventEnvelope], None]
    on_state: Callable[[env.StateChange], Awaitable[None]]
    on_request: Callable[[env.ControlRequest], Awaitable[dict[str, Any]]]
    load: Callable[[], dict[str, Any]]


class ClusterUnavailable(RuntimeError):
    """Redis cannot be reached (at start-up: the node refuses to start half-clustered)."""


class RedisBus:
    def __init__(self, url: str, node_id: str, *, address: str, owner_ttl_s: float, heartbeat_s: float,
                 control_timeout_s: float) -> None:  # fmt: skip
        import redis.asyncio as redis

        self.node_id = node_id
        self.address = address
        self.owner_ttl_ms = int(owner_ttl_s * 1000)
        self.heartbeat_s = heartbeat_s
        self.control_timeout_s = control_timeout_s
        self._redis = redis.from_url(url, decode_responses=False)
        self._held: set[str] = set()
        self._out: asyncio.Queue[bytes] = asyncio.Queue(_QUEUE_MAX)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: BusHandlers | None = None
        self.dropped = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self, handlers: BusHandlers) -> None:
        self._handlers = handlers
        try:
            await self._redis.ping()
            with contextlib.suppress(Exception):  # BUSYGROUP: the group exists from an earlier run
                await self._redis.xgroup_create(env.control_stream(self.node_id), env.GROUP, id="0", mkstream=True)
        except Exception as e:
            raise ClusterUnavailable(f"Redis at the configured cluster.redis_url: {type(e).__name__}: {e}") from None
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(env.EVENTS, env.STATE, env.reply_channel(self.node_id))
        await self._beat()
        self._tasks = [asyncio.create_task(self._publisher(), name="cluster-publish"),
                       asyncio.create_task(self._listen(pubsub), name="cluster-listen"),
                       asyncio.create_task(self._control(), name="cluster-control"),
                       asyncio.create_task(self._heartbeat(), name="cluster-heartbeat")]  # fmt: skip
        log.info("cluster node %s joined (%s)", self.node_id, self.address)

    async def close(self) -> None:
        """Leave cleanly: flush what is queued, give up the calls' leases and the node key."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._out.join(), 2.0)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            for call_id in list(self._held):
                await self._release(call_id)
            await self._redis.delete(env.node_key(self.node_id))
        with contextlib.suppress(Exception):
            await self._redis.aclose()

    # ------------------------------------------------------------------ fan-out
    def publish_event(self, call_id: str | None, agent_id: str | None, event: dict[str, Any],
                      supervisors_only: bool = False) -> None:  # fmt: skip
        data = env.encode_event(env.EventEnvelope(self.node_id, call_id, agent_id, supervisors_only, event))
        try:
            self._out.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1
            metrics.SHED.labels("cluster_event").inc()

    async def broadcast_state(self, op: str, **args: Any) -> None:
        await self._redis.publish(env.STATE, env.encode_state(env.StateChange(self.node_id, op, args)))

    async def _publisher(self) -> None:
        while True:
            data = await self._out.get()
            batch = [data]
            while not self._out.empty() and len(batch) < 256:
                batch.append(self._out.get_nowait())
            try:
                async with self._redis.pipeline(transaction=False) as p:
                    for d in batch:
                        p.publish(env.EVENTS, d)
                    await p.execute()
            except Exception:
                log.exception("cluster: publishing %d event(s) failed; remote desktops miss them", len(batch))
            finally:
                for _ in batch:
                    self._out.task_done()

    async def _listen(self, pubsub: Any) -> None:
        assert self._handlers is not None
        reply_ch = env.reply_channel(self.node_id).encode()
        while True:
            try:
                async for msg in pubsub.listen():
                    if msg.get("type") != "message":
                        continue
                    ch, data = msg["channel"], msg["data"]
                    try:
                        if ch == env.EVENTS.encode():
                            ev = env.decode_event(data)
                            if ev.node != self.node_id:
                                self._handlers.on_event(ev)
                        elif ch == env.STATE.encode():
                            st = env.decode_state(data)
                            if st.node != self.node_id:
                                await self._handlers.on_state(st)
                        elif ch == reply_ch:
                            rep = env.decode_reply(data)
                            fut = self._waiting.pop(rep.request_id, None)
                            if fut is not None and not fut.done():
                                fut.set_result(rep.reply)
                    except env.EnvelopeError as e:
                        log.warning("cluster: ignored a message on %r: %s", ch, e)
                    except Exception:
                        log.exception("cluster: handling a message on %r failed", ch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster: subscription lost; resubscribing in 1 s")
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await pubsub.subscribe(env.EVENTS, env.STATE, env.reply_channel(self.node_id))

    # ------------------------------------------------------------------ ownership
    async def own(self, call_id: str) -> str | None:
        """Take the call's lease; returns the node that held it before, if another one did
        (a platform reconnected here while that node still held it: this node takes over)."""
        key = env.owner_key(call_id)
        before: bytes | None = await self._redis.set(key, self.node_id.encode(), px=self.owner_ttl_ms, get=True)  # type: ignore[assignment]  # GET returns the old value
        self._held.add(call_id)
        prev = before.decode() if before else None
        return prev if prev and prev != self.node_id else None

    async def release(self, call_id: str) -> None:
        self._held.discard(call_id)
        with contextlib.suppress(Exception):
            await self._release(call_id)

    def forget(self, call_id: str) -> None:
        """Another node took the call: stop refreshing its lease, leave the key to that node."""
        self._held.discard(call_id)

    async def _release(self, call_id: str) -> None:
        # delete only our own lease: another node may have taken the call meanwhile
        script = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
        await self._redis.eval(script, 1, env.owner_key(call_id), self.node_id)

    async def alive(self, node: str) -> bool:
        """Whether `node`'s process is still connected: a dead process's sockets close with it,
        so its reply channel has no subscriber the moment it dies (leases outlive it by a TTL)."""
        try:
            counts = await self._redis.pubsub_numsub(env.reply_channel(node))
        except Exception:
            return False
        return bool(counts and counts[0][1])

    async def owner_of(self, call_id: str) -> str | None:
        v: bytes | None = await self._redis.get(env.owner_key(call_id))  # type: ignore[assignment]  # bytes: no decode_responses
        return v.decode() if v else None

    async def nodes(self) -> list[dict[str, Any]]:
        out = []
        async for key in self._redis.scan_iter(match=env.node_key("*").encode(), count=100):
            v = await self._redis.get(key)
            if v:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(v))
        return sorted(out, key=lambda d: str(d.get("node")))

    @property
    def held(self) -> set[str]:
        return set(self._held)

    async def _beat(self) -> None:
        assert self._handlers is not None
        info = {"node": self.node_id, "address": self.address, "at": time.time(), "calls": len(self._held),
                **self._handlers.load()}  # fmt: skip
        async with self._redis.pipeline(transaction=False) as p:
            p.set(env.node_key(self.node_id), json.dumps(info).encode(), px=self.owner_ttl_ms)
            for call_id in self._held:
                p.set(env.owner_key(call_id), self.node_id.encode(), px=self.owner_ttl_ms)
            await p.execute()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._beat()
            except Exception:
                log.exception("cluster: heartbeat failed; leases expire in %.0f s unless it recovers",
                              self.owner_ttl_ms / 1000)  # fmt: skip

    # ------------------------------------------------------------------ commands between nodes
    async def request(self, node: str, principal: dict[str, Any], message: dict[str, Any],
                      kind: str = "supervisor") -> dict[str, Any] | None:  # fmt: skip
        """Ask `node` to run a command for a call it holds; its reply, or None on timeout."""
        rid = uuid.uuid4().hex
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        data = env.encode_request(env.ControlRequest(rid, self.node_id, principal, message, kind))
        try:
            await self._redis.xadd(env.control_stream(node), {b"m": data}, maxlen=10_000, approximate=True)
            return await asyncio.wait_for(fut, self.control_timeout_s)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(rid, None)

    async def _control(self) -> None:
        assert self._handlers is not None
        stream = env.control_stream(self.node_id)
        first = True
        while True:
            try:
                # first the entries delivered to us before a restart and never acknowledged
                got: Any = await self._redis.xreadgroup(env.GROUP, self.node_id, {stream: "0" if first else ">"},
                                                   count=32, block=None if first else 1000)  # fmt: skip
                first = first and any(entries for _, entries in got or [])
                for _, entries in got or []:
                    for entry_id, fields in entries:
                        await self._run_request(stream, entry_id, fields)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster: reading the control stream failed; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def _run_request(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        assert self._handlers is not None
        try:
            req = env.decode_request(fields.get(b"m", b""))
        except env.EnvelopeError as e:
            log.warning("cluster: dropped a malformed command %s: %s", entry_id, e)
            await self._redis.xack(stream, env.GROUP, entry_id)
            return
        try:
            reply = await self._handlers.on_request(req)
        except Exception as e:
            log.exception("cluster: command failed")
            reply = {"type": "error", "code": "internal", "message": f"{type(e).__name__} on node {self.node_id}"}
        await self._redis.publish(env.reply_channel(req.reply_to),
                                  env.encode_reply(env.ControlReply(req.request_id, self.node_id, reply)))  # fmt: skip
        # a command that ran is not kept: what it named (a call, a reason) stays out of Redis
        async with self._redis.pipeline(transaction=True) as p:
            p.xack(stream, env.GROUP, entry_id)
            p.xdel(stream, entry_id)
            await p.execute()

    async def erase(self, call_id: str) -> int:
        """Drop what Redis holds about an erased call: its lease, and every queued command
        that names it (a node that died leaves its commands pending). Returns how many."""
        n = int(await self._redis.delete(env.owner_key(call_id)))
        async for key in self._redis.scan_iter(match=env.control_stream("*").encode(), count=100):
            doomed: list[bytes] = []
            entries: Any = await self._redis.xrange(key)  # bytes: no decode_responses
            for entry_id, fields in entries:
                try:
                    req = env.decode_request(fields.get(b"m", b""))
                except env.EnvelopeError:
                    continue
                if _names(req.message, call_id):
                    doomed.append(entry_id)
            if doomed:
                n += int(await self._redis.xdel(key, *doomed))
        self._held.discard(call_id)
        return n


def _names(value: Any, call_id: str) -> bool:
    """The command's message holds the call id anywhere (exactly, not as part of another id)."""
    if isinstance(value, dict):
        return any(_names(v, call_id) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_names(v, call_id) for v in value)
    return value == call_id
