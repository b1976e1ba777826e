"""WebRTC (browsers and softphones), the parts that need no network: the offer request and
the decoded audio.

Signalling is one HTTP request. `POST /webrtc/offer` takes either JSON `{"sdp", "type":
"offer", "role"?, "call_id"?, "agent_id"?}` and answers JSON `{"type": "answer", "sdp", ...}`,
or a raw `application/sdp` body (WHIP, RFC 9725) with `role`/`call_id` in the query string,
answered `201 Created` with the SDP answer and a `Location` to `DELETE` for hangup. ICE, DTLS,
SRTP and the Opus/PCMU decoders are aiortc's (`transports/webrtc.py`); this module decides
what the offer means and turns aiortc's decoded frames into the pipeline's L16.

Roles: `agent` (the agent's softphone: the agent channel), `customer` (a browser caller), or
`both` (a softphone that sends two audio tracks: the first m-line is the customer, the second
the agent). An agent's token fixes the agent; a supervisor may name one. Two sessions with the
same `call_id` (a customer browser and an agent softphone) are one call.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from callcue import wire
from callcue.audio.codecs import Resampler
from callcue.events import Channel
from callcue.platforms.base import CallStart, Platform

ROLES = ("agent", "customer", "both")
PIPELINE_RATE = 16000
MAX_SDP_BYTES = 32 * 1024


class OfferError(Exception):
    """An offer refused with an HTTP status and a message a person can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(slots=True)
class OfferRequest:
    sdp: str
    role: str
    call_id: str
    agent_id: str | None
    whip: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> tuple[Channel, ...]:
        return ("customer", "agent") if self.role == "both" else (self.role,)  # type: ignore[return-value]


def audio_sections(sdp: str) -> int:
    return len(re.findall(r"^m=audio ", sdp, flags=re.MULTILINE))


def parse_offer(body: bytes, content_type: str, query: dict[str, str], *, user_id: str, role: str,
                default_role: str = "agent") -> OfferRequest:  # fmt: skip
    """The offer of one POST. `user_id`/`role` are the authenticated principal's."""
    if len(body) > MAX_SDP_BYTES:
        raise OfferError(413, f"offer of {len(body)} bytes exceeds {MAX_SDP_BYTES}")
    ctype = content_type.split(";")[0].strip().lower()
    fields: dict[str, Any]
    if ctype == "application/sdp":
        fields = dict(query)
        try:
            sdp = body.decode("utf-8")
        except UnicodeDecodeError:
            raise OfferError(400, "the SDP offer is not UTF-8") from None
        whip = True
    elif ctype in ("application/json", ""):
        try:
            fields = json.loads(body)
        except (ValueError, RecursionError):
            raise OfferError(400, "body is not JSON: send {\"sdp\": ..., \"type\": \"offer\"} or application/sdp") from None
        if not isinstance(fields, dict):
            raise OfferError(400, "body must be a JSON object {\"sdp\", \"type\": \"offer\"}")
        if fields.get("type") != "offer":
            raise OfferError(400, f"type must be 'offer', got {str(fields.get('type'))[:20]!r}")
        offered = fields.get("sdp")
        if not isinstance(offered, str):
            raise OfferError(400, "sdp must be a string")
        sdp = offered
        whip = False
    else:
        raise OfferError(415, f"Content-Type {ctype[:40]!r}: send application/json or application/sdp")
    if not sdp.startswith("v=0"):
        raise OfferError(400, "sdp is not a session description (it must start with v=0)")
    n_audio = audio_sections(sdp)
    want = fields.get("role", default_role)
    if want not in ROLES:
        raise OfferError(400, f"role {str(want)[:20]!r}: expected agent, customer or both")
    need = 2 if want == "both" else 1
    if n_audio < need:
        raise OfferError(400, f"role {want!r} needs {need} audio m-line(s), the offer has {n_audio}")
    try:
        call_id = wire.ident(fields.get("call_id"), "call_id", required=False) or "webrtc-" + uuid.uuid4().hex
        named = wire.ident(fields.get("agent_id"), "agent_id", required=False)
        meta = wire.clean_tree(fields.get("metadata") or {}, "metadata", depth=3, max_items=50)
    except wire.WireError as e:
        raise OfferError(400, str(e)) from None
    if role == "agent":
        if named is not None and named != user_id:
            raise OfferError(403, "an agent's token streams that agent's calls only")
        agent_id: str | None = user_id
    else:
        agent_id = named
    return OfferRequest(sdp=sdp, role=want, call_id=call_id, agent_id=agent_id, whip=whip,
                        metadata=meta if isinstance(meta, dict) else {})  # fmt: skip


def call_start(req: OfferRequest, session_id: str) -> CallStart:
    return CallStart(call_id=req.call_id, encoding="L16", sample_rate=PIPELINE_RATE, channels=req.channels,
                     agent_id=req.agent_id, platform="webrtc", join="exact",
                     metadata={"webrtc_session": session_id, "role": req.role, **req.metadata})  # fmt: skip


class FrameConverter:
    """aiortc's decoded frames (s16, 48 kHz Opus or 8 kHz PCMU, mono or stereo, packed or
    planar) -> 16 kHz mono L16 for the pipeline, with a streaming resampler per track."""

    def __init__(self, out_rate: int = PIPELINE_RATE) -> None:
        self.out_rate = out_rate
        self._rs: Resampler | None = None
        self.samples_in = 0

    def convert(self, frame: Any) -> bytes:
        pcm = frame.to_ndarray()
        channels = len(frame.layout.channels)
        if frame.format.is_planar:
            mono = pcm.reshape(channels, -1).astype(np.float32).mean(axis=0)
        else:
            mono = pcm.reshape(-1, channels).astype(np.float32).mean(axis=1)
        if frame.format.name not in ("s16", "s16p"):
            mono = mono * 32767.0  # float formats
        data = np.clip(mono, -32768, 32767).astype("<i2").tobytes()
        if self._rs is None or self._rs.in_rate != frame.sample_rate:
            self._rs = Resampler(frame.sample_rate, self.out_rate)
        self.samples_in += len(mono)
        return self._rs.process(data)


PLATFORM = Platform("webrtc", "/webrtc/offer", lambda max_bytes, cfg, hs: None, transport="http")  # type: ignore[arg-type,return-value]
