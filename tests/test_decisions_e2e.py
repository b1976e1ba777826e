"""The decision layer end to end through the real server, on SQLite and on PostgreSQL.

Calls are real Twilio Media Streams over loopback WebSockets carrying espeak-ng speech;
Whisper transcribes it, the detectors raise signals, the playbook engine decides, and the
webhooks land on a real HTTP server in this process. Supervisors act over /ws/agent and REST,
the agent over /ws/agent, and everything is then checked in the audit trail, the KPIs and the
hash chain (`callcue audit verify`). Each test gets a fresh database (SQLite file or a new
PostgreSQL schema from tests/pg.py).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from callcue.clients.audio_file import CallAudio, read_call_audio
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, mulaw_frames
from tests.pg import fresh_postgres_url, postgres_unavailable_reason
from tests.serverkit import (
    SUPERVISOR_TOKEN,
    AgentClient,
    agent,
    espeak_wav,
    make_settings,
    server,
)

BACKENDS = ["sqlite", "postgresql"]
SPEED = 2.0  # audio sent at 2x real time: shorter tests, Whisper still keeps up on 2 cores
SUPERVISOR = "supervisor-1"  # user id of SUPERVISOR_TOKEN in config/callcue.toml

UTTERANCES = {
    "manager": "I want to speak to a manager.",
    "cancel": "I want to cancel my account.",
}


# ----------------------------------------------------------------------------- helpers
class Receiver:
    """A real HTTP server standing in for the CRM: records every POST it gets."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    outer.posts.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "json": json.loads(body or b"null")})  # fmt: skip
                    n = len(outer.posts)
                out = json.dumps({"ok": True, "receipt": n}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.posts)

    async def wait_for(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while len(self.snapshot()) < n:
            if time.monotonic() > end:
                raise AssertionError(f"receiver got {len(self.snapshot())} POSTs, expected {n}: {self.snapshot()}")
            await asyncio.sleep(0.05)
        return self.snapshot()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CallAudio]:
    d = tmp_path_factory.mktemp("speech")
    return {k: read_call_audio(espeak_wav(text, d / f"{k}.wav", pad=(0.3, 0.9))) for k, text in UTTERANCES.items()}


def storage_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/callcue.db"
    url = fresh_postgres_url()
    if url is None:
        pytest.skip(f"PostgreSQL tests skipped: {postgres_unavailable_reason()}")
    return url


def settings_for(tmp_path: Path, backend: str, playbooks_yaml: str) -> Any:
    pdir = tmp_path / "playbooks"
    pdir.mkdir(exist_ok=True)
    (pdir / "test.yaml").write_text(playbooks_yaml)
    return make_settings(tmp_path, storage={"url": storage_url(backend, tmp_path)},
                         decision={"playbooks_dir": str(pdir)})  # fmt: skip


class LiveCall:
    """One Twilio stream kept open across several utterances, like a real call, so
    supervisors can act while it is live (pending approvals die with the call)."""

    def __init__(self, ws: Any, agent_id: str = "agent-1") -> None:
        self.ws = ws
        self.msgs = TwilioMessages(agent_id=agent_id)
        self.call_id = self.msgs.call_sid
        self._clock_ms = 0

    async def start(self) -> None:
        await self.ws.send(self.msgs.connected())
        await self.ws.send(self.msgs.start(["inbound"]))

    async def say(self, audio: CallAudio, speed: float = SPEED) -> None:
        t0 = time.monotonic()
        base = self._clock_ms
        last = 0.0
        for offset, frames in mulaw_frames(audio):
            delay = t0 + offset / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for track, payload in frames.items():
                await self.ws.send(self.msgs.media(track, base + int(offset * 1000), payload))
            last = offset
        self._clock_ms = base + int(last * 1000) + 20


@asynccontextmanager
async def live_call(base: str) -> AsyncIterator[LiveCall]:
    async with connect_twilio(f"{base}/ws/twilio") as ws:
        call = LiveCall(ws)
        await call.start()
        yield call
        await ws.send(call.msgs.stop())
        await ws.wait_closed()


def http_base(base: str) -> str:
    return base.replace("ws://", "http://")


def sup_http(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=http_base(base), headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"},
                             timeout=30)  # fmt: skip


def hints_from(client: AgentClient, prefix: str) -> list[dict[str, Any]]:
    return [e for e in client.of_type("hint") if str(e.get("source", "")).startswith(prefix)]


async def wait_count(client: AgentClient, pred: Any, n: int, timeout: float = 40.0) -> list[dict[str, Any]]:
    """Wait until `pred` matched `n` events in total."""
    end = time.monotonic() + timeout
    while True:
        got = [e for e in client.events if pred(e)]
        if len(got) >= n:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"{len(got)} of {n} expected events after {timeout}s")
        await asyncio.sleep(0.05)


async def wait_trail(http: httpx.AsyncClient, n: int, timeout: float = 40.0, **filters: Any) -> list[dict[str, Any]]:
    """Wait until the audit query matches `n` entries: proof the engine has decided."""
    end = time.monotonic() + timeout
    while True:
        got = await trail(http, **filters)
        if len(got) >= n:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"{len(got)} of {n} audit entries matching {filters} after {timeout}s")
        await asyncio.sleep(0.1)


async def trail(http: httpx.AsyncClient, **filters: Any) -> list[dict[str, Any]]:
    r = await http.get("/api/v1/audit", params={k: v for k, v in filters.items() if v is not None})
    assert r.status_code == 200, r.text
    return r.json()["entries"]


async def cancel_signals(http: httpx.AsyncClient, call_id: str) -> int:
    return sum(e["payload"]["name"] == "cancel_request" for e in await trail(http, call_id=call_id, kind="signal"))


def is_subsequence(needle: list[str], hay: list[str]) -> bool:
    it = iter(hay)
    return all(x in it for x in needle)


async def run_cli(*args: str) -> tuple[int, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(str(Path(sys.executable).parent / "callcue"), *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    out, err = await proc.communicate()
    assert out.strip(), err.decode()
    return proc.returncode or 0, json.loads(out.decode().strip().splitlines()[-1])


def tamper(url: str, seq: int) -> None:
    """What an insider with database access might do: rewrite who acted on a row."""
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url[len("sqlite:///"):])
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = ?", (seq,))
        db.commit()
        db.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = %s", (seq,))


# ----------------------------------------------------------------------------- playbooks
APPROVAL_PLAYBOOKS = """
playbooks:
  - id: manager_callback
    version: 1
    description: Book a manager call-back in the CRM, only with a supervisor's approval.
    trigger: {{kinds: [risk], names: [manager_request]}}
    min_confidence: 0.5
    autonomy: approve
    approval: {{role: supervisor, deadline_s: 60, on_expiry: drop}}
    actions:
      - kind: webhook
        url: {recv}/crm/callback
        payload: {{queue: managers}}
        retries: 0
        undo: {{url: {recv}/crm/callback/undo, payload: {{reason: rolled back}}}}
  - id: cancel_hold
    version: 1
    description: Put a billing hold on a cancelling account; unanswered requests escalate.
    trigger: {{kinds: [intent], names: [cancel_request]}}
    min_confidence: 0.5
    autonomy: approve
    approval: {{role: supervisor, deadline_s: 1.5, on_expiry: escalate, escalate_to: team_lead}}
    actions:
      - kind: webhook
        url: {recv}/billing/hold
        retries: 0
"""

SUGGEST_PLAYBOOKS = """
playbooks:
  - id: cancel_offer
    version: 1
    description: Suggest the loyalty offer; the CRM offer is created only if the agent accepts.
    trigger: {{kinds: [intent], names: [cancel_request]}}
    min_confidence: 0.5
    autonomy: suggest
    actions:
      - kind: hint
        title: Offer the loyalty discount
        suggested_reply: I can offer you 20% off for a year.
      - kind: webhook
        url: {recv}/crm/offer
        retries: 0
  - id: manager_hint
    version: 1
    description: Suggest a warm transfer; the CRM ticket is opened when the agent accepts.
    trigger: {{kinds: [risk], names: [manager_request]}}
    min_confidence: 0.5
    autonomy: suggest
    actions:
      - kind: hint
        title: Offer a warm transfer
      - kind: webhook
        url: {recv}/crm/transfer
        retries: 0
"""


# ----------------------------------------------------------------------------- tests
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
async def test_approval_gates_webhook_expiry_escalates_and_rollback_undoes(
    tmp_path: Path, backend: str, receiver: Receiver, speech: dict[str, CallAudio]
) -> None:
    s = settings_for(tmp_path, backend, APPROVAL_PLAYBOOKS.format(recv=receiver.url))
    async with server(s) as (base, _app), agent(base, SUPERVISOR_TOKEN) as sup, sup_http(base) as http:
        async with live_call(base) as call:
            # 1. approval-gated: nothing leaves until a supervisor approves over the WebSocket
            await call.say(speech["manager"])
            req = await sup.wait_for(lambda e: e.get("type") == "approval_request"
                                     and e["playbook_id"] == "manager_callback", timeout=40)  # fmt: skip
            aid = req["actions"][0]["action_id"]
            assert req["call_id"] == call.call_id and req["deadline_s"] == 60
            pending = (await http.get("/api/v1/actions", params={"state": "pending_approval"})).json()["actions"]
            assert [a["action_id"] for a in pending] == [aid]
            await asyncio.sleep(0.5)
            assert receiver.snapshot() == [], "a gated webhook ran before approval"
            await sup.send({"type": "approve", "action_id": aid, "note": "customer is a VIP"})
            ok = await sup.wait_for(lambda e: e.get("type") in ("approve_result", "error"))
            assert ok["type"] == "approve_result", ok
            posts = await receiver.wait_for(1)
            assert len(posts) == 1 and posts[0]["path"] == "/crm/callback"
            assert posts[0]["headers"]["idempotency-key"] == f"callcue-{aid}-do"
            assert posts[0]["json"]["call_id"] == call.call_id and posts[0]["json"]["queue"] == "managers"
            await sup.wait_for(lambda e: e.get("type") == "action_update" and e["action_id"] == aid
                               and e["state"] == "succeeded")  # fmt: skip
            # a second approval of the same action is refused, not run twice
            await sup.send({"type": "approve", "action_id": aid})
            err = await sup.wait_for(lambda e: e.get("type") == "error" and e.get("request") == "approve")
            assert err["code"] == "conflict"

            # 2. an approval nobody answers expires and, as configured, escalates
            await call.say(speech["cancel"])
            req2 = await sup.wait_for(lambda e: e.get("type") == "approval_request"
                                      and e["playbook_id"] == "cancel_hold", timeout=40)  # fmt: skip
            hold = req2["actions"][0]["action_id"]
            await sup.wait_for(lambda e: e.get("type") == "action_update" and e["action_id"] == hold
                               and e["state"] == "expired", timeout=10)  # fmt: skip
            esc = await sup.wait_for(lambda e: e.get("type") == "escalation" and e["playbook_id"] == "cancel_hold")
            assert esc["role"] == "team_lead"
            late = await http.post(f"/api/v1/actions/{hold}/approve")
            assert late.status_code == 409 and "expired" in late.json()["error"]["message"]

            # 3. rollback of the executed webhook calls its undo, with its own idempotency key
            rb = await http.post(f"/api/v1/actions/{aid}/rollback", json={"reason": "duplicate booking"})
            assert rb.status_code == 200 and rb.json()["action"]["state"] == "rolled_back", rb.text
            posts = await receiver.wait_for(2)

            # 4. a supervisor's own decision on the live call reaches the agent at once
            ov = await http.post(f"/api/v1/calls/{call.call_id}/override", json={
                "action": {"kind": "hint", "title": "Offer a call-back from the team lead"}, "reason": "VIP"})  # fmt: skip
            assert ov.status_code == 200, ov.text
            mine_hint = await sup.wait_for(lambda e: e.get("type") == "hint" and e["source"].startswith("human@"))
            assert mine_hint["title"] == "Offer a call-back from the team lead" and mine_hint["call_id"] == call.call_id
        assert [p["path"] for p in posts] == ["/crm/callback", "/crm/callback/undo"], "the hold must never run"
        undo = posts[1]
        assert undo["headers"]["idempotency-key"] == f"callcue-{aid}-undo"
        assert undo["json"]["undo_of"] == f"callcue-{aid}-do" and undo["json"]["original_result"] == {"ok": True, "receipt": 1}

        entries = await trail(http, call_id=call.call_id)
        mine = [e["kind"] for e in entries if e["action_id"] == aid]
        assert is_subsequence(["action_proposed", "action_pending_approval", "action_approved", "action_dispatched",
                               "action_succeeded", "action_rolled_back"], mine), mine
        approved = next(e for e in entries if e["action_id"] == aid and e["kind"] == "action_approved")
        assert approved["actor"] == SUPERVISOR and approved["payload"]["note"] == "customer is a VIP"
        matched = next(e for e in entries if e["kind"] == "playbook_matched" and e["playbook_id"] == "manager_callback")
        assert matched["payload"]["min_confidence"] == 0.5 and matched["payload"]["threshold_source"] == "playbook"
        override = next(e for e in entries if e["kind"] == "override")
        assert override["actor"] == SUPERVISOR and override["payload"]["reason"] == "VIP"
        expired = next(e for e in entries if e["action_id"] == hold and e["kind"] == "action_expired")
        assert expired["payload"]["on_expiry"] == "escalate" and expired["actor"] == "system"
        assert any(e["kind"] == "action_succeeded" and e["payload"]["kind"] == "escalate"
                   and e["playbook_id"] == "cancel_hold" for e in entries)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
async def test_pause_and_resume_globally_and_per_call_mid_call(
    tmp_path: Path, backend: str, receiver: Receiver, speech: dict[str, CallAudio]
) -> None:
    s = settings_for(tmp_path, backend, SUGGEST_PLAYBOOKS.format(recv=receiver.url))
    offer = "cancel_offer@"
    async with server(s) as (base, _app), agent(base, SUPERVISOR_TOKEN) as sup, sup_http(base) as http:
        async with live_call(base) as call:
            await call.say(speech["cancel"])
            first = (await wait_count(sup, lambda e: e.get("type") == "hint" and e["source"].startswith(offer), 1))[0]
            suggested = first["attrs"]["pending_action_ids"]
            assert len(suggested) == 1  # the CRM webhook, waiting for the agent

            # global kill switch mid-call: the waiting webhook is cancelled, later triggers do nothing
            r = await http.post("/api/v1/playbooks/cancel_offer/pause", json={"reason": "bad offer text"})
            assert r.status_code == 200 and r.json()["cancelled_actions"] == 1, r.text
            await sup.wait_for(lambda e: e.get("type") == "action_update" and e["action_id"] == suggested[0]
                               and e["state"] == "cancelled")  # fmt: skip
            await call.say(speech["cancel"])
            await wait_trail(http, 1, call_id=call.call_id, kind="suppressed", playbook_id="cancel_offer")
            await asyncio.sleep(0.3)
            assert len(hints_from(sup, offer)) == 1
            status = {p["id"]: p for p in (await http.get("/api/v1/playbooks")).json()["playbooks"]}
            assert status["cancel_offer"]["paused"] is True and status["manager_hint"]["paused"] is False

            r = await http.post("/api/v1/playbooks/cancel_offer/resume")
            assert r.status_code == 200 and r.json()["paused"] is False
            await call.say(speech["cancel"])
            await wait_count(sup, lambda e: e.get("type") == "hint" and e["source"].startswith(offer), 2)

            # the same for this call only
            r = await http.post("/api/v1/playbooks/cancel_offer/pause", json={"call_id": call.call_id})
            assert r.status_code == 200 and r.json()["call_id"] == call.call_id
            await call.say(speech["cancel"])
            await wait_trail(http, 2, call_id=call.call_id, kind="suppressed", playbook_id="cancel_offer")
            await asyncio.sleep(0.3)
            assert len(hints_from(sup, offer)) == 2
            status = {p["id"]: p for p in (await http.get("/api/v1/playbooks")).json()["playbooks"]}
            assert status["cancel_offer"]["paused"] is False and status["cancel_offer"]["paused_calls"] == [call.call_id]

            await http.post("/api/v1/playbooks/cancel_offer/resume", json={"call_id": call.call_id})
            await call.say(speech["cancel"])
            await wait_count(sup, lambda e: e.get("type") == "hint" and e["source"].startswith(offer), 3)
        assert receiver.snapshot() == [], "nobody accepted: the suggested webhook must not run"
        entries = await trail(http, call_id=call.call_id, playbook_id="cancel_offer")
        reasons = [e["payload"]["reason"] for e in entries if e["kind"] == "suppressed"]
        assert reasons == ["paused_globally", "paused_for_call"], reasons
        switches = await trail(http, playbook_id="cancel_offer", kind=None)
        scopes = [(e["kind"], e["payload"]["scope"], e["actor"]) for e in switches if e["kind"] in ("paused", "resumed")]
        assert scopes == [("paused", "global", SUPERVISOR), ("resumed", "global", SUPERVISOR),
                          ("paused", "call", SUPERVISOR), ("resumed", "call", SUPERVISOR)]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
async def test_feedback_calibrates_threshold_builds_dataset_kpis_and_chain_catches_edit(
    tmp_path: Path, backend: str, receiver: Receiver, speech: dict[str, CallAudio]
) -> None:
    s = settings_for(tmp_path, backend, SUGGEST_PLAYBOOKS.format(recv=receiver.url))
    offer = "cancel_offer@"
    async with server(s) as (base, app), agent(base, SUPERVISOR_TOKEN) as sup, agent(base) as desk, \
            sup_http(base) as http:  # fmt: skip
        t_start = time.time()
        async with live_call(base) as call:
            # the agent dismisses three offers (with reasons) and corrects a fourth
            verdicts = [("dismissed", "customer is moving abroad", None), ("dismissed", "already offered", None),
                        ("dismissed", "not eligible", None), ("corrected", None, "cancel_account")]  # fmt: skip
            for i, (action, reason, correction) in enumerate(verdicts, 1):
                await call.say(speech["cancel"])
                hint = (await wait_count(desk, lambda e: e.get("type") == "hint" and e["source"].startswith(offer), i))[-1]
                await desk.send({"type": "feedback", "hint_id": hint["hint_id"], "action": action,
                                 **({"reason": reason} if reason else {}),
                                 **({"correction": correction} if correction else {})})  # fmt: skip
                ack = await desk.wait_for(lambda e, h=hint["hint_id"]: e.get("type") in ("feedback_ack", "error")
                                          and e.get("hint_id") == h)  # fmt: skip
                assert ack["type"] == "feedback_ack", ack
            # accepting a suggestion runs the action it offered
            await call.say(speech["manager"])
            mh = (await wait_count(desk, lambda e: e.get("type") == "hint" and e["source"].startswith("manager_hint@"), 1))[0]
            await asyncio.sleep(0.3)  # a measurable time-to-accept
            await desk.send({"type": "feedback", "hint_id": mh["hint_id"], "action": "accepted"})
            posts = await receiver.wait_for(1)
            assert [p["path"] for p in posts] == ["/crm/transfer"]
            assert posts[0]["headers"]["idempotency-key"] == f"callcue-{mh['attrs']['pending_action_ids'][0]}-do"

            # four judged hints (the phrase rule scores 0.8 or 0.9 depending on Whisper's wording),
            # none accepted: calibration over the [0.5, 1.0) band raises the bar as far as allowed
            too_few = await http.post("/api/v1/playbooks/cancel_offer/calibrate", json={"min_count": 5, "band": 0.5})
            assert too_few.status_code == 200 and too_few.json()["changed"] is False, too_few.text
            r = await http.post("/api/v1/playbooks/cancel_offer/calibrate",
                                json={"min_count": 4, "band": 0.5, "target": 0.6, "max_step": 0.5, "promote": True})  # fmt: skip
            assert r.status_code == 200, r.text
            cal = r.json()
            band = next(b for b in cal["calibration"]["bands"] if b["lo"] == 0.5)
            assert (band["shown"], band["responded"], band["accepted"]) == (4, 4, 0), cal["calibration"]["bands"]
            assert cal["changed"] and cal["threshold_now"] == 1.0 and cal["version"]["status"] == "active"
            # ... and the running engine applies it: the next "cancel" no longer fires the playbook
            before = await cancel_signals(http, call.call_id)
            await call.say(speech["cancel"])
            end = time.monotonic() + 40
            while await cancel_signals(http, call.call_id) <= before:
                assert time.monotonic() < end, "the cancel signal never reached the engine"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            assert len(hints_from(desk, offer)) == 4
            ths = (await http.get("/api/v1/playbooks/cancel_offer/thresholds")).json()
            assert [v["status"] for v in ths["versions"]] == ["retired", "active"]
            # the same commands over the supervisor WebSocket
            await sup.send({"type": "list_thresholds", "playbook_id": "cancel_offer"})
            ws_ths = await sup.wait_for(lambda e: e.get("type") in ("list_thresholds_result", "error"))
            assert ws_ths["threshold_now"] == 1.0 and ws_ths["file_threshold"] == 0.5, ws_ths
            # a supervisor can take it back
            rb = await http.post("/api/v1/playbooks/cancel_offer/thresholds/rollback")
            assert rb.status_code == 200 and rb.json()["threshold_now"] == 0.5
            # or judge a candidate silently first: proposed -> shadow, compared on live signals
            cand = (await http.post("/api/v1/playbooks/cancel_offer/calibrate",
                                    json={"min_count": 4, "band": 0.5, "max_step": 0.5})).json()["version"]  # fmt: skip
            assert cand["status"] == "proposed" and cand["threshold"] == 1.0
            sh = await http.post(f"/api/v1/thresholds/{cand['version']}/shadow")
            assert sh.status_code == 200 and sh.json()["version"]["status"] == "shadow", sh.text
            await call.say(speech["cancel"])
            await wait_count(desk, lambda e: e.get("type") == "hint" and e["source"].startswith(offer), 5)
            end = time.monotonic() + 10
            while (report := (await http.get(f"/api/v1/thresholds/{cand['version']}/compare")).json()["report"])["decisions"] < 1:
                assert time.monotonic() < end, report
                await asyncio.sleep(0.1)
            assert report["active_fire_rate"] == 1.0 and report["candidate_fire_rate"] == 0.0, report
        disp = await http.post(f"/api/v1/calls/{call.call_id}/disposition", json={"outcome": "churned", "agent_id": "agent-1"})
        assert disp.status_code == 200, disp.text

        # feedback reached the engine and the trail, with the agent as actor
        fb = await trail(http, call_id=call.call_id, kind="feedback")
        assert [(e["payload"]["action"], e["actor"]) for e in fb] == [
            ("dismissed", "agent-1"), ("dismissed", "agent-1"), ("dismissed", "agent-1"),
            ("corrected", "agent-1"), ("accepted", "agent-1")]  # fmt: skip
        assert fb[0]["payload"]["reason"] == "customer is moving abroad" and fb[3]["payload"]["correction"] == "cancel_account"
        # query by agent / playbook / time window, and a JSONL export of the call
        by_pb = await trail(http, playbook_id="cancel_offer", kind="feedback", agent_id="agent-1")
        assert len(by_pb) == 4
        assert await trail(http, kind="feedback", since=time.time() + 60) == []
        assert len(await trail(http, kind="feedback", since=t_start, until=time.time() + 1)) == 5
        exp = await http.get("/api/v1/audit/export", params={"call_id": call.call_id})
        assert exp.status_code == 200 and exp.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(x) for x in exp.text.splitlines()]
        assert lines and {x["call_id"] for x in lines} == {call.call_id}
        assert [x["seq"] for x in lines] == sorted(x["seq"] for x in lines)
        assert {"signal", "hint_shown", "feedback", "action_dismissed", "disposition", "call_ended"} <= {x["kind"] for x in lines}

        # KPIs per playbook and per agent
        k = {x["playbook_id"]: x for x in (await http.get("/api/v1/kpis", params={"by": "playbook"})).json()["kpis"]}
        co = k["cancel_offer"]
        assert (co["shown"], co["accepted"], co["dismissed"], co["corrected"], co["churned"]) == (5, 0, 3, 1, 1)
        mk = k["manager_hint"]
        assert mk["shown"] == 1 and mk["accepted"] == 1 and mk["time_to_accept_p50_s"] >= 0.3
        ka = {x["agent_id"]: x for x in (await http.get("/api/v1/kpis", params={"by": "agent"})).json()["kpis"]}
        assert ka["agent-1"]["accepted"] == 1 and ka["agent-1"]["churned"] == 1

        # confirmed utterances become a reviewable intent dataset version
        built = (await http.post("/api/v1/intent-datasets")).json()["dataset"]
        assert built["status"] == "proposed" and built["n_examples"] == 2
        cmp = (await http.get(f"/api/v1/intent-datasets/{built['version']}/compare")).json()
        assert sorted(x["intent"] for x in cmp["added"]) == ["cancel_account", "manager_request"]
        live = next(d for d in app.state.runtime.get().understanding.detectors if d.name == "intent")
        before = live.version
        prom = await http.post(f"/api/v1/intent-datasets/{built['version']}/promote")
        assert prom.status_code == 200 and prom.json()["dataset"]["status"] == "active"
        # promotion retrained the running server's intent detector on the confirmed examples
        assert live.version == f"{before}+ds{built['version']}"
        assert (await http.get("/api/v1/intent-datasets")).json()["active"] == built["version"]
        examples = (await http.get(f"/api/v1/intent-datasets/{built['version']}")).json()["examples"]
        assert (await http.post("/api/v1/intent-datasets")).json()["dataset"] is None  # nothing new confirmed
        rb = await http.post("/api/v1/intent-datasets/rollback")
        assert rb.status_code == 200 and rb.json()["active"] is None
        assert live.version == before  # and rollback put the config-only model back
        again = await http.post("/api/v1/intent-datasets/rollback")
        assert again.status_code == 409
    url = s.storage.url

    # the promoted version trains the intent classifier (off the event loop: it is CPU work)
    from callcue.understand.intents import (
        IntentClassifier,
        default_config_path,
        load_intents,
    )

    def retrain() -> list[str]:
        clf = IntentClassifier.from_config(load_intents(default_config_path()),
                                           extra_texts=[e["text"] for e in examples],
                                           extra_labels=[e["intent"] for e in examples])  # fmt: skip
        return [p.intent for p in clf.predict([e["text"] for e in examples])]

    assert await asyncio.get_running_loop().run_in_executor(None, retrain) == [e["intent"] for e in examples]

    # the hash chain: verify passes on the server's database, then an edited row is named
    code, res = await run_cli("audit", "verify", "--db", url)
    assert code == 0 and res["ok"] and res["checked"] > 20, res
    victim = fb[2]["seq"]
    tamper(url, victim)
    code, res = await run_cli("audit", "verify", "--db", url)
    assert code == 1 and not res["ok"] and res["first_bad_seq"] == victim, res


# ----------------------------------------------------------------------------- dataset lifecycle (no server)
async def _confirm(audit: Any, hint_id: str, text: str, intent: str, action: str, correction: str | None = None) -> None:
    await audit.append("hint_shown", call_id="c1", agent_id="agent-1", playbook_id="p", payload={
        "hint_id": hint_id, "intent": intent, "text": text, "confidence": 0.8})  # fmt: skip
    await audit.append("feedback", call_id="c1", agent_id="agent-1", playbook_id="p", actor="agent-1", payload={
        "hint_id": hint_id, "action": action, "correction": correction})  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
async def test_intent_dataset_versions_promote_compare_and_roll_back(tmp_path: Path, backend: str) -> None:
    """Rollback returns to the version that was active before, not merely the previous build."""
    from callcue.audit.log import AuditLog
    from callcue.learning.store import Learning, LearningError
    from tests.pg import open_test_db

    db = await open_test_db(backend, tmp_path)
    try:
        audit = await AuditLog(db).init()
        lrn = await Learning(db, audit).init()
        await _confirm(audit, "h1", "close my account now", "cancel_account", "accepted")
        v1 = await lrn.build_intent_dataset(actor="sup")
        assert v1 is not None and v1.status == "proposed"
        await lrn.promote_dataset(v1.version, actor="sup")
        await _confirm(audit, "h2", "put me through to your boss", "cancel_account", "corrected", "manager_request")
        await _confirm(audit, "h3", "close my account now", "cancel_account", "corrected", "manager_request")
        v2 = await lrn.build_intent_dataset(actor="sup")
        assert v2 is not None and v2.parent_version == v1.version
        diff = await lrn.compare_datasets(v2.version)
        assert diff["against"] == v1.version and diff["removed"] == []
        assert diff["added"] == [{"text": "put me through to your boss", "intent": "manager_request"}]
        assert diff["relabelled"] == [{"text": "close my account now", "from": "cancel_account", "to": "manager_request"}]
        with pytest.raises(LearningError, match="already active"):
            await lrn.promote_dataset(v1.version)
        await lrn.promote_dataset(v2.version, actor="sup")
        assert (await lrn.active_dataset()).version == v2.version  # type: ignore[union-attr]
        assert [v.status for v in await lrn.dataset_versions()] == ["retired", "active"]
        back = await lrn.rollback_dataset(actor="sup")
        assert back is not None and back.version == v1.version and back.status == "active"
        assert await lrn.rollback_dataset() is None  # v1 replaced nothing: back to config examples only
        assert await lrn.active_dataset() is None
        with pytest.raises(LearningError, match="nothing to roll back"):
            await lrn.rollback_dataset()
        changes = [e.payload["change"] for e in await audit.query(kind="model_version_promoted")]
        assert changes == ["promoted", "promoted", "rolled_back", "rolled_back"]
        assert (await audit.verify()).ok
    finally:
        await db.close()
