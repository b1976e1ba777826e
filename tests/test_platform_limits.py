"""Per-platform limits from the config: max_streams (refused in the platform's own terms,
other streams untouched) and max_frame_bytes (over the server-wide default)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from websockets.asyncio.client import connect

from callcue.clients.audiohook_client import (
    MONO_PCMU,
    AudioHookSession,
    connect_audiohook,
)
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio
from tests.serverkit import make_settings, server


async def test_max_streams_and_frame_limits_per_platform(tmp_path: Path) -> None:
    s = make_settings(tmp_path, platforms={
        "twilio": {"max_streams": 1, "enabled": True, "validate_signature": True, "auth_tokens": ["demo-twilio-auth-token"]},
        "audiohook": {"max_streams": 1},
        "vonage": {"max_frame_bytes": 2048},
    })
    async with server(s) as (base, app):
        # Twilio: the second concurrent stream is closed with 1013; the first goes on
        first = TwilioMessages(agent_id="agent-1")
        async with connect_twilio(f"{base}/ws/twilio") as ws1:
            await ws1.send(first.connected())
            await ws1.send(first.start(["inbound"]))
            await ws1.send(first.media("inbound", 0, b"\xff" * 160))
            async with connect_twilio(f"{base}/ws/twilio") as ws2:
                await asyncio.wait_for(ws2.wait_closed(), 10)
                assert ws2.close_code == 1013 and "limit" in ws2.close_reason
            await ws1.send(first.media("inbound", 20, b"\xff" * 160))
            await ws1.send(first.stop())
            await asyncio.wait_for(ws1.wait_closed(), 30)
            assert ws1.close_code == 1000
        # ... and once it ended, the next stream is welcome again
        again = TwilioMessages(agent_id="agent-1")
        async with connect_twilio(f"{base}/ws/twilio") as ws3:
            await ws3.send(again.connected())
            await ws3.send(again.start(["inbound"]))
            await ws3.send(again.stop())
            await asyncio.wait_for(ws3.wait_closed(), 30)
            assert ws3.close_code == 1000
        # AudioHook: over the limit is a `disconnect` with reason error, then close/closed
        sid1, sid2 = str(uuid.uuid4()), str(uuid.uuid4())
        async with connect_audiohook(f"{base}/ws/audiohook", sid1) as a1:
            live = AudioHookSession(a1, sid1)
            assert (await live.open(str(uuid.uuid4()), [MONO_PCMU]))["type"] == "opened"
            async with connect_audiohook(f"{base}/ws/audiohook", sid2) as a2:
                over = AudioHookSession(a2, sid2)
                disc = await over.expect("disconnect")
                assert disc["parameters"]["reason"] == "error" and "max_streams" in disc["parameters"]["info"]
                await over.close("disconnect")
            assert (await live.ping())["type"] == "pong"
            await live.close("end")
        # Vonage: its own frame limit
        async with connect(f"{base}/ws/vonage") as v:
            await v.send(json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=8000",
                                     "secret": "demo-vonage-secret", "call_uuid": str(uuid.uuid4())}))
            await v.send(b"\x00" * 1600)
            await v.send(b"\x00" * 4000)
            await asyncio.wait_for(v.wait_closed(), 10)
            assert v.close_code == 1009 and "2048" in v.close_reason
