"""What nodes say to each other over Redis, as bytes: no sockets here (sans-I/O).

Why msgpack: events carry bytes-free JSON-shaped dicts and are published at transcript rate;
msgpack is already the agent protocol's binary encoding, it is a third smaller than JSON and
decoding it rejects garbage precisely. Every message names the node that sent it, so a node
ignores its own echoes and a reader can tell which node holds what.

Names, in one place so `docs/deploy.md` and an operator's `redis-cli` agree with the code:

| name | Redis type | what |
|---|---|---|
| `callcue:events` | pub/sub | every client event (transcripts, hints, alerts, action updates) |
| `callcue:state` | pub/sub | global state changes: kill switch, resume, learning versions |
| `callcue:reply:{node}` | pub/sub | answers to the commands a node sent |
| `callcue:control:{node}` | stream, consumer group `callcue` | commands for the calls a node holds |
| `callcue:call:{call_id}` | string with TTL | the node that holds the call (heartbeat) |
| `callcue:node:{node}` | string with TTL | the node's address and load (heartbeat) |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

PREFIX = "callcue"
EVENTS = f"{PREFIX}:events"
STATE = f"{PREFIX}:state"
GROUP = PREFIX


def reply_channel(node: str) -> str:
    return f"{PREFIX}:reply:{node}"


def control_stream(node: str) -> str:
    return f"{PREFIX}:control:{node}"


def owner_key(call_id: str) -> str:
    return f"{PREFIX}:call:{call_id}"


def node_key(node: str) -> str:
    return f"{PREFIX}:node:{node}"


class EnvelopeError(ValueError):
    """A message on the bus that is not one of ours (or from an incompatible version)."""


@dataclass(frozen=True, slots=True)
class EventEnvelope:
    """A client event published on the node that produced it, delivered by every other node
    to its own subscribers; `agent_id` travels with it because the receiving node decides
    who may see it without asking the sender."""

    node: str
    call_id: str | None
    agent_id: str | None
    supervisors_only: bool
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StateChange:
    node: str
    op: str  # "pause" | "resume" | "learning"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A supervisor's or agent's command for a call another node holds, with who sent it."""

    request_id: str
    reply_to: str
    principal: dict[str, Any]
    message: dict[str, Any]
    kind: str = "supervisor"  # "supervisor" | "feedback"


@dataclass(frozen=True, slots=True)
class ControlReply:
    request_id: str
    node: str
    reply: dict[str, Any]


def _pack(tag: str, body: dict[str, Any]) -> bytes:
    return msgpack.packb({"v": 1, "t": tag, **body}, use_bin_type=True)


def _unpack(data: bytes, tag: str) -> dict[str, Any]:
    try:
        d = msgpack.unpackb(data, raw=False)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise EnvelopeError(f"not msgpack: {type(e).__name__}") from None
    if not isinstance(d, dict) or d.get("v") != 1 or d.get("t") != tag:
        raise EnvelopeError(f"not a v1 {tag!r} envelope")
    return d


def encode_event(e: EventEnvelope) -> bytes:
    return _pack("event", {"n": e.node, "c": e.call_id, "a": e.agent_id, "s": e.supervisors_only, "e": e.event})


def decode_event(data: bytes) -> EventEnvelope:
    d = _unpack(data, "event")
    if not isinstance(d.get("e"), dict) or not isinstance(d.get("n"), str):
        raise EnvelopeError("event envelope without node or event")
    return EventEnvelope(d["n"], d.get("c"), d.get("a"), bool(d.get("s")), d["e"])


def encode_state(s: StateChange) -> bytes:
    return _pack("state", {"n": s.node, "op": s.op, "args": s.args})


def decode_state(data: bytes) -> StateChange:
    d = _unpack(data, "state")
    if not isinstance(d.get("op"), str) or not isinstance(d.get("args"), dict):
        raise EnvelopeError("state envelope without op or args")
    return StateChange(str(d.get("n")), d["op"], d["args"])


def encode_request(r: ControlRequest) -> bytes:
    return _pack("request", {"id": r.request_id, "reply_to": r.reply_to, "p": r.principal, "m": r.message, "k": r.kind})


def decode_request(data: bytes) -> ControlRequest:
    d = _unpack(data, "request")
    if not all(isinstance(d.get(k), t) for k, t in (("id", str), ("reply_to", str), ("p", dict), ("m", dict))):
        raise EnvelopeError("request envelope incomplete")
    return ControlRequest(d["id"], d["reply_to"], d["p"], d["m"], str(d.get("k", "supervisor")))


def encode_reply(r: ControlReply) -> bytes:
    return _pack("reply", {"id": r.request_id, "n": r.node, "r": r.reply})


def decode_reply(data: bytes) -> ControlReply:
    d = _unpack(data, "reply")
    if not isinstance(d.get("id"), str) or not isinstance(d.get("r"), dict):
        raise EnvelopeError("reply envelope incomplete")
    return ControlReply(d["id"], str(d.get("n")), d["r"])
