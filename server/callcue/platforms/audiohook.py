"""Sans-I/O server side of Genesys Cloud AudioHook protocol v2.

Genesys opens a WebSocket to `/ws/audiohook` with `Audiohook-Organization-Id`,
`-Session-Id`, `-Correlation-Id` and `X-API-KEY` on the upgrade (signed as RFC 9421 when
the key has a client secret: `audiohook_auth`). Text frames are JSON messages:
`{"version": "2", "id": <session id>, "type", "seq", "serverseq" (client) | "clientseq"
(server), "position" (client, ISO 8601 `PT<seconds>S`), "parameters"}`; binary frames are
audio in the media format the server chose from the `open` offer (PCMU or L16, 8 kHz, one
channel or two interleaved sample by sample in the order of the media's `channels`).

Transactions, client -> server: `open` -> `opened` (exactly one offered media, unmodified,
and the supported languages when asked); `ping` -> `pong`; `paused`/`resumed` (the latter
with the discarded duration: a gap on the call clock); `discarded` (audio Genesys dropped:
a gap too); `update` (language); `error` (logged); `close` -> `closed`. Server -> client:
`pause`/`resume` and `disconnect` (reason `completed`, `unauthorized` or `error`, with
`info`), after which the client sends `close`. Every client message's `seq` is the previous
one's plus one, its `serverseq` the last server `seq` it saw, its `position` well-formed and
not going back; every server message's `clientseq` is the last client `seq`.

Errors never just drop the socket: they become `disconnect` with reason `error` (or
`unauthorized`) and the session waits for the client's `close` to answer `closed`, as the
reference implementation does. A connection probe (`conversationId` all zeros) is answered
`opened` and creates no call. A `close` with reason `reconnect`, or a connection lost
mid-call, leaves the call waiting for the continued session (`continuedSessions` in the next
`open`), which joins the same call clock.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeGuard

import numpy as np

from callcue import wire
from callcue.events import Channel
from callcue.platforms.audiohook_auth import verify_upgrade
from callcue.platforms.audiohook_transcripts import duration, transcript_entities
from callcue.platforms.base import (
    AudioIn,
    CallStart,
    CallStop,
    CloseConnection,
    EndUtterance,
    GapFilled,
    Handshake,
    Heartbeat,
    IngressEvent,
    Paused,
    Platform,
    ProtocolError,
    Resumed,
    json_object,
)

log = logging.getLogger(__name__)

VERSION = "2"
RATE = 8000
NULL_UUID = "00000000-0000-0000-0000-000000000000"
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# the reference implementation's grammar (`PT5S`, `PT0.25S`, `PT.5S`, `PT5.S`): JavaScript prints
# a float's shortest repr, so up to 17 significant digits arrive; bounded in length instead
DURATION = re.compile(r"^PT(\d+\.\d*|\.?\d+)S$")
FORMATS = {"PCMU": 1, "L16": 2}  # bytes per sample
SILENCE = {"PCMU": b"\xff", "L16": b"\x00\x00"}
MEDIA_CHANNELS = ("external", "internal")
CLOSE_REASONS = ("end", "error", "disconnect", "reconnect")
HEADERS = ("audiohook-organization-id", "audiohook-session-id", "audiohook-correlation-id", "x-api-key")


def parse_duration(v: Any, path: str) -> float:
    m = DURATION.match(v) if isinstance(v, str) and len(v) <= 40 else None
    if m is None:
        raise ProtocolError(1007, f"{path} {str(v)[:30]!r} is not an ISO 8601 duration like 'PT1.25S'")
    return float(m.group(1))


def choose_media(offered: Any) -> dict[str, Any] | None:
    """The offer CallCue takes: two channels before one (both parties, separately), the
    client's order otherwise; returned exactly as offered (the client compares it)."""
    if not isinstance(offered, list):
        return None
    ok = [m for m in offered if isinstance(m, dict) and m.get("type") == "audio" and m.get("format") in FORMATS
          and m.get("rate") == RATE and isinstance(m.get("channels"), list) and 1 <= len(m["channels"]) <= 2
          and all(c in MEDIA_CHANNELS for c in m["channels"]) and len(set(m["channels"])) == len(m["channels"])]  # fmt: skip
    if not ok:
        return None
    return max(ok, key=lambda m: len(m["channels"]))  # max keeps the first of equals


class AudioHookProtocol:
    """One instance per AudioHook WebSocket (one session).

    Args:
        session_id, organization_id: from the upgrade headers; every message must carry the
            session id, and `open` the organization id.
        customer: which media channel is the customer (`external` in Genesys terms).
        refused: why the upgrade's credentials were refused: the session then answers `open`
            with `disconnect` reason `unauthorized`, as Genesys expects, and starts nothing.
    """

    def __init__(self, *, session_id: str | None, organization_id: str | None, correlation_id: str | None = None,
                 max_message_bytes: int = 64 * 1024, customer: str = "external", languages: tuple[str, ...] = ("en-US",),
                 refused: str | None = None, max_gap_seconds: float = 3600.0, gap_slack_s: float = 30.0,
                 transcript_events: bool = False, clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.session_id, self.organization_id, self.correlation_id = session_id, organization_id, correlation_id
        self.max_message_bytes = max_message_bytes
        self.names: dict[str, Channel] = {"external": "customer" if customer == "external" else "agent",
                                          "internal": "agent" if customer == "external" else "customer"}  # fmt: skip
        self.languages = languages
        self.refused = refused
        self.max_gap_seconds, self.gap_slack_s = max_gap_seconds, gap_slack_s
        self._clock = clock
        self._opened_at = clock()
        #: new -> active <-> paused -> closed; disconnecting (we sent `disconnect`) -> closed
        self.state = "new"
        self.seq = 0  # last server seq sent
        self.clientseq = 0  # last client seq received
        self.serverseq = 0  # last serverseq the client acknowledged
        self.position = 0.0
        self.call_id: str | None = None
        self.probe = False
        self.media: dict[str, Any] | None = None
        self.channels: tuple[Channel, ...] = ()
        self.samples = 0  # per channel, on this session's clock (audio received plus gaps filled)
        self.gap_seconds = 0.0
        self.language: str | None = None
        self.rtt: float | None = None
        self.pause_requested = False
        self.client_errors: list[dict[str, Any]] = []
        self._out: list[str | bytes] = []
        #: send finals back as `event` messages with `transcript` entities (the Transcription
        #: Connector extension); off for a plain AudioHook Monitor integration
        self.transcript_events = transcript_events
        #: the call clock where this session's stream position 0 sits (a continued session)
        self.clock_base = 0.0
        self._closed_pending = False
        #: (call-clock time, seconds) of every gap filled on this session: Genesys counts
        #: transcript offsets on the audio it sent, so they are taken out again
        self._gaps: list[tuple[float, float]] = []

    # -- what the server may say on its own ------------------------------------------------
    def pause(self) -> None:
        """Ask Genesys to stop sending audio (it answers `paused`)."""
        if self.state == "active":
            self.pause_requested = True
            self._send("pause", {})

    def resume(self) -> None:
        if self.state == "paused" or self.pause_requested:
            self.pause_requested = False
            self._send("resume", {})

    def disconnect(self, reason: str = "completed", info: str | None = None) -> None:
        """End the session from our side; Genesys answers `close`, we answer `closed`."""
        if self.state in ("new", "active", "paused"):
            self._send("disconnect", {"reason": reason, **({"info": info[:400]} if info else {})})
            self.state = "disconnecting"

    def finish_close(self) -> None:
        """The call's part is flushed: the `closed` held back for the last transcripts."""
        if self._closed_pending:
            self._closed_pending = False
            self._send("closed", {})

    def transcript(self, t: Any) -> None:
        """A final of this call back to Genesys as `event`s, one per utterance
        (`audiohook_transcripts`), on the clock of the audio this client sent."""
        if not self.transcript_events or self.media is None or not t.text:
            return
        if self.state not in ("active", "paused") and not self._closed_pending:
            return
        name = {ours: theirs for theirs, ours in self.names.items()}.get(t.channel)
        if name not in self.media["channels"]:
            return
        for entity in transcript_entities(t, self.media["channels"].index(name), self.sent_clock, self.language):
            self._send("event", {"entities": [entity]})

    def sent_clock(self, call_time: float) -> float:
        """A call-clock time on the clock of the audio this session's client sent: without
        this session's earlier stream (a continued session) and without the gaps filled."""
        filled = sum(min(sec, max(0.0, call_time - at)) for at, sec in self._gaps)
        return max(0.0, call_time - self.clock_base - filled)

    def fail(self, error: ProtocolError) -> bool:
        """A protocol error (ours or from the call side) becomes `disconnect` reason `error`:
        the socket stays open for the client's `close`."""
        if self.state in ("closed", "disconnecting"):
            return self.state == "disconnecting"
        self.disconnect("error", error.reason)
        return True

    # -- parser interface ------------------------------------------------------------------
    def data_to_send(self) -> list[str | bytes]:
        out, self._out = self._out, []
        return out

    def receive_eof(self) -> list[IngressEvent]:
        """The socket went without `close`: Genesys reconnects with a continued session."""
        if self.call_id is not None and self.state in ("active", "paused", "disconnecting"):
            linger = self.state != "disconnecting"
            self.state = "closed"
            return [CallStop(self.call_id, "disconnected", linger=linger)]
        self.state = "closed"
        return []

    def receive_text(self, text: str) -> list[IngressEvent]:
        msg = json_object(text, self.max_message_bytes, "message")
        if self.state == "closed":
            raise ProtocolError(1008, "message after 'closed'")
        mtype = msg.get("type")
        if not isinstance(mtype, str):
            raise ProtocolError(1007, "message has no string field 'type'")
        if self.state == "disconnecting":
            # we said disconnect (often over a broken sequence): only the client's close
            # matters now, answered whatever its numbering
            if _count(msg.get("seq")):
                self.clientseq = msg["seq"]
            params = msg.get("parameters")
            return self._on_close(params if isinstance(params, dict) else {}) if mtype == "close" else []
        self._check_envelope(msg, mtype)
        params = msg.get("parameters", {})
        if not isinstance(params, dict):
            raise ProtocolError(1007, f"'{mtype}'.parameters must be an object")
        handler = getattr(self, f"_on_{mtype}", None)
        if handler is None:
            raise ProtocolError(1008, f"unknown message type {mtype[:30]!r}")
        return handler(params)

    def receive_bytes(self, data: bytes) -> list[IngressEvent]:
        if self.state == "disconnecting":
            return []  # audio in flight while the client handles our disconnect
        if self.state != "active" or self.media is None:
            raise ProtocolError(1008, f"audio in state {self.state} (audio flows only between 'opened' and 'paused'/'close')")
        if len(data) > self.max_message_bytes:
            raise ProtocolError(1009, f"binary frame of {len(data)} bytes exceeds {self.max_message_bytes} (the frame size limit)")
        if self.probe or self.call_id is None:
            return []
        fmt = self.media["format"]
        width = FORMATS[fmt] * len(self.channels)
        if len(data) % width:
            raise ProtocolError(1007, f"{fmt} frame of {len(data)} bytes is not whole {len(self.channels)}-channel samples")
        n = len(data) // width
        if n == 0:
            return []
        at = self.samples / RATE
        self.samples += n
        if len(self.channels) == 1:
            return [AudioIn(self.call_id, self.channels[0], bytes(data), at)]
        frames = np.frombuffer(data, dtype=np.uint8 if fmt == "PCMU" else "<i2").reshape(n, 2)
        return [AudioIn(self.call_id, ch, frames[:, i].tobytes(), at) for i, ch in enumerate(self.channels)]

    # -- envelope --------------------------------------------------------------------------
    def _check_envelope(self, msg: dict[str, Any], mtype: str) -> None:
        if msg.get("version") != VERSION:
            raise ProtocolError(1007, f"'{mtype}': version {str(msg.get('version'))[:10]!r} is not '2'")
        sid = msg.get("id")
        if not isinstance(sid, str) or (self.session_id is not None and sid.lower() != self.session_id.lower()):
            raise ProtocolError(1008, f"'{mtype}': id {str(sid)[:40]!r} is not this session's id (Audiohook-Session-Id)")
        seq, serverseq = msg.get("seq"), msg.get("serverseq")
        if not _count(seq) or seq != self.clientseq + 1:
            raise ProtocolError(1008, f"'{mtype}': seq {str(seq)[:20]} out of order (expected {self.clientseq + 1})")
        if not _count(serverseq) or serverseq > self.seq or serverseq < self.serverseq:
            raise ProtocolError(1008, f"'{mtype}': serverseq {str(serverseq)[:20]} does not match the server's messages "
                                      f"(sent up to {self.seq}, acknowledged {self.serverseq})")  # fmt: skip
        position = parse_duration(msg.get("position"), f"'{mtype}'.position")
        if position + 1e-6 < self.position:
            raise ProtocolError(1008, f"'{mtype}': position {msg.get('position')} goes back from {duration(self.position)}")
        self.clientseq, self.serverseq, self.position = seq, serverseq, position

    def _send(self, mtype: str, params: dict[str, Any]) -> None:
        self.seq += 1
        self._out.append(json.dumps({"version": VERSION, "id": self.session_id or NULL_UUID, "type": mtype,
                                     "seq": self.seq, "clientseq": self.clientseq, "parameters": params},
                                    separators=(",", ":")))  # fmt: skip

    # -- transactions ----------------------------------------------------------------------
    def _on_open(self, p: dict[str, Any]) -> list[IngressEvent]:
        if self.state != "new":
            raise ProtocolError(1008, f"'open' in state {self.state}")
        if self.refused is not None:
            self.disconnect("unauthorized", self.refused)
            return []
        org = p.get("organizationId")
        if not isinstance(org, str) or not UUID.match(org):
            raise ProtocolError(1007, "open.organizationId must be a UUID")
        if self.organization_id is not None and org.lower() != self.organization_id.lower():
            self.disconnect("unauthorized", "open.organizationId differs from Audiohook-Organization-Id")
            return []
        conv = p.get("conversationId")
        if not isinstance(conv, str) or not UUID.match(conv):
            raise ProtocolError(1007, "open.conversationId must be a UUID")
        participant = p.get("participant", {})
        if not isinstance(participant, dict):
            raise ProtocolError(1007, "open.participant must be an object")
        media = choose_media(p.get("media"))
        if media is None:
            raise ProtocolError(1003, "no offered media is supported (CallCue takes audio PCMU or L16 at 8000 Hz, "
                                      "channels external and/or internal)")  # fmt: skip
        language = p.get("language")
        self.language = language if isinstance(language, str) else None
        continued = p.get("continuedSessions") or []
        if not isinstance(continued, list) or not all(isinstance(c, dict) for c in continued):
            raise ProtocolError(1007, "open.continuedSessions must be a list of objects")
        custom = p.get("customConfig") or {}
        if not isinstance(custom, dict):
            raise ProtocolError(1007, "open.customConfig must be an object")
        try:
            custom = wire.clean_tree(custom, "open.customConfig", depth=4, max_items=200)
            participant = wire.clean_tree(participant, "open.participant", depth=3, max_items=50)
            agent_id = wire.ident(custom.get("agent_id"), "open.customConfig.agent_id", required=False)
        except wire.WireError as e:
            raise ProtocolError(1007, str(e)) from None
        self.media = media
        self.channels = tuple(self.names[c] for c in media["channels"])
        opened: dict[str, Any] = {"media": [media], "startPaused": False}
        if p.get("supportedLanguages") is True:
            opened["supportedLanguages"] = list(self.languages)
        self._send("opened", opened)
        self.state = "active"
        if conv == NULL_UUID:
            self.probe = True  # Genesys checking the endpoint: answered, no call
            return []
        self.call_id = conv.lower()
        return [CallStart(call_id=self.call_id, encoding=media["format"], sample_rate=RATE, channels=self.channels,
                          agent_id=agent_id, platform="audiohook", join="exact",
                          metadata={"organization_id": org, "session_id": self.session_id,
                                    "correlation_id": self.correlation_id, "participant": participant,
                                    "language": self.language, "media": media, "custom_config": custom,
                                    "continued_sessions": [str(c.get("id"))[:40] for c in continued]})]  # fmt: skip

    def _on_ping(self, p: dict[str, Any]) -> list[IngressEvent]:
        if "rtt" in p:
            self.rtt = parse_duration(p["rtt"], "ping.rtt")
        self._send("pong", {})
        return [Heartbeat()]

    def _on_paused(self, p: dict[str, Any]) -> list[IngressEvent]:
        if self.state != "active":
            log.info("audiohook: 'paused' ignored in state %s", self.state)
            return []
        self.state = "paused"
        self.pause_requested = False
        # what was said up to the pause is one utterance; what follows the resume another
        return [Paused(self.call_id), EndUtterance(self.call_id)] if self.call_id else []

    def _on_resumed(self, p: dict[str, Any]) -> list[IngressEvent]:
        if self.state != "paused":
            log.info("audiohook: 'resumed' ignored in state %s", self.state)
            return []
        self.state = "active"
        events: list[IngressEvent] = [Resumed(self.call_id)] if self.call_id else []
        return events + self._gap(p, "resumed", "paused")

    def _on_discarded(self, p: dict[str, Any]) -> list[IngressEvent]:
        if self.state not in ("active", "paused"):
            raise ProtocolError(1008, f"'discarded' in state {self.state}")
        return self._gap(p, "discarded", "discarded by the client")

    def _gap(self, p: dict[str, Any], mtype: str, why: str) -> list[IngressEvent]:
        """Audio the client did not send (paused, or dropped) still passed on the call clock:
        silence of that length keeps word times and the other channel aligned. How much is
        missing is what the message's `position` is ahead of the audio received (the same
        socket carries both, in order), at most what it says was discarded: a client that
        reports a discard but sent the audio anyway (the reference test suite's does) gets
        no gap, one whose stream position ran on while paused gets exactly that gap."""
        parse_duration(p.get("start"), f"{mtype}.start")  # well-formed; Genesys may report it ahead of position
        claimed = parse_duration(p.get("discarded"), f"{mtype}.discarded")
        behind = self.position - self.samples / RATE
        missing = min(claimed, behind) if behind > 0.02 else 0.0
        if missing <= 0 or self.call_id is None or self.media is None:
            return []
        if missing > self.max_gap_seconds:
            raise ProtocolError(1007, f"{mtype}.discarded {missing:.0f} s is more than {self.max_gap_seconds:.0f} s")
        budget = self._clock() - self._opened_at + self.gap_slack_s
        if self.gap_seconds + missing > budget:
            raise ProtocolError(1008, f"{mtype}.discarded: {self.gap_seconds + missing:.0f} s of gaps in a session open "
                                      f"{self._clock() - self._opened_at:.0f} s")  # fmt: skip
        n = round(missing * RATE)
        at = self.samples / RATE
        self._gaps.append((self.clock_base + at, missing))
        self.samples += n
        self.gap_seconds += missing
        silence = SILENCE[self.media["format"]] * n
        events: list[IngressEvent] = []
        for ch in self.channels:
            events += [GapFilled(self.call_id, ch, missing, why), AudioIn(self.call_id, ch, silence, at)]
        return events

    def _on_update(self, p: dict[str, Any]) -> list[IngressEvent]:
        language = p.get("language")
        if not isinstance(language, str) or not 1 <= len(language) <= 35:
            raise ProtocolError(1007, "update.language must be a language code")
        self.language = language
        # a new language is a new utterance (a transcription connector restarts there)
        return [EndUtterance(self.call_id)] if self.call_id else []

    def _on_error(self, p: dict[str, Any]) -> list[IngressEvent]:
        code, message = p.get("code"), p.get("message")
        self.client_errors.append({"code": code if isinstance(code, int) else None, "message": str(message)[:400]})
        log.warning("audiohook: client error %s: %s (call %s)", str(code)[:5], str(message)[:200], self.call_id)
        return []

    def _on_close(self, p: dict[str, Any]) -> list[IngressEvent]:
        if self.state == "new":
            raise ProtocolError(1008, "'close' before 'open'")
        reason = p.get("reason")
        if reason not in CLOSE_REASONS:
            log.info("audiohook: close with unknown reason %r", str(reason)[:30])
        was = self.state
        if self.transcript_events and self.call_id is not None and reason != "reconnect":
            # the last words are still being recognized: their events go first, `closed`
            # after them (`finish_close`, once the call's part has been flushed)
            self._closed_pending = True
        else:
            self._send("closed", {})
        self.state = "closed"
        events: list[IngressEvent] = []
        if self.call_id is not None:
            ours = {"end": "end", "reconnect": "reconnect", "error": "client_error", "disconnect": "disconnect"}
            events.append(CallStop(self.call_id, ours.get(reason, "end"),  # type: ignore[arg-type]
                                   linger=reason == "reconnect" and was != "disconnecting"))  # fmt: skip
        return events + [CloseConnection(1000, "closed")]


def _count(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**53


def _key(cfg: Any, api_key: str) -> Any:
    return next((k for k in cfg.api_keys if k.api_key == api_key), None)


def authenticate(hs: Handshake, cfg: Any) -> str | None:
    """The upgrade's headers and, for a key with a client secret, its signature."""
    missing = [h for h in HEADERS if not hs.headers.get(h)]
    if missing:
        return f"missing upgrade header(s): {', '.join(missing)}"
    if not UUID.match(hs.headers["audiohook-session-id"]) or not UUID.match(hs.headers["audiohook-organization-id"]):
        return "Audiohook-Session-Id and Audiohook-Organization-Id must be UUIDs"
    key = _key(cfg, hs.headers["x-api-key"])
    if key is None:
        return "unknown X-API-KEY"
    if key.client_secret:
        return verify_upgrade(cfg.public_url or hs.url, hs.headers, key.api_key, key.client_secret,
                              max_age_s=cfg.max_signature_age_s)  # fmt: skip
    if hs.headers.get("signature"):
        return "the API key has no client secret, yet the upgrade is signed (configure the secret)"
    return None


def _parser(max_bytes: int, cfg: Any, hs: Handshake, refused: str | None = None) -> AudioHookProtocol:
    h = hs.headers
    return AudioHookProtocol(session_id=h.get("audiohook-session-id"), organization_id=h.get("audiohook-organization-id"),
                             correlation_id=h.get("audiohook-correlation-id"), max_message_bytes=max_bytes,
                             customer=cfg.customer_channel, languages=tuple(cfg.languages), refused=refused,
                             transcript_events=cfg.transcript_events)  # fmt: skip


def _refusal(why: str, max_bytes: int, cfg: Any, hs: Handshake) -> AudioHookProtocol:
    sid = hs.headers.get("audiohook-session-id")
    hs2 = Handshake(url=hs.url, headers={**hs.headers, "audiohook-session-id": sid if sid and UUID.match(sid) else ""},
                    client=hs.client)  # fmt: skip
    p = _parser(max_bytes, cfg, hs2, refused=why)
    if not p.session_id:
        p.session_id = None
    return p


PLATFORM = Platform("audiohook", "/ws/audiohook", _parser, authenticate=authenticate, refusal=_refusal)
