"""Issue-8 defects, each reproduced the way it was found (a live server on loopback, or the
real part alone where no server is needed), now refused precisely and recorded."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from callcue.clients.twilio_stream import (
    TwilioMessages,
    connect_native,
    connect_twilio,
    twilio_headers,
)
from callcue.platforms.base import Handshake
from callcue.platforms.twilio import authenticate as twilio_auth
from callcue.platforms.twilio import twilio_signature
from tests.serverkit import AGENT_TOKEN, SUPERVISOR_TOKEN, make_settings, server


async def _closed(ws: Any) -> tuple[int | None, str]:
    import asyncio

    await asyncio.wait_for(ws.wait_closed(), 10)
    return ws.close_code, ws.close_reason


def test_twilio_signature_is_twilio_s_documented_hmac() -> None:
    # the example from Twilio's "Validating requests" documentation
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
    assert twilio_signature("https://mycompany.com/myapp.php?foo=1&bar=2", "12345", params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="

    class Cfg:
        validate_signature, auth_tokens, public_url = True, ["tok-a", "tok-b"], None

    url = "ws://127.0.0.1:8080/ws/twilio"
    ok = Handshake(url, {"x-twilio-signature": twilio_signature(url, "tok-b")})
    assert twilio_auth(ok, Cfg) is None
    # TLS ended at a proxy: Twilio signed the wss:// URL in the TwiML
    assert twilio_auth(Handshake(url, {"x-twilio-signature": twilio_signature("wss://127.0.0.1:8080/ws/twilio", "tok-a")}), Cfg) is None
    assert "missing" in (twilio_auth(Handshake(url, {}), Cfg) or "")
    assert "does not match" in (twilio_auth(Handshake(url, {"x-twilio-signature": "garbage"}), Cfg) or "")
    assert "does not match" in (twilio_auth(Handshake(url + "?x=1", ok.headers), Cfg) or "")


async def test_every_way_in_is_authenticated_and_refusals_are_recorded(tmp_path: Path) -> None:
    s = make_settings(tmp_path, platforms={"idle_timeout_s": 1.5})
    async with server(s) as (base, _app):
        url = f"{base}/ws/twilio"
        async with connect(url) as ws:
            assert await _closed(ws) == (1008, "missing X-Twilio-Signature")
        async with connect(url, additional_headers={"X-Twilio-Signature": "AAAA"}) as ws:
            code, reason = await _closed(ws)
            assert code == 1008 and "does not match" in reason
        async with connect_twilio(url, auth_token="not-the-demo-token") as ws:
            assert (await _closed(ws))[0] == 1008
        async with connect(f"{base}/ws/native") as ws:
            code, reason = await _closed(ws)
            assert code == 1008 and "bearer token" in reason
        async with connect(f"{base}/ws/native", additional_headers={"Authorization": "Bearer wrong-token"}) as ws:
            assert (await _closed(ws))[0] == 1008
        # a foreign page may not open the agent socket, even with a good token
        async with connect(f"{base}/ws/agent", origin="http://evil.example",  # type: ignore[arg-type]
                           additional_headers={"Authorization": f"Bearer {AGENT_TOKEN}"}) as ws:
            assert await _closed(ws) == (1008, "origin not allowed")
        # an authenticated stream that starts a call and sends no audio is closed: idle
        # sockets cannot hold the call cap
        m = TwilioMessages(call_sid="CAidle", agent_id="agent-1")
        async with connect_twilio(url) as ws:
            await ws.send(m.connected())
            await ws.send(m.start(["inbound"]))
            code, reason = await _closed(ws)
            assert code == 1008 and "no audio" in reason
        async with connect_native(f"{base}/ws/native") as ws:
            code, reason = await _closed(ws)
            assert code == 1008 and "no audio" in reason
    db = sqlite3.connect(tmp_path / "callcue.db")
    rows = db.execute("SELECT platform, close_code, reason FROM ingress_rejections ORDER BY id").fetchall()
    assert [(p, c) for p, c, _ in rows] == [("twilio", 1008)] * 3 + [("native", 1008)] * 2 + [("agent", 1008)] + [
        ("twilio", 1008), ("native", 1008)]
    assert not any("demo" in r or "token=" in r for _, _, r in rows)
    assert db.execute("SELECT ended_at IS NOT NULL FROM calls WHERE call_id = 'CAidle'").fetchone() == (1,)


async def test_failed_tokens_are_rate_limited_per_source(tmp_path: Path) -> None:
    s = make_settings(tmp_path, auth={"max_failures_per_minute": 3})
    async with server(s) as (base, _app):
        for _ in range(3):
            async with connect(f"{base}/ws/agent", additional_headers={"Authorization": "Bearer guess-0000"}) as ws:
                assert (await _closed(ws))[1] == "missing or invalid bearer token"
        async with connect(f"{base}/ws/agent", additional_headers={"Authorization": f"Bearer {AGENT_TOKEN}"}) as ws:
            code, reason = await _closed(ws)
            assert code == 1008 and "too many failed" in reason
        async with httpx.AsyncClient(base_url=base.replace("ws://", "http://")) as http:
            r = await http.get("/api/v1/actions", headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"})
            assert r.status_code == 401


async def test_a_lone_surrogate_call_sid_is_refused_before_anything_runs(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    async with server(s) as (base, _app):
        m = TwilioMessages(call_sid="CA0", agent_id="agent-1")
        start = json.loads(m.start(["inbound"]))
        text = json.dumps(start).replace('"CA0"', '"CA\\ud800x"')
        async with connect_twilio(f"{base}/ws/twilio") as ws:
            await ws.send(m.connected())
            await ws.send(text)
            code, reason = await _closed(ws)
            assert code == 1007 and "Unicode" in reason
    db = sqlite3.connect(tmp_path / "callcue.db")
    assert db.execute("SELECT COUNT(*) FROM calls").fetchone() == (0,)
    assert db.execute("SELECT close_code FROM ingress_rejections").fetchall() == [(1007,)]


BAD_MESSAGES: list[tuple[str, str]] = [
    ('{"type": "unsubscribe", "call_id": []}', "call_id"),
    ('{"type": "subscribe", "call_id": "c\\ud800"}', "Unicode"),
    ('{"type": "feedback", "hint_id": "h1", "action": "dismissed", "reason": "\\udfff"}', "Unicode"),
    ("[" * 50000, "nested"),
    ('{"type": "audit_query", "limit": 1e400}', "finite"),
    ('{"type": "audit_query", "after_seq": 9223372036854775808}', "64-bit"),
    ('{"type": "promote_threshold", "version": 9223372036854775808}', "64-bit"),
    ('{"type": "override", "action_id": "", "action": null}', "exactly one"),
    ('{"type": "override", "call_id": "c1", "reason": "\\ud800", "action": null}', "Unicode"),
]


async def test_malformed_client_messages_get_an_error_and_the_socket_stays(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    async with server(s) as (base, _app):
        async with connect(f"{base}/ws/agent", additional_headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"},
                           subprotocols=["callcue.v1.json"], max_size=None) as ws:  # type: ignore[list-item]
            assert json.loads(await ws.recv())["type"] == "hello"
            for raw, words in BAD_MESSAGES:
                await ws.send(raw)
                reply = json.loads(await ws.recv())
                assert reply["type"] == "error", (raw[:60], reply)
                assert words.lower() in reply["message"].lower(), (raw[:60], reply)
            await ws.send('{"type": "ping"}')
            assert json.loads(await ws.recv())["type"] == "pong"


async def test_rest_refuses_huge_numbers_and_bad_text_with_400(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    async with server(s) as (base, _app):
        h = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
        async with httpx.AsyncClient(base_url=base.replace("ws://", "http://"), headers=h) as http:
            big = "9" * 30
            for method, path, body in [
                ("POST", f"/api/v1/thresholds/{big}/promote", None),
                ("GET", f"/api/v1/thresholds/{big}/compare", None),
                ("GET", f"/api/v1/intent-datasets/{big}", None),
                ("POST", f"/api/v1/intent-datasets/{big}/promote", None),
                ("GET", f"/api/v1/audit?after_seq={big}", None),
                ("GET", "/api/v1/audit?limit=1e400", None),
                ("POST", "/api/v1/calls/c1/override", '{"reason": "\\ud800", "action": null}'),
                ("POST", "/api/v1/calls/c1/override", "[" * 50000),
            ]:
                r = await http.request(method, path, content=body)
                assert r.status_code == 400, (path, r.status_code, r.text[:200])


async def test_a_retracted_signal_updates_its_stored_row(tmp_path: Path) -> None:
    from callcue.events import Signal
    from callcue.store.calls import CallStore
    from callcue.store.db import Database

    db = await Database.connect(f"sqlite:///{tmp_path}/s.db")
    store = CallStore(db)
    await store.open()
    try:
        s = Signal("c1", "intent", "cancel_account", 0.8, "intent", "1")
        store.signal(s)
        s.retracted = True
        store.signal(s)
        await store.flush()
        rows = (await store.call_record("c1"))["signals"]
        assert [(r["signal_id"], r["retracted"]) for r in rows] == [(s.signal_id, 1)]
    finally:
        await store.close()
        await db.close()


async def test_an_action_never_runs_when_its_audit_entry_cannot_be_written() -> None:
    from callcue import metrics
    from callcue.config import REPO_CONFIG_DIR
    from callcue.decide.actions.dispatcher import ActionDispatcher
    from callcue.decide.engine import AuditUnavailable, CallInfo, DecisionEngine
    from callcue.decide.playbooks import PlaybookSet
    from callcue.events import Evidence, Signal

    class BrokenAudit:
        async def append(self, kind: str, **kw: Any) -> Any:
            raise OSError("disk full")

    shown: list[Any] = []
    to_sup: list[dict[str, Any]] = []

    async def agent(call_id: str, ev: dict[str, Any]) -> None:
        shown.append(ev)

    async def sup(ev: dict[str, Any]) -> None:
        to_sup.append(ev)

    engine = DecisionEngine(PlaybookSet.load(REPO_CONFIG_DIR / "playbooks"), BrokenAudit(),
                            ActionDispatcher(publish_to_agent=agent, publish_to_supervisors=sup))  # fmt: skip
    before = metrics.AUDIT_FAILURES.labels("signal")._value.get()
    ev = Evidence("customer", "I want to cancel my account", 1.0, 2.0, 1, 1, True)
    with pytest.raises(AuditUnavailable):
        await engine.on_signal(CallInfo("c1", "agent-1"), Signal("c1", "intent", "cancel_account", 0.95, "intent", "1", evidence=ev))
    assert shown == [] and engine.actions(call_id="c1") == []
    assert [e["type"] for e in to_sup] == ["audit_unavailable"]
    assert metrics.AUDIT_FAILURES.labels("signal")._value.get() == before + 1
    await engine.close()


def test_tokens_never_reach_a_log_line() -> None:
    from callcue.logs import JsonFormatter, TextFormatter

    rec = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
                            ("127.0.0.1:5", "/ws/agent?token=demo-agent-token"), None)
    for fmt in (TextFormatter(), JsonFormatter()):
        line = fmt.format(rec)
        assert "demo-agent-token" not in line and "token=[redacted]" in line
    rec2 = logging.LogRecord("x", logging.INFO, __file__, 1, "headers %s", ({"authorization": "Bearer s3cret-value"},), None)
    assert "s3cret" not in TextFormatter().format(rec2)


def test_signed_headers_for_the_project_s_own_sender() -> None:
    h = twilio_headers("ws://127.0.0.1:1/ws/twilio")
    assert h["X-Twilio-Signature"] == twilio_signature("ws://127.0.0.1:1/ws/twilio", "demo-twilio-auth-token")


async def _stream_native(base: str, call_id: str, agent_id: str, pcm: Any) -> tuple[int | None, str]:
    import asyncio

    from callcue.platforms.native import encode_audio_frame

    async with connect_native(f"{base}/ws/native") as ws:
        await ws.send(json.dumps({"type": "start", "call_id": call_id, "agent_id": agent_id,
                                  "channels": ["customer"], "encoding": "L16", "sample_rate": 16000}))
        step = 16000 * 40 // 1000
        try:
            for i in range(0, len(pcm), step):
                await ws.send(encode_audio_frame(0, pcm[i:i + step].tobytes()))
                await asyncio.sleep(0.002)
            await ws.send(json.dumps({"type": "stop", "reason": "hangup"}))
        except Exception:
            pass
        return await _closed(ws)


async def test_a_reconnect_continues_its_call_and_another_agent_cannot_take_it(tmp_path: Path) -> None:
    from callcue.clients.audio_file import read_call_audio
    from tests.serverkit import agent, espeak_wav

    # sentences both Moonshine and Whisper read right from espeak-ng's synthetic voice at 16 kHz
    first = read_call_audio(espeak_wav("Someone stole my card yesterday.", tmp_path / "a.wav", rate=16000)).channels["customer"]
    again = read_call_audio(espeak_wav("I would like a refund for last month.", tmp_path / "b.wav", rate=16000)).channels["customer"]
    s = make_settings(tmp_path, auth={"tokens": [
        {"token": AGENT_TOKEN, "user_id": "agent-1", "role": "agent"},
        {"token": "demo-agent-2-token", "user_id": "agent-2", "role": "agent"}]})
    async with server(s) as (base, _app):
        async with agent(base) as desk:
            assert (await _stream_native(base, "re-1", "agent-1", first))[0] == 1000
            await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == "re-1", 60)
            n_first = len(desk.of_type("call_ended"))
            # the platform reconnects with the same call id: the call goes on
            assert (await _stream_native(base, "re-1", "agent-1", again))[0] == 1000
            await desk.wait_for(lambda e: e.get("type") == "call_ended" and len(desk.of_type("call_ended")) > n_first, 60)
            # the same id from another agent is refused, and does not hand the call over
            code, reason = await _stream_native(base, "re-1", "agent-2", first)
            assert code == 1008 and "another agent" in reason
        async with httpx.AsyncClient(base_url=base.replace("ws://", "http://")) as http:
            other = await http.get("/api/v1/calls/re-1", headers={"Authorization": "Bearer demo-agent-2-token"})
            assert other.status_code == 403
            rec = (await http.get("/api/v1/calls/re-1", headers={"Authorization": f"Bearer {AGENT_TOKEN}"})).json()
    finals = rec["transcripts"]
    assert rec["call"]["agent_id"] == "agent-1" and rec["call"]["ended_at"] is not None
    assert len(finals) >= 2
    segs = [t["segment_id"] for t in finals]
    assert len(set(segs)) == len(segs), segs  # segment ids go on, never restart
    assert finals[-1]["start_s"] >= finals[0]["end_s"]  # and so does the call clock
    assert "refund" in finals[-1]["text"].lower()


async def test_calls_a_killed_server_left_open_end_at_their_last_row(tmp_path: Path) -> None:
    from callcue.store.calls import CallStore
    from callcue.store.db import Database

    url = f"sqlite:///{tmp_path}/k.db"
    db = await Database.connect(url)
    store = CallStore(db)
    await store.open()
    store.call_started("k1", "agent-1", "twilio", "PCMU", 8000, ["customer"], {})
    from callcue.events import Transcript

    store.transcript(Transcript("k1", "customer", 1, 0, "hello", True, 0.0, 1.0, emitted_at=1234.5))
    await store.flush()
    await db.close()  # the process dies here: no call_ended, no close()
    db = await Database.connect(url)
    store = CallStore(db)
    await store.open()
    try:
        row = (await store.call_record("k1"))["call"]
        assert (row["ended_at"], row["end_reason"]) == (1234.5, "server_restart")
    finally:
        await store.close()
        await db.close()


def test_media_timestamps_cannot_run_ahead_of_real_time() -> None:
    """40 small frames that each claim a 299 s jump used to make the server synthesize and
    decode hours of silence; the gaps a stream may have are bounded by how long it is open."""
    import base64

    from callcue.platforms.base import AudioIn, ProtocolError
    from callcue.platforms.twilio import TwilioProtocol

    now = [0.0]
    p = TwilioProtocol(clock=lambda: now[0])
    m = TwilioMessages(call_sid="CAamp", agent_id="agent-1")
    p.receive_text(m.connected())
    p.receive_text(m.start(["inbound"]))
    payload = base64.b64encode(b"\xff" * 160).decode()

    def frame(chunk: int, ts_ms: int) -> str:
        return json.dumps({"event": "media", "sequenceNumber": str(chunk + 1), "streamSid": m.stream_sid,
                           "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(ts_ms), "payload": payload}})

    assert [type(e) for e in p.receive_text(frame(1, 0))] == [AudioIn]
    now[0] = 5.0  # a real 2 s gap after 5 s open: filled
    assert sum(len(e.payload) for e in p.receive_text(frame(2, 2000)) if isinstance(e, AudioIn)) > 8000
    with pytest.raises(ProtocolError) as ei:
        p.receive_text(frame(3, 299_000))
    assert ei.value.close_code == 1008 and "ahead" in ei.value.reason


async def test_pending_approvals_come_back_after_a_restart_with_their_deadline(tmp_path: Path) -> None:
    import time as _time

    from callcue.audit.log import AuditLog
    from callcue.config import REPO_CONFIG_DIR
    from callcue.decide.actions.dispatcher import ActionDispatcher
    from callcue.decide.engine import CallInfo, DecisionEngine
    from callcue.decide.playbooks import PlaybookSet
    from callcue.events import Evidence, Signal
    from callcue.store.db import Database

    shown: list[dict[str, Any]] = []

    async def agent_port(call_id: str, ev: dict[str, Any]) -> None:
        shown.append(ev)

    async def sup_port(ev: dict[str, Any]) -> None:
        pass

    playbooks = PlaybookSet.load(REPO_CONFIG_DIR / "playbooks")
    # only the hint of the refund firing matters here: no billing system is listening
    playbooks = PlaybookSet.from_docs([("refund", {"playbooks": [
        {**p.model_dump(mode="json", exclude={"anomaly"}), "actions": [p.actions[0].model_dump(mode="json")]}
        for p in playbooks if p.id == "refund_approval"]})])
    url = f"sqlite:///{tmp_path}/a.db"
    db = await Database.connect(url)
    audit = AuditLog(db)
    first = DecisionEngine(playbooks, audit, ActionDispatcher(publish_to_agent=agent_port, publish_to_supervisors=sup_port))
    call = CallInfo("c9", "agent-1")
    ev = Evidence("customer", "I want a refund", 1.0, 2.0, 1, 1, True)
    await first.on_signal(call, Signal("c9", "intent", "refund_request", 0.9, "intent", "1", evidence=ev))
    [rec] = await first.on_signal(call, Signal("c9", "entity", "money", 0.95, "entities", "1", evidence=ev, attrs={"amount": 250.0}))
    assert rec.state == "pending_approval"
    deadline = rec.deadline_at
    await first.close()  # the process stops: nothing is cancelled or audited on the way out
    await db.close()

    db = await Database.connect(url)
    audit = AuditLog(db)
    second = DecisionEngine(playbooks, audit, ActionDispatcher(publish_to_agent=agent_port, publish_to_supervisors=sup_port))
    await second.restore()
    back = second.action(rec.action_id)
    assert back.state == "pending_approval" and back.deadline_at == pytest.approx(deadline)
    assert back.deadline_at > _time.time()
    await second.approve(rec.action_id, "supervisor-1")
    assert second.action(rec.action_id).state == "succeeded"
    assert [e["type"] for e in shown] == ["hint"] and "250" in shown[0]["body"]
    assert (await audit.verify()).ok
    await second.close()
    await db.close()


async def test_browsers_carry_their_token_in_a_subprotocol_that_is_never_echoed(tmp_path: Path) -> None:
    from callcue.auth import token_protocol

    s = make_settings(tmp_path)
    async with server(s) as (base, _app):
        async with connect(f"{base}/ws/agent", subprotocols=["callcue.v1.json", token_protocol(AGENT_TOKEN)]) as ws:  # type: ignore[list-item]
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello" and hello["user_id"] == "agent-1"
            assert ws.subprotocol == "callcue.v1.json"
        async with connect(f"{base}/ws/agent", subprotocols=["callcue.v1.json", token_protocol("wrong-token")]) as ws:  # type: ignore[list-item]
            assert (await _closed(ws))[0] == 1008


def test_a_growing_card_number_shows_its_last_four_once_not_a_prefix_s_too() -> None:
    """The partial of a dictated 16-digit card held a Luhn-valid 13-digit prefix: it was shown
    as `**** 2830`, then the final as `**** 0366`, so the agent saw 7 real digits."""
    import re

    from callcue.events import Transcript, Word
    from callcue.privacy.redactor import Redactor
    from callcue.privacy.spoken_numbers import luhn_valid

    prefix = next(c for n in range(10**6) if luhn_valid(c := f"4539{n:09d}"))
    card = next(prefix + f"{k:03d}" for k in range(1000) if luhn_valid(prefix + f"{k:03d}"))
    assert luhn_valid(card[:13]) and luhn_valid(card)

    def tr(digits: str, final: bool, rev: int) -> Transcript:
        text = "my card number is " + " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))
        words = [Word(w, 1.0 + 0.3 * i, 1.25 + 0.3 * i) for i, w in enumerate(text.split())]
        return Transcript("c1", "customer", 1, rev, text, final, 1.0, words[-1].end, words=words)

    red = Redactor("c1")
    partial, _ = red.redact(tr(card[:13], False, 0))
    final, _ = red.redact(tr(card, True, 1))
    assert re.findall(r"\d", partial.text.split("is ", 1)[1]) == []
    assert "".join(re.findall(r"\d", final.text.split("is ", 1)[1])) == card[-4:]
