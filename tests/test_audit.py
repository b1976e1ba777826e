"""The hash-chained audit trail on both backends: integrity, tamper detection, queries, export."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from pg import open_test_db

from callcue.audit.log import (
    AuditEntry,
    AuditLog,
    AuditPayloadError,
    SensitiveDataError,
    entry_hash,
    find_unmasked_digits,
    verify_entries,
)


class FakeClock:
    """Deterministic wall clock so time filters are exact (the log itself is real)."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request, tmp_path):
    d = await open_test_db(request.param, tmp_path)
    yield d
    await d.close()


@pytest.fixture
async def audit(db):
    return await AuditLog(db, clock=FakeClock()).init()


async def _fill(audit: AuditLog, n: int = 10) -> list[AuditEntry]:
    out = []
    for i in range(n):
        out.append(await audit.append(
            "signal" if i % 2 == 0 else "action_proposed", call_id=f"call-{i % 3}", agent_id=f"agent-{i % 2}",
            playbook_id="cancel_save" if i % 2 else None, playbook_version=2 if i % 2 else None,
            action_id=f"act-{i}" if i % 2 else None, payload={"i": i, "text": f"utterance {i}", "conf": 0.5 + i / 100},
        ))  # fmt: skip
    return out


async def test_append_builds_a_valid_chain(audit):
    entries = await _fill(audit, 10)
    assert [e.seq for e in entries] == list(range(1, 11))
    assert entries[0].prev_hash == "0" * 64
    for a, b in zip(entries, entries[1:]):
        assert b.prev_hash == a.hash
    assert entries[3].hash == entry_hash(entries[3].to_dict())
    assert entries[1].playbook_version == "2"
    r = await audit.verify()
    assert (r.ok, r.checked, r.first_bad_seq) == (True, 10, None)
    assert await audit.head() == (10, entries[-1].hash)


async def test_empty_log_verifies(audit):
    r = await audit.verify()
    assert r.ok and r.checked == 0


async def test_edited_payload_is_caught_at_that_seq(audit, db):
    await _fill(audit, 8)
    await db.execute("UPDATE audit_log SET payload = ? WHERE seq = ?", ('{"i":4,"text":"nothing to see"}', 5))
    r = await audit.verify()
    assert not r.ok and r.first_bad_seq == 5 and "edited" in r.reason
    assert r.checked == 4


async def test_edit_with_recomputed_hash_breaks_the_next_link(audit, db):
    entries = await _fill(audit, 6)
    forged = dict(entries[2].to_dict(), actor="mallory")
    forged["hash"] = entry_hash(forged)
    await db.execute("UPDATE audit_log SET actor = ?, hash = ? WHERE seq = 3", ("mallory", forged["hash"]))
    r = await audit.verify()
    assert not r.ok and r.first_bad_seq == 4 and "prev_hash" in r.reason


async def test_deleted_rows_are_detected(audit, db):
    await _fill(audit, 8)
    await db.execute("DELETE FROM audit_log WHERE seq = 3")
    r = await audit.verify()
    assert not r.ok and r.first_bad_seq == 3 and "deleted" in r.reason


async def test_deleted_tail_is_detected_through_the_head(audit, db):
    await _fill(audit, 5)
    await db.execute("DELETE FROM audit_log WHERE seq >= 4")
    r = await audit.verify()
    assert not r.ok and r.first_bad_seq == 4 and "tail" in r.reason


async def test_reordered_rows_are_detected(audit, db):
    await _fill(audit, 6)
    # swap the seq numbers of rows 2 and 3 (via a temporary value to respect the primary key)
    await db.execute("UPDATE audit_log SET seq = -1 WHERE seq = 2")
    await db.execute("UPDATE audit_log SET seq = 2 WHERE seq = 3")
    await db.execute("UPDATE audit_log SET seq = 3 WHERE seq = -1")
    r = await audit.verify()
    assert not r.ok and r.first_bad_seq == 2


async def test_row_inserted_outside_append_is_detected(audit, db):
    entries = await _fill(audit, 3)
    rogue = dict(entries[-1].to_dict(), seq=4, prev_hash=entries[-1].hash, kind="override")
    rogue["hash"] = entry_hash(rogue)
    cols = list(rogue)
    await db.execute(f"INSERT INTO audit_log ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                     [json.dumps(rogue[c]) if c == "payload" else rogue[c] for c in cols])  # fmt: skip
    r = await audit.verify()
    assert not r.ok and r.first_bad_seq == 4 and "outside append" in r.reason


async def test_concurrent_appends_keep_one_chain(db):
    audit = await AuditLog(db).init()
    # a second AuditLog on the same database stands in for another worker (own lock)
    other = AuditLog(db)

    async def one(i: int):
        log = audit if i % 2 else other
        return await log.append("signal", call_id=f"c{i % 7}", payload={"i": i})

    entries = await asyncio.gather(*(one(i) for i in range(200)))
    assert sorted(e.seq for e in entries) == list(range(1, 201))
    assert len({e.hash for e in entries}) == 200
    r = await audit.verify()
    assert r.ok and r.checked == 200
    assert sorted(e.payload["i"] for e in await audit.query(limit=None)) == list(range(200))


async def test_query_filters(audit):
    await _fill(audit, 12)  # ts = 1_800_000_001 .. 1_800_000_012
    assert [e.seq for e in await audit.query(call_id="call-1")] == [2, 5, 8, 11]
    assert [e.seq for e in await audit.query(agent_id="agent-0", kind="signal")] == [1, 3, 5, 7, 9, 11]
    assert [e.seq for e in await audit.query(playbook_id="cancel_save", call_id="call-2")] == [6, 12]
    assert [e.seq for e in await audit.query(kind=["action_proposed"], limit=2)] == [2, 4]
    assert [e.seq for e in await audit.query(since=1_800_000_004, until=1_800_000_007)] == [4, 5, 6]
    assert [e.seq for e in await audit.query(since="2027-01-15T08:00:04Z", limit=2)] == [4, 5]
    assert [e.seq for e in await audit.query(after_seq=10)] == [11, 12]
    assert await audit.query(call_id="nope") == []
    with pytest.raises(ValueError, match="ISO-8601"):
        await audit.query(since="yesterday")


async def test_export_jsonl_round_trip(audit):
    entries = await _fill(audit, 25)
    buf = io.StringIO()
    assert await audit.export_jsonl(buf) == 25
    lines = buf.getvalue().splitlines()
    back = [AuditEntry.from_dict(json.loads(line)) for line in lines]
    assert back == entries
    assert verify_entries(json.loads(line) for line in lines).ok
    # filtered export: per-entry hashes still verify, the chain is (correctly) not contiguous
    buf = io.StringIO()
    assert await audit.export_jsonl(buf, call_id="call-0") == 9
    part = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert verify_entries(part, contiguous=False).ok
    assert not verify_entries(part).ok
    part[2]["payload"]["text"] = "changed after export"
    r = verify_entries(part, contiguous=False)
    assert not r.ok and r.first_bad_seq == part[2]["seq"]


async def test_payload_with_long_digit_run_is_rejected(audit):
    for bad in ({"text": "card 4111111111111111"}, {"evidence": {"text": "4111 1111 1111 1111"}},
                {"list": ["ok", "acct 1234-5678-9012-3456"]}, {"n": 4111111111111111}):  # fmt: skip
        with pytest.raises(SensitiveDataError, match="13\\+ digits"):
            await audit.append("signal", payload=bad)
    # masked numbers, phone numbers, ids with digits and float confidences pass
    await audit.append("signal", payload={"text": "card **** **** **** 1111, call +1 555 123 4567",
                                          "signal_id": "sig_0123456789012345", "conf": 0.12345678901234567})  # fmt: skip
    assert (await audit.head())[0] == 1
    assert find_unmasked_digits({"a": [{"b": "x 12345678901234"}]}) == "payload.a[0].b"


async def test_bad_input_is_refused_and_nothing_written(audit):
    with pytest.raises(ValueError, match="snake_case"):
        await audit.append("Hint Shown", payload={})
    with pytest.raises(TypeError, match="not plain JSON"):
        await audit.append("signal", payload={"x": object()})
    with pytest.raises(TypeError, match="not plain JSON"):
        await audit.append("signal", payload={"x": float("nan")})
    with pytest.raises(AuditPayloadError, match="hint_id"):
        await audit.append("hint_shown", payload={"confidence": 0.5})
    with pytest.raises(AuditPayloadError, match="'action' must be one of"):
        await audit.append("feedback", payload={"hint_id": "h1", "action": "liked"})
    with pytest.raises(AuditPayloadError, match="outcome"):
        await audit.append("disposition", call_id="c1", payload={"outcome": "happy"})
    with pytest.raises(AuditPayloadError, match="call_id"):
        await audit.append("disposition", payload={"outcome": "resolved"})
    assert (await audit.head())[0] == 0
    assert (await audit.verify()).ok


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_cli_verify_export_query(backend, tmp_path):
    """The `callcue audit` commands end to end on a real database, including a tampered one."""
    from pg import fresh_postgres_url
    from typer.testing import CliRunner

    from callcue.audit.cli import audit_app
    from callcue.store.db import Database

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/cli.db"
    else:
        url = fresh_postgres_url()
        if url is None:
            pytest.skip("PostgreSQL unavailable")

    async def fill() -> None:
        d = await Database.connect(url)
        try:
            await _fill(await AuditLog(d, clock=FakeClock()).init(), 9)
        finally:
            await d.close()

    asyncio.run(fill())
    run = CliRunner().invoke
    r = run(audit_app, ["verify", "--db", url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["checked"] == 9

    out = tmp_path / "all.jsonl"
    r = run(audit_app, ["export", "--db", url, "--out", str(out)])
    assert r.exit_code == 0 and len(out.read_text().splitlines()) == 9
    assert run(audit_app, ["verify", "--file", str(out)]).exit_code == 0
    r = run(audit_app, ["export", "--db", url, "--call", "call-1", "--since", "2027-01-15T08:00:03Z"])
    assert [json.loads(line)["seq"] for line in r.stdout.splitlines()] == [5, 8]
    r = run(audit_app, ["query", "--db", url, "--kind", "action_proposed", "--agent", "agent-1", "--limit", "2"])
    assert [json.loads(line)["seq"] for line in r.stdout.splitlines()] == [2, 4]
    r = run(audit_app, ["query", "--db", url, "--brief", "--call", "call-0", "--limit", "1"])
    assert "signal" in r.stdout and "call=call-0" in r.stdout

    async def tamper() -> None:
        d = await Database.connect(url)
        try:
            await d.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 6")
        finally:
            await d.close()

    asyncio.run(tamper())
    r = run(audit_app, ["verify", "--db", url])
    assert r.exit_code == 1 and json.loads(r.stdout)["first_bad_seq"] == 6

    r = run(audit_app, ["verify", "--db", f"sqlite:///{tmp_path}/missing.db"])
    assert r.exit_code == 2 and "not found" in r.output
    r = run(audit_app, ["export", "--db", url, "--since", "last tuesday"])
    assert r.exit_code == 2 and "ISO-8601" in r.output


async def test_two_connections_appending_keep_one_chain(db, tmp_path):
    """Two `Database` objects on the same store stand in for two server processes: the head-row
    lock (BEGIN IMMEDIATE / SELECT ... FOR UPDATE) must keep the chain from forking."""
    from callcue.store.db import Database

    other_db = await Database.connect(db.url)
    try:
        a, b = await AuditLog(db).init(), await AuditLog(other_db).init()
        entries = await asyncio.gather(*((a if i % 2 else b).append("signal", payload={"i": i}) for i in range(120)))
        assert sorted(e.seq for e in entries) == list(range(1, 121))
        r = await b.verify()
        assert r.ok and r.checked == 120
    finally:
        await other_db.close()
