"""Sans-I/O parser for the Vonage Voice API WebSocket (NCCO `connect` to a `websocket` endpoint).

Vonage opens the socket and first sends one text message, `{"event": "websocket:connected",
"content-type": "audio/l16;rate=16000", ...}`, carrying the `headers` object of the NCCO
endpoint as top-level fields; then binary frames of 16-bit signed little-endian linear PCM,
mono, 20 ms each (640 bytes at 16 kHz, 320 at 8 kHz). Later text messages are events:
`websocket:dtmf` (`digit`, `duration` in ms), `websocket:notify` (the answer to a `notify`
action, with its `payload`), `websocket:cleared`. There is no stop message: Vonage closes the
socket when the leg ends.

The call and its party come from the NCCO headers: `call_uuid` (or `uuid`,
`conversation_uuid`) names the call, `agent_id` its agent, `channel` (`customer` or `agent`)
the party on this leg; a second leg with the same call id joins the call (the other party).

Authentication, on by default: a shared secret, passed in the NCCO `headers`
(`"secret": ...`, so it arrives in `websocket:connected`), in the endpoint URL (`?secret=`),
or in the upgrade's `Authorization` (the endpoint's `authorization` of type `custom`, sent
verbatim: `Bearer <secret>` or the bare secret); or the JWT Vonage signs for the upgrade
(`authorization` of type `vonage`: "the same JWT used for signed webhooks", `Bearer {JWT}`),
verified with the account's signature secret (HS256). A socket whose credentials were not on
the upgrade must bring them in its first message, or it is closed with 1008 before any audio.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import jwt

from callcue import wire
from callcue.auth import bearer_token, secret_in, token_matches
from callcue.events import Channel
from callcue.platforms.base import (
    AudioIn,
    CallStart,
    CallStop,
    Dtmf,
    Handshake,
    IngressEvent,
    Mark,
    Platform,
    ProtocolError,
    json_object,
)

RATES = (8000, 16000, 24000)
CONTENT_TYPE = re.compile(r"^audio/l16\s*;\s*rate=(\d+)$", re.IGNORECASE)
DTMF_DIGITS = frozenset("0123456789*#ABCD")
SECRET_FIELDS = ("secret", "callcue_secret", "token", "authorization")


class VonageProtocol:
    def __init__(self, *, max_message_bytes: int = 64 * 1024, secrets: tuple[str, ...] = (), authorized: bool = False,
                 default_channel: Channel = "customer", call_id_from_url: str | None = None) -> None:  # fmt: skip
        self.max_message_bytes = max_message_bytes
        self.secrets = secrets
        self.authorized = authorized
        self.default_channel: Channel = default_channel
        self.url_call_id = call_id_from_url
        self.state = "new"  # new -> started -> stopped
        self.call_id: str | None = None
        self.channel: Channel = default_channel
        self.rate = 0
        self.samples = 0
        self.notifications: list[Any] = []

    def data_to_send(self) -> list[str | bytes]:
        return []  # CallCue only listens: it never plays audio into the call

    def receive_eof(self) -> list[IngressEvent]:
        if self.state == "started" and self.call_id is not None:
            self.state = "stopped"
            return [CallStop(self.call_id, "hangup")]
        return []

    def receive_text(self, text: str) -> list[IngressEvent]:
        msg = json_object(text, self.max_message_bytes, "message")
        event = msg.get("event")
        if not isinstance(event, str):
            raise ProtocolError(1007, "message has no string field 'event'")
        if self.state == "new":
            if event != "websocket:connected":
                raise ProtocolError(1008, f"first message must be 'websocket:connected', got {event[:40]!r}")
            return self._connected(msg)
        if self.state == "stopped":
            raise ProtocolError(1008, f"{event[:40]!r} after the stream ended")
        assert self.call_id is not None
        if event == "websocket:dtmf":
            digit = msg.get("digit")
            if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
                raise ProtocolError(1007, f"websocket:dtmf digit {str(digit)[:10]!r}: expected one of 0-9 * # A-D")
            return [Dtmf(self.call_id, digit.upper())]
        if event == "websocket:notify":
            self.notifications.append(msg.get("payload"))
            return [Mark(self.call_id, str(msg.get("payload"))[:100])]
        if event == "websocket:connected":
            raise ProtocolError(1008, "second 'websocket:connected' on one socket")
        return []  # websocket:cleared and events Vonage adds later: nothing for a listener

    def receive_bytes(self, data: bytes) -> list[IngressEvent]:
        if self.state == "new":
            raise ProtocolError(1008, "audio before 'websocket:connected'")
        if self.state == "stopped":
            raise ProtocolError(1008, "audio after the stream ended")
        if len(data) > self.max_message_bytes:
            raise ProtocolError(1009, f"binary frame of {len(data)} bytes exceeds {self.max_message_bytes} (the frame size limit)")
        if len(data) % 2:
            raise ProtocolError(1007, f"L16 frame of {len(data)} bytes is not whole 16-bit samples")
        assert self.call_id is not None
        if not data:
            return []
        at = self.samples / self.rate
        self.samples += len(data) // 2
        return [AudioIn(self.call_id, self.channel, bytes(data), at)]

    def _connected(self, msg: dict[str, Any]) -> list[IngressEvent]:
        if not self.authorized:
            if not secret_in(msg, SECRET_FIELDS, self.secrets, bearer=True):
                raise ProtocolError(1008, "missing or wrong shared secret (NCCO headers 'secret', ?secret= in the "
                                          "endpoint URL, Authorization: Bearer, or Vonage's signed JWT)")  # fmt: skip
            self.authorized = True
        ctype = msg.get("content-type")
        m = CONTENT_TYPE.match(ctype) if isinstance(ctype, str) else None
        if m is None or int(m.group(1)) not in RATES:
            raise ProtocolError(1003, f"unsupported content-type {str(ctype)[:40]!r}; "
                                      f"supported: audio/l16;rate=8000|16000|24000")  # fmt: skip
        given = msg.get("call_uuid") or msg.get("uuid") or msg.get("conversation_uuid") or self.url_call_id
        channel = msg.get("channel", self.default_channel)
        if channel not in ("customer", "agent"):
            raise ProtocolError(1007, f"header channel {str(channel)[:20]!r}: expected 'customer' or 'agent'")
        try:
            call_id = (wire.ident(given, "call_uuid") if given is not None else None) or "vonage-" + uuid.uuid4().hex
            agent_id = wire.ident(msg.get("agent_id"), "agent_id", required=False)
            public = wire.clean_tree({k: v for k, v in msg.items() if k not in SECRET_FIELDS}, "websocket:connected",
                                     depth=4, max_items=100)  # fmt: skip
        except wire.WireError as e:
            raise ProtocolError(1007, f"websocket:connected: {e}") from None
        self.call_id, self.rate, self.channel, self.state = call_id, int(m.group(1)), channel, "started"
        return [CallStart(call_id=call_id, encoding="L16", sample_rate=self.rate, channels=(channel,), agent_id=agent_id,
                          platform="vonage", join="exact" if "channel" in msg else "next_free",
                          metadata={"vonage": public})]  # fmt: skip


def _jwt_ok(token: str, cfg: Any) -> bool:
    """Vonage's signed upgrade: HS256 over the account signature secret, fresh `iat`."""
    for secret in cfg.signature_secrets:
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["iat"]}, leeway=30)
        except jwt.PyJWTError:
            continue
        if abs(time.time() - float(claims["iat"])) > cfg.max_jwt_age_s:
            continue
        if cfg.application_id and claims.get("application_id") not in (None, cfg.application_id):
            continue
        return True
    return False


def _upgrade_secret(hs: Handshake) -> str | None:
    """`?secret=`, or the endpoint's `authorization` of type `custom`, which Vonage sends
    verbatim (`Bearer <secret>`, or the bare secret)."""
    raw = hs.headers.get("authorization", "").strip()
    return hs.query.get("secret") or bearer_token(hs.headers) or raw or None


def upgrade_authorized(hs: Handshake, cfg: Any) -> bool:
    given = _upgrade_secret(hs)
    if token_matches(given, cfg.secrets):
        return True
    token = bearer_token(hs.headers)
    return bool(token and token.count(".") == 2 and _jwt_ok(token, cfg))


def authenticate(hs: Handshake, cfg: Any) -> str | None:
    """Credentials on the upgrade are checked here; wrong ones are refused. None given: the
    secret must come in `websocket:connected` (the NCCO headers), checked by the parser."""
    if _upgrade_secret(hs) is None:
        return None if cfg.secrets else "no shared secret is configured for /ws/vonage"
    return None if upgrade_authorized(hs, cfg) else "wrong shared secret or JWT on the upgrade"


def _parser(max_bytes: int, cfg: Any, hs: Handshake) -> VonageProtocol:
    return VonageProtocol(max_message_bytes=max_bytes, secrets=tuple(cfg.secrets), authorized=upgrade_authorized(hs, cfg),
                          default_channel=cfg.default_channel, call_id_from_url=hs.query.get("call_uuid"))  # fmt: skip


PLATFORM = Platform("vonage", "/ws/vonage", _parser, authenticate=authenticate)
