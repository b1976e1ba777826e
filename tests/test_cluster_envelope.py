"""The bytes nodes exchange over Redis: every envelope round-trips, and anything that is not
one of ours is refused with a precise error instead of reaching a handler."""

from __future__ import annotations

import msgpack
import pytest

from callcue.cluster import envelope as env


def test_round_trips() -> None:
    ev = env.EventEnvelope("node-a", "CA1", "agent-1", False, {"type": "transcript", "text": "hello", "words": []})
    assert env.decode_event(env.encode_event(ev)) == ev
    st = env.StateChange("node-a", "pause", {"playbook_id": "p", "user": "sup"})
    assert env.decode_state(env.encode_state(st)) == st
    req = env.ControlRequest("r1", "node-b", {"user_id": "sup", "role": "supervisor"}, {"type": "approve", "action_id": "a"})
    assert env.decode_request(env.encode_request(req)) == req
    rep = env.ControlReply("r1", "node-a", {"out": {"actions": []}})
    assert env.decode_reply(env.encode_reply(rep)) == rep


@pytest.mark.parametrize("data", [b"", b"\xc1", b"not msgpack at all", msgpack.packb([1, 2]),
                                  msgpack.packb({"v": 2, "t": "event"}), msgpack.packb({"v": 1, "t": "state"}),
                                  msgpack.packb({"v": 1, "t": "event", "n": "a"})])  # fmt: skip
def test_foreign_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(env.EnvelopeError):
        env.decode_event(data)


def test_a_message_of_another_kind_is_not_taken_for_this_one() -> None:
    data = env.encode_state(env.StateChange("n", "pause", {}))
    with pytest.raises(env.EnvelopeError, match="'event'"):
        env.decode_event(data)
    with pytest.raises(env.EnvelopeError, match="incomplete"):
        env.decode_request(msgpack.packb({"v": 1, "t": "request", "id": "x"}))


def test_names_are_per_node_and_per_call() -> None:
    assert env.control_stream("node-a") != env.control_stream("node-b")
    assert env.owner_key("CA1") == "callcue:call:CA1" and env.node_key("n") == "callcue:node:n"
