"""A Genesys AudioHook *client*: what Genesys Cloud sends when it forks a conversation to us.

Follows the reference implementation's client (purecloudlabs/audiohook-reference-
implementation, `clientsessionimpl.ts`): a signed upgrade, `open` with the offered media,
audio frames of 8 kHz PCMU or L16 (stereo interleaved external/internal), `ping` with the
last round-trip time, `paused`/`resumed`, and `close` answered by `closed`. Every message
checks the server's `seq` and `clientseq`, as Genesys does, so a test using it fails the way
Genesys would. Used by the tests, `bench/ingress.py` and anyone trying the endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import secrets
import uuid
from types import SimpleNamespace
from typing import Any

import numpy as np
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms
from websockets.asyncio.client import connect

from callcue.audio.codecs import Resampler, encode
from callcue.clients.audio_file import CallAudio
from callcue.platforms.audiohook import duration
from callcue.platforms.audiohook_auth import http_url

#: the AudioHook documentation's example key pair, shipped as the demo credentials
DEMO_AUDIOHOOK_API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
DEMO_AUDIOHOOK_CLIENT_SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
DEMO_ORGANIZATION_ID = "d7934305-0972-4844-938e-9060eef73d05"
COMPONENTS = ("@request-target", "@authority", "audiohook-organization-id", "audiohook-session-id",
              "audiohook-correlation-id", "x-api-key")  # fmt: skip
STEREO_PCMU = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
MONO_PCMU = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}


def audiohook_headers(url: str, *, session_id: str, organization_id: str = DEMO_ORGANIZATION_ID,
                      correlation_id: str | None = None, api_key: str = DEMO_AUDIOHOOK_API_KEY,
                      client_secret: str | None = DEMO_AUDIOHOOK_CLIENT_SECRET, created: datetime.datetime | None = None,
                      nonce: str | None = None) -> dict[str, str]:  # fmt: skip
    """The upgrade headers Genesys sends, signed with the key's client secret as AudioHook profiles RFC 9421."""
    headers = {"Audiohook-Organization-Id": organization_id, "Audiohook-Session-Id": session_id,
               "Audiohook-Correlation-Id": correlation_id or str(uuid.uuid4()), "X-API-KEY": api_key}  # fmt: skip
    if not client_secret:
        return headers
    signer = HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256,
                               key_resolver=MappingKeyResolver(public_keys={}, private_keys={api_key: base64.b64decode(client_secret)}))  # fmt: skip
    msg = SimpleNamespace(method="GET", url=http_url(url), headers=dict(headers))
    now = created or datetime.datetime.now(datetime.UTC)
    signer.sign(msg, key_id=api_key, created=now, expires=now + datetime.timedelta(seconds=10),
                nonce=nonce or base64.b64encode(secrets.token_bytes(24)).decode(), label="sig1",
                covered_component_ids=COMPONENTS)  # fmt: skip
    return dict(msg.headers)


def media_frames(audio: CallAudio, media: dict[str, Any], ms: int = 100) -> list[bytes]:
    """The call as AudioHook frames in `media`'s format: `customer` is external, `agent` internal."""
    own = {"external": "customer", "internal": "agent"}
    per_ch: dict[str, list[bytes]] = {}
    rs = {ch: Resampler(audio.sample_rate, 8000) for ch in audio.channels} if audio.sample_rate != 8000 else {}
    for _offset, chunk in audio.chunks(ms):
        for ch, pcm in chunk.items():
            per_ch.setdefault(ch, []).append(rs[ch].process(pcm) if ch in rs else pcm)
    joined = {ch: b"".join(parts) for ch, parts in per_ch.items()}
    n = max(len(v) for v in joined.values()) // 2
    cols = [np.frombuffer(joined.get(own[c], b""), "<i2") for c in media["channels"]]
    grid = np.zeros((n, len(cols)), dtype="<i2")
    for i, col in enumerate(cols):
        grid[: len(col), i] = col
    step = 8 * ms
    frames = []
    for i in range(0, n, step):
        block = grid[i:i + step]
        if media["format"] == "PCMU":
            enc = [np.frombuffer(encode("PCMU", block[:, j].tobytes()), np.uint8) for j in range(len(cols))]
            frames.append(np.stack(enc, axis=1).tobytes())
        else:
            frames.append(block.tobytes())
    return frames


class AudioHookSession:
    """One client session over an open WebSocket: builds messages, reads the server's."""

    def __init__(self, ws: Any, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.seq = 0
        self.serverseq = 0
        self.samples = 0
        self.media: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []
        self.protocol_errors: list[str] = []
        self._new = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if not isinstance(raw, str):
                    self.protocol_errors.append("binary message from the server")
                    continue
                msg = json.loads(raw)
                if msg.get("seq") != self.serverseq + 1:
                    self.protocol_errors.append(f"server seq {msg.get('seq')} after {self.serverseq}")
                if msg.get("clientseq") is None or msg["clientseq"] > self.seq:
                    self.protocol_errors.append(f"clientseq {msg.get('clientseq')} with {self.seq} sent")
                if msg.get("version") != "2" or msg.get("id") != self.session_id:
                    self.protocol_errors.append(f"bad envelope {msg!r:.200}")
                self.serverseq = msg.get("seq", self.serverseq)
                self.received.append(msg)
                self._new.set()
        except Exception:
            pass
        finally:
            self._new.set()

    @property
    def position(self) -> float:
        return self.samples / 8000

    async def send(self, mtype: str, parameters: dict[str, Any] | None = None, **override: Any) -> dict[str, Any]:
        self.seq += 1
        msg = {"version": "2", "id": self.session_id, "type": mtype, "seq": self.seq, "serverseq": self.serverseq,
               "position": duration(self.position), "parameters": parameters or {}, **override}  # fmt: skip
        await self.ws.send(json.dumps(msg))
        return msg

    async def expect(self, mtype: str, timeout: float = 10.0) -> dict[str, Any]:
        async def _wait() -> dict[str, Any]:
            seen = 0
            while True:
                for m in self.received[seen:]:
                    if m["type"] == mtype:
                        return m
                seen = len(self.received)
                if self._reader.done():
                    raise ConnectionError(f"closed before '{mtype}' ({self.ws.close_code} {self.ws.close_reason})")
                self._new.clear()
                await self._new.wait()
        return await asyncio.wait_for(_wait(), timeout)

    async def open(self, conversation_id: str, media: list[dict[str, Any]] | None = None, *,
                   organization_id: str = DEMO_ORGANIZATION_ID, continued: list[dict[str, Any]] | None = None,
                   custom: dict[str, Any] | None = None, supported_languages: bool = True) -> dict[str, Any]:  # fmt: skip
        params: dict[str, Any] = {
            "organizationId": organization_id, "conversationId": conversation_id,
            "participant": {"id": str(uuid.uuid4()), "ani": "+15551230000", "aniName": "Caller", "dnis": "+15559870000"},
            "media": media or [STEREO_PCMU, MONO_PCMU], "language": "en-US", "supportedLanguages": supported_languages,
        }
        if continued:
            params["continuedSessions"] = continued
        if custom:
            params["customConfig"] = custom
        await self.send("open", params)
        first = await self.expect_any(("opened", "disconnect"))
        if first["type"] == "opened":
            self.media = first["parameters"]["media"][0] if first["parameters"]["media"] else None
        return first

    async def expect_any(self, types: tuple[str, ...], timeout: float = 10.0) -> dict[str, Any]:
        tasks = [asyncio.ensure_future(self.expect(t, timeout)) for t in types]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        return next(iter(done)).result()

    async def audio(self, frame: bytes) -> None:
        assert self.media is not None
        width = (1 if self.media["format"] == "PCMU" else 2) * len(self.media["channels"])
        await self.ws.send(frame)
        self.samples += len(frame) // width

    async def ping(self, rtt_s: float | None = None) -> dict[str, Any]:
        await self.send("ping", {"rtt": duration(rtt_s)} if rtt_s is not None else {})
        return await self.expect("pong")

    async def close(self, reason: str = "end", timeout: float = 30.0) -> dict[str, Any]:
        await self.send("close", {"reason": reason})
        closed = await self.expect("closed", timeout)
        return closed

    async def stream(self, frames: list[bytes], ms: int = 100, speed: float = 1.0, ping_every_s: float = 5.0) -> None:
        """Frames in real time (scaled by `speed`), with a ping every few seconds as Genesys does."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        last_ping = 0.0
        for i, f in enumerate(frames):
            delay = t0 + i * ms / 1000 / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.audio(f)
            if self.position - last_ping >= ping_every_s:
                last_ping = self.position
                await self.send("ping", {})


def connect_audiohook(url: str, session_id: str, **kw: Any) -> Any:
    """`websockets` connect to `/ws/audiohook` with Genesys's (signed) upgrade headers."""
    sign = {k: kw.pop(k) for k in ("organization_id", "correlation_id", "api_key", "client_secret", "created", "nonce") if k in kw}
    headers = {**audiohook_headers(url, session_id=session_id, **sign), **kw.pop("additional_headers", {})}
    return connect(url, additional_headers=headers, **kw)
