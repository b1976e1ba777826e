"""The agent desktop and the supervisor console in a real browser against a real server.

A CallCue server runs on loopback with the shipped playbooks plus one approval-gated playbook
written for this test; the first 43 s of the shipped demo call (both channels, espeak-ng
speech) stream in over /ws/twilio; `client_js/tests/e2e.mjs` drives Debian's Chromium through
playwright-core, clicking what a person would click, and reports what the pages showed. What
the clicks did is then checked where it lands: the feedback table in SQLite, the playbook
state over REST and the audit trail.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from callcue.clients.audio_file import CallAudio, read_call_audio
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, stream_call
from callcue.config import REPO_CONFIG_DIR
from tests.sealed import SealedSqlite
from tests.serverkit import AGENT_TOKEN, SUPERVISOR_TOKEN, make_settings, server

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "client_js"
SCRIPT = CLIENT / "tests" / "e2e.mjs"
RECONNECT_SCRIPT = CLIENT / "tests" / "reconnect.mjs"
CHROMIUM = Path("/usr/bin/chromium")
DEMO = REPO / "server" / "callcue" / "data" / "demo_call.wav"
SPEED = 2.5  # 43 s of call in about 17 s; Whisper still keeps up on two shared cores
CALL_SECONDS = 42.6  # through "I want to talk to a supervisor right now" and the agent's reply
SUPERVISOR = "supervisor-1"  # user id of SUPERVISOR_TOKEN in config/callcue.toml

XSS_MARK = "Approved by supervisor"
APPROVAL_PLAYBOOK = f"""
id: supervised_cancel_alert
version: 1
description: Alert supervisors and tell the agent about a cancellation, once a supervisor approves.
trigger: {{kinds: [intent], names: [cancel_request]}}
min_confidence: 0.5
max_per_call: 1
autonomy: approve
approval: {{role: supervisor, deadline_s: 120, on_expiry: drop}}
actions:
  - kind: alert
    message: 'Cancellation on $call_id <img src=x onerror="window.__xss=1">'
    severity: warning
  - kind: hint
    title: '{XSS_MARK} <img src=x onerror="window.__xss=1">'
    body: Markup in playbook text must reach the page as text.
    severity: info
"""
KILL_PLAYBOOK = "supervised_cancel_alert"  # paused everywhere with the console's kill switch
CALL_PLAYBOOK = "retention_offer"  # paused on the live call only
DISMISS_TITLE = "Customer asked for a manager"


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_missing() is not None, reason=f"browser tests skipped: {_missing()}")]


@pytest.fixture(scope="module")
def playwright_installed() -> None:
    """`make test` runs npm install; a bare pytest run installs here (never a browser)."""
    if (CLIENT / "node_modules" / "playwright-core").is_dir():
        return
    env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], check=False, cwd=CLIENT, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, f"npm install in client_js failed:\n{r.stderr[-2000:]}"


def demo_audio(seconds: float) -> CallAudio:
    a = read_call_audio(DEMO)
    n = int(seconds * a.sample_rate)
    return CallAudio(sample_rate=a.sample_rate, channels={ch: x[:n] for ch, x in a.channels.items()})


def playbooks_dir(tmp_path: Path) -> Path:
    d = tmp_path / "playbooks"
    d.mkdir()
    for f in (REPO_CONFIG_DIR / "playbooks").glob("*.yaml"):
        shutil.copy(f, d / f.name)
    (d / "zz_browser_test.yaml").write_text(APPROVAL_PLAYBOOK)
    return d


class Script:
    """The node process and its JSON lines, read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.stderr = b""
        self._new = asyncio.Event()
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._err())]

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                continue
            self._new.set()
        self._new.set()

    async def _err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()

    async def wait(self, *events: str, timeout: float) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if line.get("event") in events:
                    return line
            if self.proc.returncode is not None and self._tasks[0].done():
                raise AssertionError(f"e2e.mjs exited ({self.proc.returncode}) before {events}: {self.lines}\n{self.stderr.decode()[-3000:]}")
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {events} from e2e.mjs within {timeout}s; got {self.lines}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), min(left, 1.0))
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        for t in self._tasks:
            t.cancel()


def test_pages_never_parse_data_as_html() -> None:
    """XSS guard that needs no browser: the pages build every node with textContent."""
    for f in CLIENT.glob("*.js"):
        src = f.read_text()
        for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert bad not in src, f"{f.name} uses {bad}"
    for f in CLIENT.glob("*.html"):
        assert not re.search(r"<script(?![^>]*\bsrc=)", f.read_text()), f"{f.name} has an inline script"


async def test_agent_and_supervisor_pages_in_chromium(tmp_path: Path, playwright_installed: None) -> None:
    shots = Path(os.environ.get("CALLCUE_BROWSER_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    audio = demo_audio(CALL_SECONDS)
    settings = make_settings(tmp_path, decision={"playbooks_dir": str(playbooks_dir(tmp_path))})
    msgs = TwilioMessages(agent_id="agent-1")
    async with server(settings) as (base, _app):
        http_base = base.replace("ws://", "http://")
        env = {**os.environ, "CALLCUE_URL": http_base, "CALLCUE_AGENT_TOKEN": AGENT_TOKEN,
               "CALLCUE_SUPERVISOR_TOKEN": SUPERVISOR_TOKEN, "CALLCUE_SHOTS": str(shots),
               "CALLCUE_KILL_PLAYBOOK": KILL_PLAYBOOK, "CALLCUE_CALL_PLAYBOOK": CALL_PLAYBOOK,
               "CALLCUE_DISMISS_TITLE": DISMISS_TITLE, "CALLCUE_XSS_MARK": XSS_MARK}  # fmt: skip
        proc = await asyncio.create_subprocess_exec("node", str(SCRIPT), cwd=CLIENT, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
        script = Script(proc)
        try:
            await script.wait("ready", "result", timeout=40)
            async with httpx.AsyncClient(base_url=http_base, timeout=15,
                                         headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}) as http:  # fmt: skip
                async with connect_twilio(f"{base}/ws/twilio") as ws:
                    await stream_call(ws, audio, msgs, speed=SPEED, send_stop=False)
                    await script.wait("live_done", "result", timeout=90)
                    # while the call is live: what the console's buttons did, seen over REST
                    pbs = {p["id"]: p for p in (await http.get("/api/v1/playbooks")).json()["playbooks"]}
                    await ws.send(msgs.stop())
                    await ws.wait_closed()
                result = await script.wait("result", timeout=60)
                audit = (await http.get("/api/v1/audit", params={"limit": 10000})).json()["entries"]
        finally:
            await script.close()

    assert result.get("ok"), f"browser flow failed: {result.get('failure')}\nsteps: {result.get('steps')}\n{script.stderr.decode()[-3000:]}"
    assert not result["errors"], f"page errors: {result['errors']}"
    ag, sup = result["agent"], result["supervisor"]
    call_id = msgs.call_sid

    # agent desktop: live transcript of both channels, partials replaced in place
    assert "token=" not in ag["url_after_load"], "the token must not stay in the address bar"
    assert ag["status"].startswith("connected as agent-1")
    cust = " ".join(ag["customer_finals"]).lower()
    assert "cancel" in cust and "account" in cust, ag["customer_finals"]
    assert any("northwind" in t.lower() or "daniel" in t.lower() for t in ag["agent_finals"]), ag["agent_finals"]
    assert ag["seen"]["partial"] > 0, "no partial transcript was ever shown"
    assert ag["partials_on_screen"] <= 2, "partials of finished segments must have been replaced by their finals"
    assert any("cancel" in c for c in ag["chips"]), ag["chips"]

    # hint card -> Accept -> ack on the page -> a committed row
    assert ag["hint"]["title"] == "Retention offer available" and "20%" in ag["hint"]["reply"], ag["hint"]
    assert ag["accept_state"] == "saved: accepted"
    assert ag["dismissed"]["state"] == "saved: dismissed"
    db = SealedSqlite(tmp_path / "callcue.db")
    rows = {r[0]: r[1:] for r in db.execute("SELECT hint_id, action, user_id, reason, call_id FROM feedback")}
    db.close()
    assert rows[ag["hint"]["hint_id"]] == ("accepted", "agent-1", None, call_id), rows
    assert rows[ag["dismissed"]["hint_id"]] == ("dismissed", "agent-1", "already handled", call_id), rows
    assert ag["corrected"]["state"] == "saved: corrected"
    db = SealedSqlite(tmp_path / "callcue.db")
    (correction,) = db.execute("SELECT correction FROM feedback WHERE hint_id = ?", (ag["corrected"]["hint_id"],)).fetchone()
    db.close()
    assert correction == "billing question"

    # markup in playbook text stays text on both pages
    assert ag["xss"]["title"].startswith(XSS_MARK) and "<img" in ag["xss"]["title"], ag["xss"]
    assert ag["xss"]["img_elements"] == 0 and not ag["xss"]["script_ran"]
    assert sup["feed_imgs"] == 0 and not sup["script_ran"] and '<img src=x onerror="window.__xss=1">' in sup["feed_text"]

    # supervisor console: the call, the feed, approval, kill switch, per-call pause, KPIs
    assert sup["status"] == "connected as supervisor-1 (supervisor)"
    assert sup["call_id"] == call_id
    assert "supervised_cancel_alert" in sup["approval_text"] and sup["approval_result"].startswith("approved")
    for t in ("call_started", "hint", "approval_request", "action_update", "alert", "playbook_paused", "hint_retracted",
              "call_ended"):
        assert t in sup["feed_types"], (t, sup["feed_types"])
    assert sup["call_ended_shown"] and ag["call_ended_shown"]
    assert pbs[KILL_PLAYBOOK]["paused"] is True, pbs[KILL_PLAYBOOK]
    assert pbs[CALL_PLAYBOOK]["paused"] is False and call_id in pbs[CALL_PLAYBOOK]["paused_calls"], pbs[CALL_PLAYBOOK]
    states = {p["id"]: p["state"] for p in sup["playbook_states"]}
    assert states[KILL_PLAYBOOK] == "PAUSED" and states[CALL_PLAYBOOK] == "active"
    assert sup["rollback"] == "rolled back: now rolled_back", sup["rollback"]
    assert "retracted by supervisor" in ag["retracted_meta"]
    kpis = {r[0]: dict(zip(sup["kpi_headers"], r, strict=True)) for r in sup["kpi_rows"]}
    assert kpis["retention_offer"]["acc."] == "1" and kpis["retention_offer"]["acc. rate"] == "100%", kpis
    assert kpis[KILL_PLAYBOOK]["corr."] == "1" and kpis["manager_escalation_request"]["dism."] == "1", kpis

    # ... and each click is in the audit trail under the supervisor's name
    def by(kind: str, **kw: Any) -> list[dict[str, Any]]:
        return [e for e in audit if e["kind"] == kind and all(e.get(k) == v for k, v in kw.items())]

    assert by("action_approved", actor=SUPERVISOR, playbook_id=KILL_PLAYBOOK, call_id=call_id)
    assert by("paused", actor=SUPERVISOR, playbook_id=KILL_PLAYBOOK, call_id=None)
    assert by("paused", actor=SUPERVISOR, playbook_id=CALL_PLAYBOOK, call_id=call_id)
    assert by("action_rolled_back", actor=SUPERVISOR, playbook_id=KILL_PLAYBOOK, call_id=call_id)
    fb = by("feedback", call_id=call_id)
    assert {e["payload"].get("action") for e in fb} >= {"accepted", "dismissed", "corrected"}, fb
    for name in ("agent.png", "supervisor.png"):
        assert (shots / name).stat().st_size > 10_000, f"{name} screenshot missing or blank"

    # pages opened after the call ended show it with its history: transcript, hints, decision trail
    after = result["after"]
    db = sqlite3.connect(tmp_path / "callcue.db")
    (stored_finals,) = db.execute("SELECT COUNT(*) FROM transcripts WHERE call_id = ?", (call_id,)).fetchone()
    db.close()
    assert after["ended_listed"] == 1 and after["agent_finals"] == stored_finals >= len(ag["customer_finals"]) + len(ag["agent_finals"]), (after, stored_finals)
    assert after["agent_hints"] >= 3 and after["supervisor_lines"] >= 5 and after["supervisor_trail"] >= 5, after
    # the console shows the ended call's QA scorecard, every question of the shipped card
    assert re.match(r"^\d+(\.\d)? / 100 · bank_telco v1 · auto", result["scorecard"]["head"]), result["scorecard"]
    assert result["scorecard"]["rows"] == 10, result["scorecard"]
    assert "Outcome: escalated" in result["scorecard"]["summary"] and "Reason:" in result["scorecard"]["summary"], result["scorecard"]
    # a desk opened mid-call showed the call so far (replayed), hint card included
    late = result["late"]
    assert late["finals_shown"] >= late["agent_finals_before"] >= 1, late
    assert late["status"].startswith("connected as agent-1"), late
    # both pages fit a desktop and a ~380 px CRM side panel without sideways scrolling
    for name, box in result["layout"].items():
        assert box["scroll_width"] <= box["width"] + 1, (name, box)
        assert (shots / f"{name}.png").stat().st_size > 8_000, f"{name}.png missing or blank"


async def test_pages_reconnect_after_a_server_restart_and_never_retry_a_bad_token(
    tmp_path: Path, playwright_installed: None
) -> None:
    """The server goes away under an open agent desktop and comes back on the same port: the
    page must say it lost the connection and reconnect by itself (backoff 1, 2, 4 s ...). A
    page with a wrong token must show the refusal and not hammer the server with retries."""
    settings = make_settings(tmp_path)
    script: Script | None = None
    audio = read_call_audio(DEMO)
    first = CallAudio(audio.sample_rate, {ch: pcm[: 8000 * 14] for ch, pcm in audio.channels.items()})
    second = CallAudio(audio.sample_rate, {ch: pcm[8000 * 14 : 8000 * 26] for ch, pcm in audio.channels.items()})
    try:
        async with server(settings) as (base, _app):
            env = {**os.environ, "CALLCUE_URL": base.replace("ws://", "http://"), "CALLCUE_AGENT_TOKEN": AGENT_TOKEN,
                   "CALLCUE_CALLS": "2"}  # fmt: skip
            proc = await asyncio.create_subprocess_exec("node", str(RECONNECT_SCRIPT), cwd=CLIENT, env=env,
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
            script = Script(proc)
            await script.wait("ready", "result", timeout=40)
            # a call that is still live when the server goes down: its end is stored at
            # shutdown, while the page is disconnected, and must reach the page on resume
            async with connect_twilio(f"{base}/ws/twilio") as tw:
                await stream_call(tw, first, TwilioMessages(agent_id="agent-1", call_sid="CAbefore"), speed=SPEED,
                                  send_stop=False)  # fmt: skip
                await asyncio.sleep(2.0)
        down = time.monotonic()
        await script.wait("down", "result", timeout=30)
        await asyncio.sleep(3.5)  # stay down long enough for refused retries: backoff has to grow
        async with server(settings) as (base, _app):
            restarted_after = time.monotonic() - down
            async with connect_twilio(f"{base}/ws/twilio") as tw2:
                await stream_call(tw2, second, TwilioMessages(agent_id="agent-1", call_sid="CAafter"), speed=SPEED)
            result = await script.wait("result", timeout=150)
    finally:
        if script is not None:
            await script.close()
    assert result.get("ok"), f"{result.get('failure')}\n{script.stderr.decode()[-2000:]}"
    assert not result["errors"], result["errors"]
    assert result["first"].startswith("connected as agent-1") and result["again"].startswith("connected as agent-1")
    assert re.search(r"disconnected \(\d+\); retrying in \d+\.\d s", result["down"]), result["down"]
    # backoff is capped at 15 s (+20 % jitter): back within one retry period of the restart
    assert result["reconnected_after_s"] < restarted_after + 18.5, (result, restarted_after)
    assert result["bad_status"] == "rejected: missing or invalid bearer token" == result["bad_status_later"]
    assert result["sockets"]["bad"] == 1, result["sockets"]  # refused once, never retried
    assert result["sockets"]["good"] >= 3, result["sockets"]  # first, at least one refused retry, the reconnect
    # nothing missed, nothing twice: each call's finals on the page are exactly the stored ones
    db = SealedSqlite(tmp_path / "callcue.db")
    for call_id in ("CAbefore", "CAafter"):
        stored = sorted(r[0] for r in db.execute("SELECT text FROM transcripts WHERE call_id = ?", (call_id,)))
        shown = sorted(re.sub(r"^\d+:\d\d", "", t) for t in result["calls"][call_id]["finals"])  # the m:ss stamp
        assert stored and shown == stored, (call_id, shown, stored)
    db.close()
    print(f"reconnected {result['reconnected_after_s']:.1f} s after the page saw the drop "
          f"(server back after {restarted_after:.1f} s); {result['sockets']['good']} sockets; page said {result['down']!r}")


async def test_the_softphone_page_streams_a_fake_microphone_over_webrtc(tmp_path: Path, playwright_installed: None) -> None:
    """Chromium's fake microphone plays a real recording (JFK, 16 kHz) into the softphone page;
    Opus over WebRTC reaches CallCue, and the page shows the transcript and a hint."""
    from tests.conftest import require_shared
    from tests.serverkit import quick_disclosure

    wav = require_shared("speech", "jfk", "jfk.wav")
    shots = Path(os.environ.get("CALLCUE_BROWSER_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    settings = make_settings(tmp_path, understanding=quick_disclosure(tmp_path))
    async with server(settings) as (base, app):
        env = {**os.environ, "CALLCUE_URL": base.replace("ws://", "http://"), "CALLCUE_TOKEN": AGENT_TOKEN,
               "CALLCUE_WAV": str(wav), "CALLCUE_SHOTS": str(shots), "CALLCUE_WORD": "country"}  # fmt: skip
        proc = await asyncio.create_subprocess_exec("node", str(CLIENT / "tests" / "softphone.mjs"), cwd=CLIENT, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 150)
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["errors"] == [], (result, err.decode()[-3000:])
        assert "token" not in result["url_after_load"]
        assert any("country" in t.lower() for t in result["transcript"]), result
        assert any("disclosure" in h.lower() for h in result["hints"]), result
        # hang-up reached the server: the call ended and its record is stored under the agent
        calls = app.state.runtime.get().calls
        for _ in range(100):
            if result["call_id"] not in calls.calls:
                break
            await asyncio.sleep(0.1)
        assert result["call_id"] not in calls.calls
    db = sqlite3.connect(tmp_path / "callcue.db")
    row = db.execute("SELECT platform, agent_id, ended_at IS NOT NULL FROM calls WHERE call_id = ?", (result["call_id"],)).fetchone()
    assert row == ("webrtc", "agent-1", 1)
