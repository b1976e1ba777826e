"""The knowledge side of the agent desktop in Debian's Chromium against a real server: a chat
thread asks what the shipped demo KB answers; a desk opened afterwards is replayed the cards,
the suggested replies and the checklist, marks a card useful, copies a reply and searches
the KB. What the clicks did is checked where it lands: the feedback row and the audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.sealed import SealedSqlite
from tests.serverkit import AGENT_TOKEN, SUPERVISOR_TOKEN, make_settings, server

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "client_js"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    shutil.which("node") is None or not CHROMIUM.exists() or not (CLIENT / "node_modules" / "playwright-core").is_dir(),
    reason="needs node, /usr/bin/chromium and client_js/node_modules (make test installs them)")]  # fmt: skip

THREAD = {
    "interaction_id": "kb-browser-1", "channel": "chat", "agent_id": "agent-1",
    "turns": [
        {"role": "agent", "text": "Thank you for calling Northwind Bank, this is Dana. How can I help?"},
        {"role": "customer", "text": "I lost my debit card yesterday. How long does a replacement card take to arrive?"},
        {"role": "agent", "text": "I'm sorry to hear that. Let me freeze the card for you first."},
        {"role": "customer", "text": "Is there a fee if I close my account today?"},
    ],
}


async def _node(script: str, base: str, shots: Path, **env: str) -> dict:
    """Run a client_js/tests script against the server; its last stdout line is its result."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(CLIENT / "tests" / script), cwd=str(CLIENT),
        env={**os.environ, "CALLCUE_URL": base, "CALLCUE_AGENT_TOKEN": AGENT_TOKEN, "CALLCUE_SHOTS": str(shots), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])


async def test_cards_replies_checklist_and_search_in_chromium(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    shots = tmp_path / "shots"
    shots.mkdir()
    async with server(settings) as (ws_base, _app):
        base = ws_base.replace("ws://", "http://", 1)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            r = await http.post("/api/v1/interactions", json=THREAD, headers={"Authorization": "Bearer demo-native-token"})
            assert r.status_code == 200, r.text
        out = await _node("knowledge.mjs", base, shots, CALLCUE_SUPERVISOR_TOKEN=SUPERVISOR_TOKEN)
    assert out["errors"] == [], out["errors"]
    titles = [c["title"] for c in out["cards"]]
    assert any("Lost or stolen cards" in t for t in titles) and any("Closing an account" in t for t in titles), titles
    lost = next(c for c in out["cards"] if "Lost or stolen cards" in c["title"])
    assert "3 to 5 business days" in lost["marked"] and lost["link"].startswith("https://kb.northwind.example/")
    assert "KB v1" in lost["meta"] and "replacement" in lost["why"]
    assert out["useful_state"].startswith("saved") and out["replies"] and out["clipboard"] == out["replies"][0]["text"]
    assert [i["item"] for i in out["checklist"]][:2] == ["greet", "verify"] and out["checklist"][0]["done"] is True
    assert out["search"][0].startswith("Lost or stolen cards") and out["sideways"] is False
    useful = [r for r in out["report"] if r[2] == "1"]
    assert len(useful) == 1 and useful[0][1] == "1" and useful[0][4] == "100%", out["report"]
    db = SealedSqlite(tmp_path / "callcue.db")
    rows = db.execute("SELECT action, reason FROM feedback WHERE hint_id = ?", (out["useful_hint"],)).fetchall()
    assert ("accepted", "useful") in rows
    used = db.execute("SELECT payload FROM audit_log WHERE kind = 'reply_feedback'").fetchall()
    assert [json.loads(p)["action"] for (p,) in used] == ["copied"]
    for name in ("knowledge-1280.png", "knowledge-380.png"):
        assert (shots / name).stat().st_size > 10_000


async def test_a_virtual_agent_handoff_reaches_the_desk_with_its_context(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    shots = tmp_path / "shots"
    shots.mkdir()
    async with server(settings) as (ws_base, _app):
        base = ws_base.replace("ws://", "http://", 1)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            r = await http.post("/api/v1/interactions", headers={"Authorization": "Bearer demo-native-token"}, json={
                "interaction_id": "handoff-1", "channel": "chat", "metadata": {"flow": "bank"},
                "turns": [{"role": "customer", "text": "my card was stolen"}, {"role": "customer", "text": "5 6 7 8"},
                          {"role": "customer", "text": "actually I want to talk to a real person"}]})  # fmt: skip
            assert r.status_code == 200, r.text
        out = await _node("handoff.mjs", base, shots)
    assert out["errors"] == [], out["errors"]
    assert out["title"] == "Handed over by the virtual agent" and "lost card" in out["summary"]
    assert "last4: 5678" in out["facts"] and "caller asked for a person" in out["facts"] and out["bot_lines"] >= 2


async def test_the_supervisor_console_approves_a_bot_action_in_chromium(tmp_path: Path) -> None:
    """The virtual agent holds a caller for a refund; the console (Chromium) shows the
    request with the task, its slots and the countdown; Approve there, and the caller is told."""

    from callcue.clients.twilio_stream import connect_native
    from tests.test_bot import approval_flows, bot_line, hold_for_a_refund

    flows = approval_flows(tmp_path)
    shots = tmp_path / "shots"
    shots.mkdir()
    ready = tmp_path / "console.ready"
    async with server(make_settings(tmp_path, bot={"flows_dir": str(flows)})) as (ws_base, _app):
        base = ws_base.replace("ws://", "http://", 1)
        console = asyncio.create_task(_node("bot_approval.mjs", base, shots, CALLCUE_SUPERVISOR_TOKEN=SUPERVISOR_TOKEN,
                                            CALLCUE_READY=str(ready)))  # fmt: skip
        for _ in range(600):
            if ready.exists() or console.done():
                break
            await asyncio.sleep(0.1)
        async with connect_native(f"{ws_base}/ws/native") as ws:
            await hold_for_a_refund(ws, "chat-console-1", timeout=60)
            assert "approved and on its way" in await bot_line(ws, "approved", timeout=60)
            await ws.send(json.dumps({"type": "stop"}))
        out = await console
    assert out["errors"] == [], out["errors"]
    assert out["title"] == "virtual agent approvals v1 · refund", out["title"]
    assert "amount: 80" in out["text"] and "holding" in out["text"] and "s left to decide" in out["countdown"]
    assert out["result"] == "approved" and "virtual agent approvals v1 asks to webhook" in out["feed"]
