"""/readyz: a load balancer's view of whether this node should get the next call.

Real server, real Whisper on one decoder thread, real Twilio stream: a node is full when it
holds max_calls, and when its recognizers are behind real time (audio sent far faster than
real time makes them fall behind for real), and it takes calls again once they catch up.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest

from callcue.clients.audio_file import read_call_audio
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, stream_call
from tests.conftest import require_shared
from tests.serverkit import make_settings, server

pytestmark = pytest.mark.slow


async def test_readyz_refuses_when_full_and_when_recognizers_lag(tmp_path: Path) -> None:
    wav = require_shared("speech", "telephone_sim", "jfk__jfk.wav")
    s = make_settings(tmp_path, server={"max_calls": 1, "ready_max_backlog_s": 1.0}, asr={"threads": 1})
    async with server(s) as (base, app), httpx.AsyncClient(base_url=base.replace("ws", "http")) as http:
        idle = await http.get("/readyz")
        assert idle.status_code == 200 and idle.json()["accepting"] is True
        assert idle.json()["active_calls"] == 0 and idle.json()["reason"] is None
        seen: list[tuple[int, dict]] = []

        async def poll() -> None:
            while True:
                r = await http.get("/readyz")
                seen.append((r.status_code, r.json()))
                await asyncio.sleep(0.05)

        poller = asyncio.create_task(poll())
        async with connect_twilio(f"{base}/ws/twilio") as tw:
            msgs = TwilioMessages(agent_id="agent-1")
            # 11 s of speech in about half a second: one decoder thread cannot keep up
            await stream_call(tw, read_call_audio(wav), msgs, speed=25.0, send_stop=False)
            for _ in range(200):
                if any(code == 503 and "behind real time" in (b["reason"] or "") for code, b in seen):
                    break
                await asyncio.sleep(0.05)
            lagging = [b for code, b in seen if code == 503 and "behind real time" in (b["reason"] or "")]
            assert lagging, seen[-3:]
            assert lagging[0]["backlog_max_s"] > 1.0 and lagging[0]["accepting"] is False
            # caught up but still holding its one allowed call: full for another reason
            for _ in range(600):
                r = await http.get("/readyz")
                if r.json()["backlog_max_s"] <= 1.0:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 503 and r.json()["reason"] == "at max_calls (1/1)"
            health = (await http.get("/healthz")).json()
            assert health["status"] == "ok" and health["load"]["active_calls"] == 1
            await tw.send(msgs.stop())
            await tw.wait_closed()
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        for _ in range(100):
            r = await http.get("/readyz")
            if r.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 200 and r.json()["active_calls"] == 0
