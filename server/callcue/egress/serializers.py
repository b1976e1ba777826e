"""Wire formats for agent/supervisor clients, chosen by WebSocket subprotocol.

JSON is the default (debuggable in a browser); msgpack halves the bytes and parse time for
busy supervisor consoles. Both carry exactly the same event dicts.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

from callcue import wire

JSON_SUBPROTOCOL = "callcue.v1.json"
MSGPACK_SUBPROTOCOL = "callcue.v1.msgpack"
SUBPROTOCOLS = (JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL)


class SerializerError(ValueError):
    pass


class JsonSerializer:
    subprotocol = JSON_SUBPROTOCOL
    binary = False

    def dumps(self, event: dict[str, Any]) -> str:
        return json.dumps(event, separators=(",", ":"), default=str)

    def loads(self, data: str | bytes) -> dict[str, Any]:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise SerializerError(f"invalid JSON: {e}") from e
        except RecursionError:
            raise SerializerError("invalid JSON: nested too deeply") from None
        if not isinstance(obj, dict):
            raise SerializerError("message must be a JSON object")
        return _checked(obj)


class MsgpackSerializer:
    subprotocol = MSGPACK_SUBPROTOCOL
    binary = True

    def dumps(self, event: dict[str, Any]) -> bytes:
        return msgpack.packb(event, use_bin_type=True, default=str)

    def loads(self, data: str | bytes) -> dict[str, Any]:
        if isinstance(data, str):
            raise SerializerError("msgpack subprotocol expects binary messages")
        try:
            obj = msgpack.unpackb(data, raw=False)
        except Exception as e:  # msgpack raises several unrelated types
            raise SerializerError(f"invalid msgpack: {e}") from e
        if not isinstance(obj, dict):
            raise SerializerError("message must be a msgpack map")
        return _checked(obj)


def _checked(obj: dict[str, Any]) -> dict[str, Any]:
    """Every string valid Unicode, every number in range, nesting bounded: a client message
    is refused here with a precise error, not deep inside a handler or the database."""
    try:
        return wire.clean_tree(obj, "message", depth=16, max_items=20_000)
    except wire.WireError as e:
        raise SerializerError(str(e)) from None


def choose(offered: list[str]) -> JsonSerializer | MsgpackSerializer:
    """Pick the first subprotocol we support in the client's order; JSON when none offered."""
    for p in offered:
        if p == MSGPACK_SUBPROTOCOL:
            return MsgpackSerializer()
        if p == JSON_SUBPROTOCOL:
            return JsonSerializer()
    return JsonSerializer()
