"""One small async database facade over SQLite (aiosqlite) and PostgreSQL (psycopg 3).

Why a facade rather than an ORM: the server writes a handful of tables (audit trail, KPI
facts, learning versions) with plain SQL, and every engineer should be able to read that SQL.
Callers write `?` placeholders and a few DDL tokens; this module translates them so the same
statement runs on a laptop (SQLite file, zero setup) and in production (PostgreSQL).

Concurrency model:
- SQLite: one connection, every statement serialized by an asyncio lock (SQLite allows one
  writer anyway). Autocommit outside `transaction()`; `transaction()` is `BEGIN IMMEDIATE`
  so the write lock is taken up front and concurrent processes cannot interleave.
- PostgreSQL: a `psycopg_pool.AsyncConnectionPool` when that package is installed, otherwise
  a single autocommit connection guarded by a lock.

Inside `async with db.transaction():` every `execute`/`fetch*` issued by the same task (and
tasks it spawns) runs on the transaction's connection; a nested `transaction()` joins the
outer one (it does not open a savepoint) because callers here only need all-or-nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from callcue.privacy.vault import PREFIX, SYSTEM, Sealed, TextVault

Dialect = Literal["sqlite", "postgresql"]
Params = Sequence[Any] | None

# DDL tokens: the only type differences our schemas need.
_DDL_TOKENS: dict[str, dict[Dialect, str]] = {
    "{pk}": {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "BIGSERIAL PRIMARY KEY"},
    "{float}": {"sqlite": "REAL", "postgresql": "DOUBLE PRECISION"},
    "{bigint}": {"sqlite": "INTEGER", "postgresql": "BIGINT"},
    "{json}": {"sqlite": "TEXT", "postgresql": "TEXT"},
    "{blob}": {"sqlite": "BLOB", "postgresql": "BYTEA"},
}


_MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at {float} NOT NULL)"


class DatabaseError(RuntimeError):
    """Raised for misuse of the facade (bad URL, closed database)."""


def ddl(sql: str, dialect: Dialect) -> str:
    """Replace `{pk}`, `{float}`, `{bigint}`, `{json}`, `{blob}` with the dialect's type.

    Plain `str.replace` (not `str.format`) so literal braces elsewhere in SQL are left alone.
    """
    for token, by_dialect in _DDL_TOKENS.items():
        sql = sql.replace(token, by_dialect[dialect])
    return sql


def to_pyformat(sql: str) -> str:
    """Translate `?` placeholders to psycopg's `%s`, escaping literal `%` as `%%`.

    Question marks and percent signs inside single-quoted literals, double-quoted identifiers
    and `--` comments are left as they are (a `?` there is data, not a placeholder).
    """
    out: list[str] = []
    i, n = 0, len(sql)
    quote: str | None = None
    while i < n:
        c = sql[i]
        if quote:
            out.append("%%" if c == "%" else c)
            if c == quote:
                if i + 1 < n and sql[i + 1] == quote:  # doubled quote = escaped quote
                    out.append(sql[i + 1])
                    i += 1
                else:
                    quote = None
        elif c in ("'", '"'):
            quote = c
            out.append(c)
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        elif c == "?":
            out.append("%s")
        elif c == "%":
            out.append("%%")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def sqlite_path(url: str) -> str:
    """`sqlite:///rel/path.db` -> `rel/path.db`; `sqlite:////abs/path.db` -> `/abs/path.db`."""
    if not url.startswith("sqlite:///"):
        raise DatabaseError(f"SQLite URL must look like sqlite:///path/to.db, got {url!r}")
    path = url[len("sqlite:///"):]
    path = path.split("?", 1)[0]
    if not path:
        raise DatabaseError(f"SQLite URL has no file path: {url!r}")
    return path


class Database:
    """Async access to one database; construct with `await Database.connect(url)`."""

    dialect: Dialect

    def __init__(self, dialect: Dialect, url: str) -> None:
        self.dialect = dialect
        self.url = url
        self._lock = asyncio.Lock()  # serializes the single connection (sqlite / pg fallback)
        self._conn: Any = None  # aiosqlite.Connection | psycopg.AsyncConnection
        self._pool: Any = None  # psycopg_pool.AsyncConnectionPool
        # the connection of the transaction the current task is in, if any
        self._tx: contextvars.ContextVar[Any] = contextvars.ContextVar(f"callcue_db_tx_{id(self)}", default=None)
        self._closed = False
        # undo steps for in-memory state made inside the current transaction (a new data key)
        self._undo: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(f"callcue_db_undo_{id(self)}",
                                                                                       default=None)  # fmt: skip
        # seals `Sealed` parameters on the way in and opens sealed values on the way out
        self.vault: TextVault | None = None

    async def use_vault(self, vault: TextVault) -> None:
        """Encrypt call text at rest from now on (privacy/vault.py)."""
        await vault.init(self)
        self.vault = vault

    def on_rollback(self, undo: Any) -> None:
        """Run `undo()` if the current transaction rolls back (nothing outside one)."""
        steps = self._undo.get()
        if steps is not None:
            steps.append(undo)

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def connect(cls, url: str) -> Database:
        """Open `sqlite:///path` or `postgresql://...` (also `postgres://`)."""
        if url.startswith("sqlite:"):
            db = cls("sqlite", url)
            await db._open_sqlite(sqlite_path(url))
        elif url.startswith(("postgresql://", "postgres://")):
            db = cls("postgresql", url)
            await db._open_postgres(url)
        else:
            scheme = urlsplit(url).scheme or url
            raise DatabaseError(f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://...")
        return db

    async def _open_sqlite(self, path: str) -> None:
        import aiosqlite

        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; transactions are explicit BEGIN IMMEDIATE
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=30.0)
        conn.row_factory = aiosqlite.Row
        # WAL lets readers (e.g. `callcue audit verify`) run while the server writes;
        # NORMAL is durable across application crashes, which is what an audit trail needs
        # on a single box (a power cut may lose the last commit, never corrupt the file).
        for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON",
                       "PRAGMA busy_timeout=30000"):
            await conn.execute(pragma)
        self._conn = conn

    async def _open_postgres(self, url: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        pool_cls: Any
        try:
            from psycopg_pool import AsyncConnectionPool as pool_cls
        except ImportError:  # without the pool package: one connection under a lock
            pool_cls = None

        if pool_cls is not None:
            pool = pool_cls(
                url, min_size=1, max_size=8, open=False,
                kwargs={"row_factory": dict_row, "autocommit": True},
            )
            await pool.open(wait=True, timeout=30.0)
            self._pool = pool
        else:
            self._conn = await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True)

    async def close(self) -> None:
        """Close connections; further calls raise DatabaseError."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            await self._pool.close()
        if self._conn is not None:
            await self._conn.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- SQL helpers

    def ddl(self, sql: str) -> str:
        """This database's spelling of DDL written with `{pk}`/`{float}`/... tokens."""
        return ddl(sql, self.dialect)

    def _sql(self, sql: str) -> str:
        return to_pyformat(sql) if self.dialect == "postgresql" else sql

    # ---------------------------------------------------------------- connections

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """The connection to run one statement on: the task's transaction, or a fresh turn."""
        if self._closed:
            raise DatabaseError("database is closed")
        tx = self._tx.get()
        if tx is not None:
            yield tx
            return
        if self._pool is not None:
            async with self._pool.connection() as conn:
                yield conn
        else:
            async with self._lock:
                yield self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        """All-or-nothing block; commits on normal exit, rolls back on exception.

        SQLite uses BEGIN IMMEDIATE so the write lock is held for the whole block, which is
        what makes read-then-write sequences (next audit seq) race-free across processes.
        """
        if self._closed:
            raise DatabaseError("database is closed")
        if self._tx.get() is not None:  # nested: join the outer transaction
            yield self
            return
        undo_token = self._undo.set([])
        try:
            async with self._transaction():
                yield self
        except BaseException:
            for step in self._undo.get() or []:
                step()
            raise
        finally:
            self._undo.reset(undo_token)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        if self.dialect == "sqlite":
            async with self._lock:
                conn = self._conn
                await conn.execute("BEGIN IMMEDIATE")
                token = self._tx.set(conn)
                try:
                    yield None
                except BaseException:
                    await conn.rollback()
                    raise
                else:
                    await conn.commit()
                finally:
                    self._tx.reset(token)
        elif self._pool is not None:
            async with self._pool.connection() as conn, conn.transaction():
                token = self._tx.set(conn)
                try:
                    yield None
                finally:
                    self._tx.reset(token)
        else:
            async with self._lock:
                conn = self._conn
                async with conn.transaction():
                    token = self._tx.set(conn)
                    try:
                        yield None
                    finally:
                        self._tx.reset(token)

    @property
    def in_transaction(self) -> bool:
        """True when the current task runs inside `transaction()`."""
        return self._tx.get() is not None

    # ---------------------------------------------------------------- statements

    async def _sealed(self, params: Params) -> tuple[Any, ...]:
        """Parameters with each `Sealed` one encrypted (plain when no vault is in use)."""
        out = list(params or ())
        for i, p in enumerate(out):
            if isinstance(p, Sealed):
                if p.text is None or self.vault is None:
                    out[i] = p.text
                else:
                    out[i] = await self.vault.seal(self, p.scope or SYSTEM, p.text)
        return tuple(out)

    async def _opened(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows with every sealed value opened (left sealed when no vault is in use)."""
        if self.vault is None:
            return rows
        for row in rows:
            for k, v in row.items():
                if isinstance(v, str) and v.startswith(PREFIX):
                    row[k] = await self.vault.open(self, v)
        return rows

    async def execute(self, sql: str, params: Params = ()) -> None:
        """Run one statement (`?` placeholders)."""
        params = await self._sealed(params)
        async with self._connection() as conn:
            if self.dialect == "sqlite":
                await conn.execute(sql, tuple(params or ()))
            else:
                await conn.execute(self._sql(sql), tuple(params or ()))

    async def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each parameter tuple, inside one transaction."""
        rows = [await self._sealed(p) for p in seq_of_params]
        if not rows:
            return
        async with self.transaction(), self._connection() as conn:
            if self.dialect == "sqlite":
                await conn.executemany(sql, rows)
            else:
                async with conn.cursor() as cur:
                    await cur.executemany(self._sql(sql), rows)

    async def fetchall(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """All result rows as dicts keyed by column name."""
        async with self._connection() as conn:
            if self.dialect == "sqlite":
                async with conn.execute(sql, tuple(params or ())) as cur:
                    out = [dict(r) for r in await cur.fetchall()]
            else:
                cur = await conn.execute(self._sql(sql), tuple(params or ()))
                out = list(await cur.fetchall())
        return await self._opened(out)

    async def fetchone(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        """The first result row as a dict, or None."""
        async with self._connection() as conn:
            if self.dialect == "sqlite":
                async with conn.execute(sql, tuple(params or ())) as cur:
                    got = await cur.fetchone()
                one = dict(got) if got is not None else None
            else:
                cur = await conn.execute(self._sql(sql), tuple(params or ()))
                one = await cur.fetchone()
        return None if one is None else (await self._opened([one]))[0]

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None: for COUNT/MAX lookups."""
        row = await self.fetchone(sql, params)
        return next(iter(row.values())) if row else None

    async def tables(self) -> set[str]:
        """The tables that exist (a part that is switched off created none)."""
        if self.dialect == "sqlite":
            rows = await self.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = await self.fetchall("SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()")
        return {r["name"] for r in rows}

    # ---------------------------------------------------------------- migrations

    async def migrate(self, name: str, statements: str | Sequence[str]) -> bool:
        """Apply a named migration once; returns True if it ran now, False if already applied.

        Statements may use `ddl()` tokens. The check and the statements run in one
        transaction (PostgreSQL DDL is transactional; SQLite's BEGIN IMMEDIATE excludes other
        writers), and on PostgreSQL an advisory lock stops two servers migrating at once.
        """
        if not name:
            raise ValueError("migration name must be non-empty")
        stmts = [statements] if isinstance(statements, str) else list(statements)
        async with self._migrations_locked():
            done = await self.fetchone("SELECT name FROM schema_migrations WHERE name = ?", (name,))
            if done:
                return False
            for stmt in stmts:
                await self.execute(self.ddl(stmt))
            await self.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
        return True

    @asynccontextmanager
    async def _migrations_locked(self) -> AsyncIterator[None]:
        """A transaction holding the migration lock, with the bookkeeping table created under it:
        two PostgreSQL sessions running CREATE TABLE IF NOT EXISTS at once collide on the
        catalog (UniqueViolation), as two cluster nodes starting together did."""
        async with self.transaction():
            if self.dialect == "postgresql":
                await self.execute("SELECT pg_advisory_xact_lock(?)", (0x43616C6C437565,))  # "CallCue"
            await self.execute(self.ddl(_MIGRATIONS_TABLE))
            yield

    async def applied_migrations(self) -> list[str]:
        """Names of applied migrations in the order they ran."""
        async with self._migrations_locked():
            pass
        rows = await self.fetchall("SELECT name FROM schema_migrations ORDER BY applied_at, name")
        return [r["name"] for r in rows]
