"""Sans-I/O parser for FreeSWITCH mod_audio_fork and the jambonz `listen` verb.

Both open a WebSocket (subprotocol `audio.drachtio.org` / `audiostream.drachtio.org` for
mod_audio_fork, `audio.jambonz.org` for jambonz), send one JSON text frame of metadata, then
only binary frames of 16-bit little-endian linear PCM: mono (the caller), stereo (caller and
callee interleaved, one sample each) or mixed (both parties in one channel). jambonz puts
`callSid`, `sampleRate` and `mixType` in the metadata; mod_audio_fork sends whatever metadata
the `uuid_audio_fork` command was given, so rate and mix may come from the config instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from callcue import wire
from callcue.auth import bearer_token, secret_in, token_matches
from callcue.platforms.base import (
    AudioIn,
    CallStart,
    CallStop,
    Handshake,
    IngressEvent,
    Platform,
    ProtocolError,
    json_object,
)

SUBPROTOCOLS = ("audio.jambonz.org", "audio.drachtio.org", "audiostream.drachtio.org")
RATES = (8000, 16000, 24000, 32000, 48000, 64000)
MIX_TYPES = ("mono", "stereo", "mixed")
SECRET_FIELDS = ("secret", "token", "callcue_secret")


class AudioForkProtocol:
    def __init__(self, *, max_message_bytes: int = 64 * 1024, default_rate: int = 8000, default_mix: str = "mono",
                 customer: str = "left", secrets: tuple[str, ...] = (), authorized: bool = True) -> None:  # fmt: skip
        self.max_message_bytes = max_message_bytes
        #: False: the upgrade brought no valid secret, so the metadata must carry one of `secrets`
        self.secrets, self.authorized = secrets, authorized
        self.default_rate, self.default_mix, self.customer = default_rate, default_mix, customer
        self.call_id: str | None = None
        self.mix = default_mix
        self.state = "new"

    def receive_text(self, text: str) -> list[IngressEvent]:
        if self.state != "new":
            raise ProtocolError(1008, "only the first frame may be text (the metadata)")
        meta = json_object(text, self.max_message_bytes, "metadata frame")
        if not self.authorized:
            if not secret_in(meta, SECRET_FIELDS, self.secrets):
                raise ProtocolError(1008, "missing or wrong shared secret (?secret= in the fork URL, Authorization: "
                                          "Bearer, or 'secret' in the metadata)")  # fmt: skip
            self.authorized = True
        call_id = meta.get("callSid") or meta.get("call_sid") or meta.get("uuid") or meta.get("callId")
        try:
            call_id = wire.ident(call_id, "callSid")
            agent_id = wire.ident(meta.get("agent_id") or (meta.get("metadata") or {}).get("agent_id")
                                  if isinstance(meta.get("metadata", {}), dict) else None, "agent_id", required=False)  # fmt: skip
        except wire.WireError as e:
            raise ProtocolError(1007, f"metadata: {e} (callSid, call_sid, uuid or callId names the call)") from None
        rate = meta.get("sampleRate", meta.get("sample_rate", self.default_rate))
        if isinstance(rate, str) and rate.lower() in ("8k", "16k", "24k", "32k", "48k", "64k"):
            rate = int(rate[:-1]) * 1000
        if rate not in RATES or isinstance(rate, bool):
            raise ProtocolError(1003, f"unsupported sampleRate {str(rate)[:20]!r}; supported: {', '.join(map(str, RATES))}")
        mix = meta.get("mixType", meta.get("mix_type", self.default_mix))
        if mix not in MIX_TYPES:
            raise ProtocolError(1003, f"unsupported mixType {str(mix)[:20]!r}; supported: mono, stereo, mixed")
        self.call_id, self.mix, self.state = call_id, mix, "started"
        channels = ("customer", "agent") if mix == "stereo" else ("customer",)
        public = {k: v for k, v in meta.items() if k not in SECRET_FIELDS}
        return [CallStart(call_id=call_id, encoding="L16", sample_rate=int(rate), channels=channels,  # type: ignore[arg-type]
                          agent_id=agent_id, platform="audiofork", metadata={"mix_type": mix, "fork": public})]

    def receive_bytes(self, data: bytes) -> list[IngressEvent]:
        if self.state == "new":
            raise ProtocolError(1008, "audio before the metadata frame")
        if self.state == "stopped":
            raise ProtocolError(1008, "audio after the stream ended")
        if len(data) > self.max_message_bytes:
            raise ProtocolError(1009, f"binary frame of {len(data)} bytes exceeds {self.max_message_bytes} (the frame size limit)")
        assert self.call_id is not None
        if self.mix != "stereo":
            if len(data) % 2:
                raise ProtocolError(1007, f"L16 frame of {len(data)} bytes is not whole 16-bit samples")
            return [AudioIn(self.call_id, "customer", bytes(data))] if data else []
        if len(data) % 4:
            raise ProtocolError(1007, f"stereo L16 frame of {len(data)} bytes is not whole sample pairs")
        pairs = np.frombuffer(data, dtype="<i2").reshape(-1, 2)
        left, right = pairs[:, 0].tobytes(), pairs[:, 1].tobytes()
        cust, agent = (left, right) if self.customer == "left" else (right, left)
        return [AudioIn(self.call_id, "customer", cust), AudioIn(self.call_id, "agent", agent)] if data else []

    def receive_eof(self) -> list[IngressEvent]:
        if self.state == "started" and self.call_id is not None:
            self.state = "stopped"
            return [CallStop(self.call_id, "disconnected")]
        return []

    def data_to_send(self) -> list[str | bytes]:
        return []


def _upgrade_secret(hs: Handshake) -> str | None:
    q = hs.query
    return q.get("secret") or q.get("token") or bearer_token(hs.headers)


def authenticate(hs: Handshake, cfg: Any) -> str | None:
    """A shared secret in the URL (`?secret=`) or a bearer header is checked here, and a wrong
    one refused. None given: the metadata frame must carry it (`secret`), which the parser
    checks before the call starts; without it the socket is closed with 1008."""
    given = _upgrade_secret(hs)
    if given is None:
        return None if cfg.secrets else "no shared secret is configured for /ws/audiofork"
    if token_matches(given, cfg.secrets):
        return None
    return "missing or wrong shared secret (?secret= in the fork URL, Authorization: Bearer, or 'secret' in the metadata)"


def _parser(max_bytes: int, cfg: Any, hs: Handshake) -> AudioForkProtocol:
    return AudioForkProtocol(max_message_bytes=max_bytes, default_rate=cfg.default_sample_rate,
                             default_mix=cfg.default_mix_type, customer=cfg.customer_channel, secrets=tuple(cfg.secrets),
                             authorized=token_matches(_upgrade_secret(hs), cfg.secrets))  # fmt: skip


PLATFORM = Platform("audiofork", "/ws/audiofork", _parser, authenticate=authenticate, subprotocols=SUBPROTOCOLS)
