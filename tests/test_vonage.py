"""Vonage Voice API WebSocket: `websocket:connected` with the NCCO headers, L16 at 8/16 kHz,
`websocket:dtmf`, `websocket:notify`, close at hangup; secrets in the headers, URL or
Authorization, and Vonage's signed JWT on the upgrade."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import jwt
import numpy as np
import pytest
from websockets.asyncio.client import connect

from callcue.audio.codecs import Resampler
from callcue.config import VonagePlatformConfig
from callcue.platforms.base import (
    AudioIn,
    CallStart,
    CallStop,
    Dtmf,
    Handshake,
    Mark,
    ProtocolError,
)
from callcue.platforms.vonage import VonageProtocol, authenticate, upgrade_authorized
from tests.conftest import require_shared
from tests.serverkit import (
    SUPERVISOR_TOKEN,
    agent,
    make_settings,
    quick_disclosure,
    real_call,
    server,
)

SECRET = "demo-vonage-secret"


def connected(rate: int = 16000, **headers: object) -> str:
    return json.dumps({"event": "websocket:connected", "content-type": f"audio/l16;rate={rate}", **headers})


def test_connected_with_ncco_headers_starts_the_call() -> None:
    p = VonageProtocol(secrets=(SECRET,))
    [start] = p.receive_text(connected(16000, secret=SECRET, call_uuid="63f61863-4a51-4f6b-86e1-46edebcf9356",
                                       agent_id="agent-1", channel="customer", language="en-GB"))
    assert isinstance(start, CallStart) and start.sample_rate == 16000 and start.encoding == "L16"
    assert (start.call_id, start.agent_id, start.channels, start.join) == ("63f61863-4a51-4f6b-86e1-46edebcf9356", "agent-1", ("customer",), "exact")
    assert "secret" not in start.metadata["vonage"] and start.metadata["vonage"]["language"] == "en-GB"
    [a] = p.receive_bytes(np.arange(320, dtype="<i2").tobytes())  # 20 ms at 16 kHz
    assert isinstance(a, AudioIn) and a.offset == 0.0
    [b] = p.receive_bytes(np.arange(320, dtype="<i2").tobytes())
    assert b.offset == pytest.approx(0.02)
    assert p.receive_text(json.dumps({"event": "websocket:dtmf", "digit": "5", "duration": 260})) == [Dtmf(start.call_id, "5")]
    [mark] = p.receive_text(json.dumps({"event": "websocket:notify", "payload": {"name": "greeting"}}))
    assert isinstance(mark, Mark)
    assert p.receive_text(json.dumps({"event": "websocket:cleared"})) == []
    [stop] = p.receive_eof()
    assert isinstance(stop, CallStop) and stop.reason == "hangup"


@pytest.mark.parametrize(("frames", "code", "words"), [
    ([b"\x00\x00"], 1008, "before 'websocket:connected'"),
    ([json.dumps({"event": "websocket:dtmf", "digit": "1"})], 1008, "first message"),
    ([connected(44100, secret=SECRET)], 1003, "content-type"),
    ([json.dumps({"event": "websocket:connected", "content-type": "audio/pcmu;rate=8000", "secret": SECRET})], 1003, "content-type"),
    ([connected(8000)], 1008, "shared secret"),
    ([connected(8000, secret="guess")], 1008, "shared secret"),
    ([connected(8000, secret=SECRET), b"\x00"], 1007, "whole 16-bit"),
    ([connected(8000, secret=SECRET), json.dumps({"event": "websocket:dtmf", "digit": "55"})], 1007, "digit"),
    ([connected(8000, secret=SECRET, channel="supervisor")], 1007, "channel"),
    ([connected(8000, secret=SECRET), b"\x00" * 70000], 1009, "exceeds"),
])
def test_bad_streams_are_refused_precisely(frames: list, code: int, words: str) -> None:
    p = VonageProtocol(secrets=(SECRET,))
    with pytest.raises(ProtocolError) as ei:
        for f in frames:
            p.receive_text(f) if isinstance(f, str) else p.receive_bytes(f)
    assert ei.value.close_code == code and words in ei.value.reason


def test_upgrade_credentials_secret_bearer_and_signed_jwt() -> None:
    cfg = VonagePlatformConfig(secrets=[SECRET], signature_secrets=["sig-secret-0123456789abcdef0123456789"],
                               application_id="aaaaaaaa-bbbb-cccc-dddd-0123456789ab")
    hs = lambda url="ws://x/ws/vonage", **h: Handshake(url=url, headers=h)
    assert authenticate(hs(f"ws://x/ws/vonage?secret={SECRET}"), cfg) is None and upgrade_authorized(hs(f"ws://x/ws/vonage?secret={SECRET}"), cfg)
    assert authenticate(hs(authorization=f"Bearer {SECRET}"), cfg) is None
    assert authenticate(hs(authorization=SECRET), cfg) is None and upgrade_authorized(hs(authorization=SECRET), cfg)
    assert "wrong" in authenticate(hs(authorization="ApiKey guess"), cfg)
    assert authenticate(hs(), cfg) is None and not upgrade_authorized(hs(), cfg)  # must come in websocket:connected
    assert "wrong" in authenticate(hs("ws://x/ws/vonage?secret=nope"), cfg)
    claims = {"iat": int(time.time()), "jti": str(uuid.uuid4()), "application_id": cfg.application_id}
    good = jwt.encode(claims, cfg.signature_secrets[0], algorithm="HS256")
    assert authenticate(hs(authorization=f"Bearer {good}"), cfg) is None and upgrade_authorized(hs(authorization=f"Bearer {good}"), cfg)
    forged = jwt.encode(claims, "another-secret-0123456789abcdef012345", algorithm="HS256")
    assert "wrong" in authenticate(hs(authorization=f"Bearer {forged}"), cfg)
    old = jwt.encode({**claims, "iat": int(time.time()) - 3600}, cfg.signature_secrets[0], algorithm="HS256")
    assert "wrong" in authenticate(hs(authorization=f"Bearer {old}"), cfg)
    other_app = jwt.encode({**claims, "application_id": "someone-else"}, cfg.signature_secrets[0], algorithm="HS256")
    assert "wrong" in authenticate(hs(authorization=f"Bearer {other_app}"), cfg)
    assert "no shared secret" in authenticate(hs(), VonagePlatformConfig())


def _l16_frames(pcm8k: np.ndarray, rate: int) -> list[bytes]:
    raw = pcm8k.astype("<i2").tobytes()
    if rate != 8000:
        raw = Resampler(8000, rate).process(raw)
    step = rate // 50 * 2  # 20 ms
    return [raw[i:i + step] for i in range(0, len(raw), step)]


async def test_two_vonage_legs_are_one_call_with_transcript_and_hint(tmp_path: Path) -> None:
    audio = real_call(require_shared())
    s = make_settings(tmp_path, understanding=quick_disclosure(tmp_path))
    call = str(uuid.uuid4())
    async with server(s) as (base, _app), agent(base, SUPERVISOR_TOKEN) as desk:
        async def leg(channel: str, rate: int, url: str, **headers: object) -> None:
            async with connect(url) as ws:
                await ws.send(connected(rate, call_uuid=call, channel=channel, agent_id="agent-1", **headers))
                for i, f in enumerate(_l16_frames(audio.channels[channel], rate)):
                    await ws.send(f)
                    if i == 20 and channel == "customer":
                        await ws.send(json.dumps({"event": "websocket:dtmf", "digit": "#", "duration": 200}))
                    if i % 4 == 3:
                        await asyncio.sleep(0.02)  # 4x real time
        await asyncio.gather(
            leg("customer", 16000, f"{base}/ws/vonage", secret=SECRET),  # the secret in the NCCO headers
            leg("agent", 8000, f"{base}/ws/vonage?secret={SECRET}"),  # ... or in the endpoint uri
        )
        await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == call, 90)
        assert len([e for e in desk.of_type("call_started") if e["call_id"] == call]) == 1
        finals = [e for e in desk.of_type("transcript") if e["is_final"] and e["call_id"] == call]
        by_ch = {ch: " ".join(f["text"].lower() for f in finals if f["channel"] == ch) for ch in ("customer", "agent")}
        assert "country" in by_ch["customer"] and ("glad" in by_ch["agent"] or "phil" in by_ch["agent"]), by_ch
        assert any("disclosure" in h["title"].lower() for h in desk.of_type("hint") if h["call_id"] == call)
        # a wrong secret, on the upgrade or in the headers, is closed with 1008 before any audio
        async with connect(f"{base}/ws/vonage?secret=guess") as ws:
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1008
        async with connect(f"{base}/ws/vonage") as ws:
            await ws.send(connected(16000, secret="guess", call_uuid=str(uuid.uuid4())))
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1008 and "secret" in ws.close_reason
