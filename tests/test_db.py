"""The database facade on both backends: translation, transactions, migrations, concurrency."""

from __future__ import annotations

import asyncio
import sqlite3

import psycopg
import pytest
from pg import open_test_db

from callcue.store.db import Database, DatabaseError, ddl, to_pyformat


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request, tmp_path):
    d = await open_test_db(request.param, tmp_path)
    yield d
    await d.close()


def test_placeholder_translation_leaves_literals_alone():
    assert to_pyformat("SELECT * FROM t WHERE a = ? AND b = ?") == "SELECT * FROM t WHERE a = %s AND b = %s"
    assert to_pyformat("SELECT '?', 'it''s ?', \"q?\" FROM t WHERE x LIKE '5%' AND y = ?") == (
        "SELECT '?', 'it''s ?', \"q?\" FROM t WHERE x LIKE '5%%' AND y = %s"
    )
    assert to_pyformat("SELECT 1 -- why? 50%\n, ?") == "SELECT 1 -- why? 50%%\n, %s"
    assert to_pyformat("SELECT a % 2 FROM t") == "SELECT a %% 2 FROM t"


def test_ddl_tokens():
    sql = "CREATE TABLE t (id {pk}, ts {float}, n {bigint}, j {json})"
    assert ddl(sql, "sqlite") == "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, n INTEGER, j TEXT)"
    assert ddl(sql, "postgresql") == "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION, n BIGINT, j TEXT)"


async def test_bad_urls_are_rejected_precisely():
    with pytest.raises(DatabaseError, match="unsupported database URL scheme 'mysql'"):
        await Database.connect("mysql://x/y")
    with pytest.raises(DatabaseError, match="no file path"):
        await Database.connect("sqlite:///")


async def test_sqlite_pragmas(tmp_path):
    d = await Database.connect(f"sqlite:///{tmp_path}/sub/dir/x.db")
    try:
        assert d.dialect == "sqlite"
        assert (await d.fetchval("PRAGMA journal_mode")) == "wal"
        assert (await d.fetchval("PRAGMA synchronous")) == 1  # NORMAL
        assert (await d.fetchval("PRAGMA foreign_keys")) == 1
    finally:
        await d.close()
    with pytest.raises(DatabaseError, match="closed"):
        await d.execute("SELECT 1")


async def test_crud_roundtrip(db):
    await db.execute(db.ddl("CREATE TABLE t (id {pk}, name TEXT NOT NULL, score {float}, note TEXT)"))
    await db.execute("INSERT INTO t (name, score, note) VALUES (?, ?, ?)", ("a", 0.5, "50% sure?"))
    await db.executemany("INSERT INTO t (name, score, note) VALUES (?, ?, ?)", [("b", 1.25, None), ("c", 2.0, "x")])
    rows = await db.fetchall("SELECT id, name, score, note FROM t WHERE score >= ? ORDER BY id", (0.5,))
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["note"] == "50% sure?"
    assert rows[1]["score"] == 1.25 and rows[1]["note"] is None
    assert await db.fetchone("SELECT name FROM t WHERE name = ?", ("zzz",)) is None
    assert await db.fetchval("SELECT COUNT(*) AS n FROM t") == 3
    row = await db.fetchone("INSERT INTO t (name) VALUES (?) RETURNING id", ("d",))
    assert row["id"] == 4


async def test_transaction_rolls_back_on_error(db):
    await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    with pytest.raises(RuntimeError, match="boom"):
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES (?)", ("a",))
            assert db.in_transaction
            assert await db.fetchval("SELECT COUNT(*) FROM t") == 1
            raise RuntimeError("boom")
    assert not db.in_transaction
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 0
    async with db.transaction():
        await db.execute("INSERT INTO t VALUES (?)", ("a",))
        async with db.transaction():  # nested joins the outer
            await db.execute("INSERT INTO t VALUES (?)", ("b",))
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 2


async def test_concurrent_read_modify_write_is_serialized(db):
    """Counter increments inside transactions must not lose updates under asyncio.gather."""
    await db.execute("CREATE TABLE c (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    await db.execute("INSERT INTO c VALUES ('x', 0)")

    async def bump() -> None:
        async with db.transaction():
            if db.dialect == "postgresql":
                n = await db.fetchval("SELECT n FROM c WHERE k = 'x' FOR UPDATE")
            else:
                n = await db.fetchval("SELECT n FROM c WHERE k = 'x'")
            await asyncio.sleep(0)
            await db.execute("UPDATE c SET n = ? WHERE k = 'x'", (n + 1,))

    await asyncio.gather(*(bump() for _ in range(50)))
    assert await db.fetchval("SELECT n FROM c") == 50


async def test_migrations_are_idempotent(db):
    stmts = ["CREATE TABLE m1 (id {pk}, v {json})", "CREATE INDEX m1_v ON m1 (v)"]
    assert await db.migrate("001_m1", stmts) is True
    assert await db.migrate("001_m1", stmts) is False
    assert await db.migrate("002_m2", "ALTER TABLE m1 ADD COLUMN w TEXT") is True
    assert await db.applied_migrations() == ["001_m1", "002_m2"]
    await db.execute("INSERT INTO m1 (v, w) VALUES (?, ?)", ('{"a":1}', "x"))
    assert (await db.fetchone("SELECT v, w FROM m1"))["w"] == "x"


async def test_failed_migration_leaves_nothing_behind(db):
    with pytest.raises((sqlite3.Error, psycopg.Error)):
        await db.migrate("003_bad", ["CREATE TABLE ok_t (a TEXT)", "CREATE TABLE broken ("])
    assert "003_bad" not in await db.applied_migrations()
    # DDL is transactional on both backends: the first table is gone too
    with pytest.raises((sqlite3.Error, psycopg.Error)):
        await db.fetchall("SELECT a FROM ok_t")


async def test_postgres_without_pool_uses_one_locked_connection(tmp_path, monkeypatch):
    """psycopg_pool is optional: without it a single connection guarded by a lock must work."""
    import sys

    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # makes `import psycopg_pool` fail
    d = await open_test_db("postgresql", tmp_path)
    try:
        assert d._pool is None
        await test_concurrent_read_modify_write_is_serialized(d)
    finally:
        await d.close()


async def test_sealed_values_round_trip_and_fail_closed(db):
    """`Sealed` parameters are stored encrypted and read back open; a key made in a
    transaction that rolled back is forgotten (else later text would be sealed under a key
    that was never stored); an altered value raises instead of reading as something else."""
    import base64
    import secrets

    from callcue.privacy.envelope import KeyRing
    from callcue.privacy.vault import ERASED_TEXT, PREFIX, Sealed, TextVault, VaultError

    ring = KeyRing.from_secrets([base64.b64encode(secrets.token_bytes(32)).decode()])
    await db.use_vault(TextVault(ring))
    await db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, call_id TEXT, body TEXT)")
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.execute("INSERT INTO notes (id, call_id, body) VALUES (?, ?, ?)", (1, "c1", Sealed("c1", "card on file")))
            raise RuntimeError("rolled back")
    assert await db.fetchval("SELECT COUNT(*) FROM data_keys WHERE scope = 'c1'") == 0
    await db.execute("INSERT INTO notes (id, call_id, body) VALUES (?, ?, ?)", (2, "c1", Sealed("c1", "card on file")))
    await db.execute("INSERT INTO notes (id, call_id, body) VALUES (?, ?, ?)", (3, "c2", Sealed("c2", None)))
    assert await db.fetchone("SELECT body FROM notes WHERE id = 2") == {"body": "card on file"}
    assert await db.fetchval("SELECT body FROM notes WHERE id = 3") is None
    vault, db.vault = db.vault, None  # what is on disk
    stored = await db.fetchval("SELECT body FROM notes WHERE id = 2")
    db.vault = vault
    assert stored.startswith(PREFIX) and "card" not in stored
    # a fresh process with the same ring opens it (nothing comes from the cache)
    assert await TextVault(ring).open(db, stored) == "card on file"
    head, blob = stored.rsplit(":", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    with pytest.raises(VaultError):
        await vault.open(db, f"{head}:{base64.b64encode(bytes(raw)).decode()}")
    wrong = KeyRing.from_secrets([base64.b64encode(secrets.token_bytes(32)).decode()])
    with pytest.raises(Exception, match="unknown key"):
        await TextVault(wrong).open(db, stored)
    assert await vault.shred(db, "c1") and await vault.open(db, stored) == ERASED_TEXT
