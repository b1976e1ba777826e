"""Roles, the access log and erasure, against an assembled server over HTTP.

Every REST endpoint is called with every role's demo token: allowed or refused as the
permission table says. A customer's calls are erased: their words, numbers and ids are then
in no table of the database and in no file, the API answers 404, the erasure is one audit
entry, and the chain still verifies."""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from callcue.app import create_app
from callcue.auth import PERMISSIONS
from tests.serverkit import make_settings

TOKENS = {"agent": "demo-agent-token", "supervisor": "demo-supervisor-token", "qa": "demo-qa-token",
          "admin": "demo-admin-token", "auditor": "demo-auditor-token"}  # fmt: skip
NATIVE = {"Authorization": "Bearer demo-native-token"}


def _h(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def _thread(iid: str, customer: str, phone: str, words: str) -> dict:
    return {"interaction_id": iid, "channel": "chat", "agent_id": "agent-1",
            "metadata": {"customer_id": customer, "phone": phone},
            "turns": [{"role": "agent", "text": "Thank you for contacting Northwind Bank, how can I help?"},
                      {"role": "customer", "text": f"My order {words} never arrived and I want a refund"},
                      {"role": "agent", "text": "I am sorry, I have raised a dispute for you."}]}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def client(tmp_path: Path, request: pytest.FixtureRequest):
    """A server on SQLite, and on PostgreSQL where one can be started here."""
    from tests.pg import backend_url

    # the matrix asks without a token on purpose, more often than the per-address limit allows
    sections: dict = {"recording": {"dir": str(tmp_path / "recordings")}, "auth": {"max_failures_per_minute": 10_000}}
    if url := backend_url(request.param):
        sections["storage"] = {"url": url}
    with TestClient(create_app(make_settings(tmp_path, **sections))) as c:
        yield c


#: every way in that a person uses, by (method, route) -> the permission it needs (auth.PERMISSIONS);
#: "signed_in": any role. The test fails when the app has a route this table does not name.
REST: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/calls/{call_id}"): "read_calls",
    ("DELETE", "/api/v1/calls/{call_id}"): "erase",
    ("POST", "/api/v1/erasure"): "erase",
    ("POST", "/api/v1/calls/{call_id}/hold"): "erase",
    ("DELETE", "/api/v1/calls/{call_id}/hold"): "erase",
    ("GET", "/api/v1/calls/{call_id}/recording"): "read_recordings",
    ("GET", "/api/v1/kb/search"): "signed_in",
    ("GET", "/api/v1/access-log"): "access_log",
    ("GET", "/api/v1/actions"): "call_control",
    ("GET", "/api/v1/actions/{action_id}"): "call_control",
    **{("POST", f"/api/v1/actions/{{action_id}}/{v}"): "call_control" for v in ("approve", "reject", "cancel", "rollback", "override")},
    ("POST", "/api/v1/calls/{call_id}/override"): "call_control",
    ("POST", "/api/v1/calls/{call_id}/disposition"): "call_control",
    ("GET", "/api/v1/playbooks"): "call_control",
    ("POST", "/api/v1/playbooks/{playbook_id}/pause"): "call_control",
    ("POST", "/api/v1/playbooks/{playbook_id}/resume"): "call_control",
    ("GET", "/api/v1/audit"): "audit_read",
    ("GET", "/api/v1/audit/export"): "audit_read",
    ("GET", "/api/v1/kpis"): "analytics",
    ("POST", "/api/v1/playbooks/{playbook_id}/calibrate"): "learning",
    ("GET", "/api/v1/playbooks/{playbook_id}/thresholds"): "learning",
    ("POST", "/api/v1/playbooks/{playbook_id}/thresholds/rollback"): "learning",
    ("POST", "/api/v1/thresholds/{version}/shadow"): "learning",
    ("GET", "/api/v1/thresholds/{version}/compare"): "learning",
    ("POST", "/api/v1/thresholds/{version}/promote"): "learning",
    ("GET", "/api/v1/intent-datasets"): "learning",
    ("POST", "/api/v1/intent-datasets"): "learning",
    ("POST", "/api/v1/intent-datasets/rollback"): "learning",
    ("GET", "/api/v1/intent-datasets/{version}"): "learning",
    ("GET", "/api/v1/intent-datasets/{version}/compare"): "learning",
    ("POST", "/api/v1/intent-datasets/{version}/promote"): "learning",
    ("GET", "/api/v1/calls/{call_id}/scorecard"): "qa_review",
    ("POST", "/api/v1/calls/{call_id}/scorecard/review"): "qa_review",
    ("GET", "/api/v1/qa/agreement"): "qa_review",
    ("GET", "/api/v1/qa/compare"): "qa_review",
    **{("GET", f"/api/v1/analytics/{r}"): "analytics" for r in ("drivers", "friction", "kpis", "topics")},
    ("POST", "/api/v1/analytics/topics/intent"): "analytics",
    ("GET", "/api/v1/kb/versions"): "kb_read",
    ("GET", "/api/v1/kb/diff"): "kb_read",
    ("GET", "/api/v1/kb/report"): "kb_read",
    ("POST", "/api/v1/kb/versions/{version}/promote"): "kb_manage",
    ("POST", "/api/v1/kb/rollback"): "kb_manage",
    ("GET", "/api/v1/flows"): "call_control",
    ("POST", "/api/v1/flows/{flow_id}/pause"): "call_control",
    ("POST", "/api/v1/flows/{flow_id}/resume"): "call_control",
    ("GET", "/api/v1/flows/{flow_id}/versions"): "flows_manage",
    ("POST", "/api/v1/flows/{flow_id}/versions/{version}/promote"): "flows_manage",
    ("POST", "/api/v1/flows/{flow_id}/rollback"): "flows_manage",
    ("POST", "/api/v1/bot-actions/{action_id}/approve"): "call_control",
    ("POST", "/api/v1/bot-actions/{action_id}/reject"): "call_control",
}  # fmt: skip
#: ways in for machines (their own secrets, tested with each platform) and pages anyone may load
#: (each page asks for a token before it shows anything)
MACHINES = {("POST", "/api/v1/interactions"), ("POST", "/demo-backend/cards/block"), ("POST", "/demo-backend/payments/status"),
            ("GET", "/metrics"), *(("WS", f"/ws/{p}") for p in ("twilio", "native", "audiofork", "audiohook", "vonage"))}  # fmt: skip
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/"), ("MOUNT", "/agent"), ("MOUNT", "/webrtc")}
SOCKET = {("WS", "/ws/agent")}  # its commands: SOCKET_OPS below
#: /ws/agent: every supervisor operation's permission (the same as its REST route's)
SOCKET_OPS: dict[str, str] = {
    **{op: "call_control" for op in ("list_actions", "get_action", "approve", "reject", "cancel", "rollback", "override",
                                     "disposition", "list_playbooks", "pause_playbook", "resume_playbook", "list_flows", "pause_flow",
                                     "resume_flow", "bot_approve", "bot_reject")},
    "audit_query": "audit_read", "kpis": "analytics",
    **{op: "learning" for op in ("calibrate", "list_thresholds", "shadow_threshold", "compare_threshold", "promote_threshold",
                                 "rollback_threshold", "list_intent_datasets", "get_intent_dataset", "build_intent_dataset",
                                 "compare_intent_datasets", "promote_intent_dataset", "rollback_intent_dataset")},
    **{op: "qa_review" for op in ("get_scorecard", "qa_review", "qa_agreement", "qa_compare")},
    **{op: "analytics" for op in ("analytics_drivers", "analytics_friction", "analytics_kpis", "analytics_topics",
                                  "topic_to_intent")},
    "kb_versions": "kb_read", "kb_diff": "kb_read", "kb_report": "kb_read", "kb_promote": "kb_manage", "kb_rollback": "kb_manage",
    "flow_versions": "flows_manage", "promote_flow": "flows_manage", "rollback_flow": "flows_manage",
}  # fmt: skip


#: who holds each permission, as the roles are defined (docs/privacy.md): qa reads and reviews
#: but controls nothing; an auditor reads the trail and the access log, no words or audio
ROLES_OF: dict[str, set[str]] = {
    "read_calls": {"agent", "supervisor", "qa", "admin"}, "read_transcripts": {"agent", "supervisor", "qa", "admin"},
    "read_recordings": {"agent", "supervisor", "qa", "admin"}, "read_unredacted": set(), "call_control": {"supervisor"},
    "supervisor_feed": {"supervisor"}, "qa_review": {"supervisor", "qa"}, "analytics": {"supervisor", "qa", "admin"},
    "kb_read": {"supervisor", "qa", "admin"}, "kb_manage": {"supervisor", "admin"}, "learning": {"supervisor", "admin"}, "flows_manage": {"supervisor", "admin"},
    "audit_read": {"supervisor", "auditor", "admin"}, "access_log": {"auditor", "admin"}, "erase": {"admin"},
}  # fmt: skip


def test_the_roles_hold_the_permissions_they_are_documented_with() -> None:
    assert {k: set(v) for k, v in PERMISSIONS.items()} == ROLES_OF


def _app_routes(app) -> set[tuple[str, str]]:
    from starlette.routing import Mount, Route, WebSocketRoute

    out = set()
    for r in app.routes:
        if isinstance(r, Route):
            out |= {(m, r.path) for m in (r.methods or set()) - {"HEAD"}}
        elif isinstance(r, WebSocketRoute):
            out.add(("WS", r.path))
        elif isinstance(r, Mount):
            out.add(("MOUNT", r.path))
    return out


def test_every_endpoint_and_socket_command_against_every_role(client: TestClient) -> None:
    r = client.post("/api/v1/interactions", json=_thread("matrix-1", "c-1", "+15550100001", "4411"), headers=NATIVE)
    assert r.status_code == 200, r.text
    call = r.json()["call_id"]
    rt = client.app.state.runtime.get()
    w = rt.recordings.writer(call, 8000, ["customer", "agent"])
    w.write(np.zeros((800, 2), dtype=np.int16))
    assert _app_routes(client.app) == set(REST) | MACHINES | PUBLIC | SOCKET, "a route without a row in the permission matrix"
    ids = {"call_id": call, "action_id": "act-none", "playbook_id": "no_such_playbook", "version": "999999",
           "flow_id": "no_such_flow"}  # fmt: skip
    for (method, route), perm in REST.items():
        path = route.format(**{**ids, "call_id": "no-such-call" if method == "DELETE" and route.endswith("}") else call})
        if route.endswith("/search"):
            path += "?q=lost+card"
        for role in TOKENS:
            resp = client.request(method, path, headers=_h(role), json={"reason": "matrix"} if method != "GET" else None)
            may = perm == "signed_in" or role in PERMISSIONS[perm] or (perm.startswith("read_") and role == "agent")
            got = resp.status_code not in (401, 403)
            assert got == may, f"{method} {path} as {role}: {resp.status_code} {resp.text[:200]}"
        assert client.request(method, path).status_code == 401, f"{method} {path} without a token"
    # machines: nothing without their own secret
    assert client.post("/api/v1/interactions", json=_thread("m-2", "c", "+1555", "1")).status_code == 401
    assert client.post("/api/v1/interactions", json=_thread("m-3", "c", "+1555", "1"), headers=_h("admin")).status_code == 401
    assert client.post("/demo-backend/cards/block", json={}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # the live socket: every operation, as every role
    assert set(SOCKET_OPS) == set(rt.supervisor.operations), "a socket command without a row in the matrix"
    for role in TOKENS:
        with client.websocket_connect("/ws/agent", subprotocols=["callcue.v1.json"], headers=_h(role)) as ws:
            assert ws.receive_json()["type"] == "hello"
            for n, (op, perm) in enumerate(sorted(SOCKET_OPS.items())):
                ws.send_json({"type": op, "id": n, "playbook_id": "no_such_playbook", "flow_id": "no_such_flow",
                              "action_id": "act-none", "call_id": "no-such-call", "version": 999999})  # fmt: skip
                reply = _reply(ws, n)
                refused = reply.get("code") in ("forbidden", "unknown_type")
                assert refused != (role in PERMISSIONS[perm]), f"{op} as {role}: {reply}"
            # the call-scoped messages: whoever may read the call
            for n, msg in enumerate(({"type": "subscribe", "call_id": call},
                                     {"type": "reply_feedback", "call_id": call, "reply_id": "r1", "action": "copied"}), 1000):
                ws.send_json({**msg, "id": n})
                reply = _reply(ws, n)
                assert (reply.get("code") == "forbidden") == (role == "auditor"), f"{msg['type']} as {role}: {reply}"
            ws.send_json({"type": "ping", "id": 2000})
            assert _reply(ws, 2000)["type"] == "pong"
    # an auditor reads the audit trail without the words in it
    with client.websocket_connect("/ws/agent", subprotocols=["callcue.v1.json"], headers=_h("auditor")) as ws:
        ws.receive_json()
        ws.send_json({"type": "audit_query", "id": 1, "limit": 5})
        reply = _reply(ws, 1)
        assert reply["type"] == "audit_query_result" and reply["entries"]
        assert all(e["payload"].get("text") in (None, "[withheld]") for e in reply["entries"])


def _reply(ws, rid: int) -> dict:
    """The reply to request `rid` (events of subscribed calls may come in between)."""
    while True:
        m = ws.receive_json()
        if m.get("id") == rid:
            return m


def test_reads_are_in_the_access_log_for_auditors(client: TestClient) -> None:
    r = client.post("/api/v1/interactions", json=_thread("log-1", "c-2", "+15550100002", "5522"), headers=NATIVE)
    call = r.json()["call_id"]
    assert client.get(f"/api/v1/calls/{call}", headers=_h("supervisor")).status_code == 200
    assert client.get("/api/v1/kb/search?q=lost%20card", headers=_h("agent")).status_code == 200
    log = client.get("/api/v1/access-log", headers=_h("auditor")).json()["entries"]
    seen = {(e["actor"], e["payload"]["what"], e["call_id"]) for e in log}
    assert ("supervisor-1", "call_record", call) in seen and ("agent-1", "kb_search", None) in seen
    assert all(e["payload"]["from"] for e in log if e["payload"]["what"] == "call_record")
    assert client.get("/api/v1/access-log", headers=_h("supervisor")).status_code == 403


def _rows(url: str | None, tmp_path: Path) -> dict[str, list[str]]:
    """Every row of every table, as JSON text, per table (SQLite file or PostgreSQL schema)."""
    if url is None:
        db = sqlite3.connect(str(tmp_path / "callcue.db"))
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
        return {t: [json.dumps(r, default=str) for r in db.execute(f"SELECT * FROM {t}").fetchall()] for t in tables}
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()]
        return {t: [json.dumps(r, default=str) for r in conn.execute(f'SELECT * FROM "{t}"').fetchall()] for t in tables}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_erasing_a_customer_leaves_nothing_but_the_erasure(tmp_path: Path, backend: str) -> None:
    from tests.pg import backend_url

    url = backend_url(backend)
    sections: dict = {"recording": {"dir": str(tmp_path / "recordings")}}
    if url:
        sections["storage"] = {"url": url}
    with TestClient(create_app(make_settings(tmp_path, **sections))) as client:
        _erase_a_customer(client, tmp_path, url)


def _erase_a_customer(client: TestClient, tmp_path: Path, url: str | None) -> None:
    keep = client.post("/api/v1/interactions", json=_thread("keep-1", "c-other", "+15550109999", "7788"), headers=NATIVE)
    gone = [client.post("/api/v1/interactions", json=_thread(f"gone-{i}", "cust-zebra", "+1 (555) 010-0123",
                                                             f"zebraquux{i}"), headers=NATIVE).json()["call_id"]
            for i in range(2)]  # fmt: skip
    for call in gone:
        assert client.get(f"/api/v1/calls/{call}", headers=_h("supervisor")).status_code == 200
    body = {"customer": "555-010-0123", "reason": "customer asked to be forgotten (ticket 1)"}
    assert client.post("/api/v1/erasure", json=body, headers=_h("supervisor")).status_code == 403
    r = client.post("/api/v1/erasure", json=body, headers=_h("admin"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["erased_calls"] == 2 and out["rows"]["transcripts"] >= 6 and out["audit_payloads_erased"] > 0
    for call in gone:
        assert client.get(f"/api/v1/calls/{call}", headers=_h("supervisor")).status_code == 404
    assert client.get(f"/api/v1/calls/{keep.json()['call_id']}", headers=_h("supervisor")).status_code == 200
    # nowhere in the database or in any file beside it
    for table, rows in _rows(url, tmp_path).items():
        for blob in rows:
            for needle in ("zebraquux", "cust-zebra", "0100123", *gone):
                assert needle not in blob or (table == "audit_log" and needle in gone), f"{needle} in {table}: {blob[:300]}"
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.suffix not in (".db", ".db-wal", ".db-shm"):
            raw = f.read_bytes()
            assert b"zebraquux" not in raw and b"cust-zebra" not in raw, f
    erasures = client.get("/api/v1/audit?kind=erasure", headers=_h("auditor")).json()["entries"]
    assert len(erasures) == 1 and erasures[0]["actor"] == "admin-1" and erasures[0]["payload"]["calls"] == 2
    assert "signature" in erasures[0]["payload"]
    # the chain still verifies with the erased payloads in it
    from callcue.audit.entries import verify_entries

    rows = client.get("/api/v1/audit?limit=10000", headers=_h("supervisor")).json()["entries"]
    assert any(e["payload"].get("__erased__") for e in rows)
    assert verify_entries(rows).ok
    # erasing a call that is not there
    assert client.request("DELETE", "/api/v1/calls/nope", headers=_h("admin"), json={"reason": "x"}).status_code == 404
    r = client.request("DELETE", f"/api/v1/calls/{keep.json()['call_id']}", headers=_h("admin"), json={})
    assert r.status_code == 400 and "reason" in r.text


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_retention_sweeps_what_is_due_and_keeps_held_calls(tmp_path: Path, backend: str) -> None:
    from tests.pg import backend_url

    sections: dict = {"retention": {"transcripts_days": 1e-9, "qa_days": 0, "audio_days": 0, "analytics_days": 0,
                                    "topics_days": 0, "audit_payload_days": 1e-9, "sweep_every_s": 3600}}  # fmt: skip
    if url := backend_url(backend):
        sections["storage"] = {"url": url}
    settings = make_settings(tmp_path, **sections)
    with TestClient(create_app(settings)) as client:
        calls = [client.post("/api/v1/interactions", json=_thread(f"ret-{i}", f"c-{i}", f"+1555010{i:04d}", f"77{i}"),
                             headers=NATIVE).json()["call_id"] for i in range(2)]  # fmt: skip
        assert client.post(f"/api/v1/calls/{calls[0]}/hold", json={"reason": "dispute 88"}, headers=_h("qa")).status_code == 403
        assert client.post(f"/api/v1/calls/{calls[0]}/hold", json={"reason": "dispute 88"}, headers=_h("admin")).status_code == 200
        rt = client.app.state.runtime.get()

        def count(c: str) -> int:
            return int(client.portal.call(rt.db.fetchval, "SELECT COUNT(*) FROM transcripts WHERE call_id = ?", (c,)))

        client.portal.call(rt.store.flush)
        before = {c: count(c) for c in calls}
        assert all(before.values())
        out = client.portal.call(rt.retention.sweep)
        assert out["transcripts"] > before[calls[1]]  # its transcripts, signals, hints and events
        after = {c: count(c) for c in calls}
        assert after == {calls[0]: before[calls[0]], calls[1]: 0}  # the held call kept everything
        # the audit trail's rule: the entries stay, the swept call's payloads are gone, the chain verifies
        assert out["audit_payloads"] > 0
        trail = client.get("/api/v1/audit?limit=10000", headers=_h("supervisor")).json()["entries"]
        mine = {c: [e for e in trail if e["call_id"] == c] for c in calls}
        assert mine[calls[1]] and all(e["payload"].get("__erased__") for e in mine[calls[1]])
        assert not any(e["payload"].get("__erased__") for e in mine[calls[0]])
        from callcue.audit.entries import verify_entries

        assert verify_entries(trail).ok
        assert client.portal.call(rt.retention.sweep).get("audit_payloads", 0) == 0  # nothing twice
        r = client.request("DELETE", f"/api/v1/calls/{calls[0]}", headers=_h("admin"), json={"reason": "asked"})
        assert r.status_code == 409 and "legal hold" in r.text
        assert client.request("DELETE", f"/api/v1/calls/{calls[0]}/hold", headers=_h("admin")).json()["released"] is True
        assert client.request("DELETE", f"/api/v1/calls/{calls[0]}", headers=_h("admin"), json={"reason": "asked"}).status_code == 200



def test_oidc_jwt_bearer_tokens(tmp_path: Path) -> None:
    import time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    settings = make_settings(tmp_path, auth={"oidc": {"enabled": True, "issuer": "https://idp.example", "audience": "callcue",
                                                      "jwks_file": str(tmp_path / "jwks.json")}})  # fmt: skip

    def token(**claims: object) -> str:
        now = int(time.time())
        body = {"iss": "https://idp.example", "aud": "callcue", "sub": "qa-lead-7", "roles": ["qa"], "iat": now,
                "exp": now + 300, **claims}  # fmt: skip
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})

    with TestClient(create_app(settings)) as client:
        ok = client.get("/api/v1/qa/agreement", headers={"Authorization": f"Bearer {token()}"})
        assert ok.status_code == 200, ok.text
        assert client.get("/api/v1/actions", headers={"Authorization": f"Bearer {token()}"}).status_code == 403  # qa: no control
        for bad in (token(exp=int(time.time()) - 600), token(aud="other"), token(iss="https://evil"), token(roles=["boss"]),
                    token()[:-4] + "AAAA"):
            assert client.get("/api/v1/qa/agreement", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
        assert client.get("/api/v1/actions", headers=_h("supervisor")).status_code == 200  # static tokens stay
        with client.websocket_connect("/ws/agent", subprotocols=["callcue.v1.json"],
                                      headers={"Authorization": f"Bearer {token(sub='sup-9', roles='supervisor')}"}) as ws:
            hello = ws.receive_json()
            assert (hello["user_id"], hello["role"]) == ("sup-9", "supervisor")


async def test_https_and_wss_when_a_certificate_is_configured(tmp_path: Path) -> None:
    import datetime
    import ssl

    import httpx
    import websockets
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from tests.serverkit import server

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))  # fmt: skip
    settings = make_settings(tmp_path, server={"tls_cert": str(tmp_path / "cert.pem"), "tls_key": str(tmp_path / "key.pem")})
    ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    async with server(settings) as (base, _app):
        assert base.startswith("wss://")
        async with httpx.AsyncClient(verify=ctx) as http:
            r = await http.get(base.replace("wss://", "https://") + "/healthz")
            assert r.status_code == 200
        async with websockets.connect(base + "/ws/agent", ssl=ctx, subprotocols=["callcue.v1.json"],
                                      additional_headers={"Authorization": "Bearer demo-agent-token"}) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):  # plain HTTP is not served
            async with httpx.AsyncClient() as plain:
                await plain.get(base.replace("wss://", "http://") + "/healthz")


def test_recording_playback_with_ranges_for_allowed_roles(client: TestClient) -> None:
    import numpy as np

    call = client.post("/api/v1/interactions", json=_thread("play-1", "c-9", "+15550100009", "9911"), headers=NATIVE).json()["call_id"]
    rt = client.app.state.runtime.get()
    w = rt.recordings.writer(call, 8000, ["customer", "agent"])  # as the recorder writes one
    w.write((np.random.default_rng(1).normal(0, 3000, (16000, 2))).astype(np.int16))
    whole = client.get(f"/api/v1/calls/{call}/recording", headers=_h("qa"))
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/flac" and whole.content[:4] == b"fLaC"
    part = client.get(f"/api/v1/calls/{call}/recording", headers={**_h("agent"), "Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == whole.content[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(whole.content)}"
    assert client.get(f"/api/v1/calls/{call}/recording", headers={**_h("qa"), "Range": "bytes=999999999-"}).status_code == 416
    assert client.get(f"/api/v1/calls/{call}/recording", headers=_h("auditor")).status_code == 403
    assert client.get("/api/v1/calls/nope/recording", headers=_h("qa")).status_code == 404
    log = client.get("/api/v1/access-log", headers=_h("auditor")).json()["entries"]
    plays = [e for e in log if e["payload"]["what"] == "recording"]
    assert {e["actor"] for e in plays} == {"qa-1", "agent-1"} and any(e["payload"]["range"] == [10, 99] for e in plays)



@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_call_text_is_sealed_at_rest(tmp_path: Path, backend: str) -> None:
    """What the customer said and who they are is in no row or file in the clear; the API
    reads it back; the audit chain verifies without the keys; erasure shreds the call's key,
    so a copy of its text taken before no longer opens; rotation re-wraps the data keys and
    the server then runs on the new key alone."""
    import asyncio

    from callcue.audit.log import AuditLog
    from callcue.privacy.envelope import KeyRing
    from callcue.privacy.vault import ERASED_TEXT, PREFIX
    from callcue.store.db import Database
    from tests.pg import backend_url

    url = backend_url(backend)
    sections: dict = {"recording": {"dir": str(tmp_path / "recordings")}}
    if url:
        sections["storage"] = {"url": url}
    settings = make_settings(tmp_path, **sections)
    db_url = settings.storage.url
    with TestClient(create_app(settings)) as client:
        call = client.post("/api/v1/interactions", json=_thread("seal-1", "cust-okapi", "+15550100777", "quokkaflux"),
                           headers=NATIVE).json()["call_id"]  # fmt: skip
        record = client.get(f"/api/v1/calls/{call}", headers=_h("supervisor")).json()
        assert any("quokkaflux" in t["text"] for t in record["transcripts"])
        entries = client.get(f"/api/v1/audit?call_id={call}", headers=_h("supervisor")).json()["entries"]
        assert entries and not any("__sealed__" in e["payload"] for e in entries)  # opened for the reader
        rt = client.app.state.runtime.get()
        client.portal.call(rt.store.flush)
        rows = _rows(url, tmp_path)
        sealed = [v for t in ("transcripts", "call_events", "calls", "topic_utterances") for blob in rows.get(t, [])
                  for v in json.loads(blob) if isinstance(v, str) and v.startswith(PREFIX)]  # fmt: skip
        assert len(sealed) >= 5
        for table, blobs in rows.items():
            for blob in blobs:
                for needle in ("quokkaflux", "cust-okapi", "0100777", "never arrived"):
                    assert needle not in blob, f"{needle} in the clear in {table}: {blob[:300]}"
        if url is None:
            for f in tmp_path.rglob("callcue.db*"):  # the file itself, its WAL and shared memory
                raw = f.read_bytes()
                assert b"quokkaflux" not in raw and b"never arrived" not in raw, f

        # the call is indexed by its customer's keyed forms: an erasure finds it without reading every call
        index = client.portal.call(rt.db.fetchval, "SELECT customer_index FROM calls WHERE call_id = ?", (call,))
        assert index and index.startswith("bx1:") and len(index.split()) >= 3
        assert client.portal.call(rt.eraser.calls_of_customer, "555 010 0777") == [call]
        assert client.portal.call(rt.eraser.calls_of_customer, "CUST-OKAPI") == [call]
        # erasure: the call's data key goes with its rows
        gone = client.post("/api/v1/interactions", json=_thread("seal-2", "cust-tapir", "+15550100778", "wombatique"),
                           headers=NATIVE).json()["call_id"]  # fmt: skip
        client.portal.call(rt.store.flush)
        copy = client.portal.call(rt.db.fetchone, "SELECT text FROM transcripts WHERE call_id = ?", (gone,))
        assert copy is not None and "wombatique" not in copy["text"]
        raw_copy = next(v for blob in _rows(url, tmp_path)["transcripts"] for v in json.loads(blob)
                        if isinstance(v, str) and v.startswith(PREFIX))  # fmt: skip
        r = client.request("DELETE", f"/api/v1/calls/{gone}", headers=_h("admin"), json={"reason": "asked to be forgotten"})
        assert r.status_code == 200 and r.json()["data_keys_shredded"] == 1
        assert client.portal.call(rt.db.vault.open, rt.db, raw_copy) in (ERASED_TEXT, *(  # the kept call still opens
            t["text"] for t in record["transcripts"]))  # fmt: skip
        leftovers = [v for blob in _rows(url, tmp_path)["transcripts"] for v in json.loads(blob)
                     if isinstance(v, str) and v.startswith(PREFIX)]  # fmt: skip
        assert leftovers and all(client.portal.call(rt.db.vault.open, rt.db, v) != ERASED_TEXT for v in leftovers)

    key_file = settings.encryption.key_file or str(tmp_path / "keys" / "data.key")
    old = KeyRing.load(Path(key_file), None)
    rotated = tmp_path / "rotated.key"

    async def offline() -> tuple[bool, str]:
        db = await Database.connect(db_url)
        try:
            # an auditor's copy without the keys: the chain verifies by the digests it keeps
            verified = (await AuditLog(db).verify()).ok
            shut = (await db.fetchone("SELECT payload FROM audit_log WHERE call_id = ? LIMIT 1", (call,)))["payload"]
            return verified, shut
        finally:
            await db.close()

    verified, shut = asyncio.run(offline())
    assert verified and shut.startswith('{"__sealed__"') and "quokkaflux" not in shut
    # rotation: a new key first, the old one after it until `callcue rewrap-keys` has run
    from typer.testing import CliRunner

    from callcue.cli import app

    new_key = base64.b64encode(secrets.token_bytes(32)).decode()
    both = tmp_path / "both.key"
    both.write_text(new_key + "\n" + "\n".join(base64.b64encode(k).decode() for k in old.keys.values()) + "\n")
    cfg = tmp_path / "rotate.toml"
    cfg.write_text(f'[storage]\nurl = "{db_url}"\n[encryption]\nkey_file = "{both}"\n'
                   f'[recording]\ndir = "{tmp_path / "recordings"}"\n')  # fmt: skip
    out = CliRunner().invoke(app, ["rewrap-keys", "--config", str(cfg)])
    assert out.exit_code == 0 and "re-wrapped" in out.output, out.output
    rotated.write_text(new_key + "\n")
    with TestClient(create_app(make_settings(tmp_path, **sections, encryption={"key_file": str(rotated)}))) as client:
        record = client.get(f"/api/v1/calls/{call}", headers=_h("supervisor")).json()
        assert any("quokkaflux" in t["text"] for t in record["transcripts"])
        assert client.get(f"/api/v1/calls/{gone}", headers=_h("supervisor")).status_code == 404


@pytest.mark.slow
def test_erasure_in_cluster_mode_clears_redis_and_every_node(tmp_path: Path, backends: tuple[str, str]) -> None:
    """Two nodes on one PostgreSQL and one Redis. The call was recorded on node A; a command
    naming it waits in the stream of a node that died; its lease outlived that node. Erased
    through node B: the rows go, node A drops its recording file and its caches, and nothing
    in Redis names the call or holds the customer's words."""
    import numpy as np
    import redis

    from callcue.cluster import envelope as env
    from tests.serverkit import key_file

    pg, rd = backends  # a fresh PostgreSQL schema and Redis database, or skipped
    key = key_file(tmp_path / "cluster.key")  # every node holds the same keys

    def node(name: str) -> TestClient:
        d = tmp_path / name
        d.mkdir()
        return TestClient(create_app(make_settings(d, storage={"url": pg}, encryption={"key_file": str(key)},
                                                   recording={"dir": str(d / "recordings")},
                                                   cluster={"redis_url": rd, "node_id": name, "heartbeat_s": 0.5})))  # fmt: skip

    r = redis.Redis.from_url(rd)
    with node("node-a") as a, node("node-b") as b:
        call = a.post("/api/v1/interactions", json=_thread("cl-1", "cust-lynx", "+15550100555", "zebraquux"),
                      headers=NATIVE).json()["call_id"]  # fmt: skip
        rt_a = a.app.state.runtime.get()
        w = rt_a.recordings.writer(call, 8000, ["customer", "agent"])
        w.write(np.zeros((8000, 2), dtype=np.int16))
        assert rt_a.recordings.exists(call)
        # what a node that died mid-call leaves: its lease, and a command for it nobody read
        r.set(env.owner_key(call), b"node-gone", px=60_000)
        stale = env.ControlRequest("r1", "node-a", {"user_id": "supervisor-1", "role": "supervisor"},
                                   {"type": "whisper", "call_id": call, "text": "customer zebraquux is upset"}, "supervisor")  # fmt: skip
        r.xadd(env.control_stream("node-gone"), {b"m": env.encode_request(stale)})
        other = env.ControlRequest("r2", "node-a", {"user_id": "supervisor-1", "role": "supervisor"},
                                   {"type": "whisper", "call_id": "chat-unrelated", "text": "another call"}, "supervisor")  # fmt: skip
        r.xadd(env.control_stream("node-gone"), {b"m": env.encode_request(other)})

        resp = b.request("DELETE", f"/api/v1/calls/{call}", headers=_h("admin"), json={"reason": "asked to be forgotten"})
        assert resp.status_code == 200, resp.text
        for c in (a, b):
            assert c.get(f"/api/v1/calls/{call}", headers=_h("supervisor")).status_code == 404
        deadline = time.monotonic() + 10
        while rt_a.recordings.exists(call) and time.monotonic() < deadline:  # the broadcast reaches node A
            time.sleep(0.05)
        assert not rt_a.recordings.exists(call)
        needles = (call.encode(), b"zebraquux", b"cust-lynx", b"0100555")
        for k in r.scan_iter(count=100):
            assert not any(n in k for n in needles), k
            t = r.type(k)
            values = ([v for _, f in r.xrange(k) for v in f.values()] if t == b"stream" else
                      [r.get(k) or b""] if t == b"string" else [])  # fmt: skip
            for v in values:
                assert not any(n in v for n in needles), (k, v[:200])
        assert r.xlen(env.control_stream("node-gone")) == 1  # the other call's command is still queued
        assert _rows_mention(pg, (call, "zebraquux", "cust-lynx")) == []


def _rows_mention(url: str, needles: tuple[str, ...]) -> list[str]:
    import psycopg

    hits = []
    with psycopg.connect(url) as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()]
        for t in tables:
            for row in conn.execute(f'SELECT * FROM "{t}"').fetchall():
                blob = json.dumps(row, default=str)
                hits += [f"{t}: {n}" for n in needles if n in blob and not (t == "audit_log" and n not in ("zebraquux", "cust-lynx"))]
    return hits


def test_the_unredacted_copy_only_when_kept_and_only_for_a_grant(tmp_path: Path) -> None:
    from callcue.config import TokenConfig

    s = make_settings(tmp_path, recording={"keep_unredacted": True, "dir": str(tmp_path / "recordings")})
    s.auth.tokens.append(TokenConfig(token="fraud-desk-token", user_id="fraud-1", role="qa", grants=["read_unredacted"]))
    with TestClient(create_app(s)) as client:
        call = client.post("/api/v1/interactions", json=_thread("raw-1", "c-raw", "+15550100888", "3311"),
                           headers=NATIVE).json()["call_id"]  # fmt: skip
        rt = client.app.state.runtime.get()
        for copy in ("redacted", "unredacted"):
            rt.recordings.writer(call, 8000, ["customer", "agent"], copy).write(np.zeros((800, 2), dtype=np.int16))
        url = f"/api/v1/calls/{call}/recording?copy=unredacted"
        assert client.get(url, headers={"Authorization": "Bearer fraud-desk-token"}).status_code == 200
        for role in ("qa", "supervisor", "admin", "auditor"):
            assert client.get(url, headers=_h(role)).status_code == 403, role
        assert client.get(f"/api/v1/calls/{call}/recording?copy=raw", headers=_h("qa")).status_code == 400
        log = client.get("/api/v1/access-log", headers=_h("auditor")).json()["entries"]
        assert any(e["actor"] == "fraud-1" and e["payload"].get("copy") == "unredacted" for e in log)
        assert client.request("DELETE", f"/api/v1/calls/{call}", headers=_h("admin"), json={"reason": "x"}).status_code == 200
        assert not rt.recordings.exists(call) and not rt.recordings.exists(call, "unredacted")
