"""What a client was sent survives SIGKILL: the Sink commits a row before it publishes it, so
every final transcript, signal and hint an agent received is in the database after the
server is killed mid-call, and the next start closes the call at its last stored row."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from callcue.clients.audio_file import read_call_audio
from callcue.clients.demo import demo_call_path, free_port
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, stream_call
from tests.sealed import SealedSqlite
from tests.serverkit import AGENT_TOKEN

pytestmark = pytest.mark.slow


def spawn(tmp_path: Path, port: int) -> subprocess.Popen:
    db = tmp_path / "kill.db"
    log = open(tmp_path / f"server-{port}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "callcue.cli", "serve", "--port", str(port), "--audiosocket-port", "0",
                             "--storage-url", f"sqlite:///{db}"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=tmp_path)  # fmt: skip


async def ready(port: int, proc: subprocess.Popen, timeout: float = 120, path: str = "/healthz") -> None:
    """Until `path` answers 200 (a cluster node's /readyz once it joined the others)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "server exited during start-up"
            try:
                if (await c.get(f"http://127.0.0.1:{port}{path}")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise AssertionError("server not ready")


async def test_sigkill_loses_nothing_a_client_was_sent(tmp_path: Path) -> None:
    port = free_port()
    proc = spawn(tmp_path, port)
    received: list[dict] = []
    try:
        await ready(port, proc)
        base = f"ws://127.0.0.1:{port}"
        audio = read_call_audio(demo_call_path())
        async with connect(f"{base}/ws/agent", additional_headers={"Authorization": f"Bearer {AGENT_TOKEN}"},
                           subprotocols=["callcue.v1.json"]) as desk:  # type: ignore[list-item]
            await desk.send(json.dumps({"type": "subscribe", "call_id": "*"}))
            async with connect_twilio(f"{base}/ws/twilio") as tw:
                streaming = asyncio.create_task(stream_call(tw, audio, TwilioMessages(call_sid="CAkill", agent_id="agent-1")))
                # kill the server the moment the agent holds a final and a signal
                async def watch() -> None:
                    async for raw in desk:
                        ev = json.loads(raw)
                        received.append(ev)
                        kinds = {(e.get("type"), e.get("is_final")) for e in received}
                        if ("transcript", True) in kinds and any(e.get("type") == "signal" for e in received):
                            os.kill(proc.pid, signal.SIGKILL)
                            return
                await asyncio.wait_for(watch(), 90)
                streaming.cancel()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    db = SealedSqlite(tmp_path / "kill.db")
    finals = {r[0] for r in db.execute("SELECT text FROM transcripts WHERE call_id = 'CAkill'")}
    signals = {r[0] for r in db.execute("SELECT signal_id FROM signals WHERE call_id = 'CAkill'")}
    hints = {r[0] for r in db.execute("SELECT hint_id FROM hints WHERE call_id = 'CAkill'")}
    sent_finals = [e["text"] for e in received if e.get("type") == "transcript" and e.get("is_final")]
    sent_signals = [e["signal_id"] for e in received if e.get("type") == "signal"]
    sent_hints = [e["hint_id"] for e in received if e.get("type") == "hint"]
    assert sent_finals and sent_signals
    assert set(sent_finals) <= finals and set(sent_signals) <= signals and set(sent_hints) <= hints
    assert db.execute("SELECT ended_at FROM calls WHERE call_id = 'CAkill'").fetchone() == (None,)
    db.close()

    # the next start ends the killed call at its last stored row, not never
    port2 = free_port()
    proc2 = spawn(tmp_path, port2)
    try:
        await ready(port2, proc2)
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(30)
    db = sqlite3.connect(tmp_path / "kill.db")
    ended, reason = db.execute("SELECT ended_at, end_reason FROM calls WHERE call_id = 'CAkill'").fetchone()
    last = db.execute("SELECT MAX(created_at) FROM transcripts WHERE call_id = 'CAkill'").fetchone()[0]
    assert reason == "server_restart" and ended >= last
