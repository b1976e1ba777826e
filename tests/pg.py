"""A throwaway PostgreSQL for tests, so the SQL is proven on both backends on any dev box.

Order of preference:
1. `CALLCUE_TEST_PG_DSN` (an existing server, e.g. in CI);
2. a private cluster started once per test session from Debian's PostgreSQL binaries
   (`initdb` + `pg_ctl` on a temp dir, 127.0.0.1 and a free port, trust auth), run as the
   `postgres` OS user when the tests run as root because PostgreSQL refuses to run as root.

Each test gets its own schema (`fresh_postgres_url()`), which is much cheaper than a database
per test and keeps tests independent. If no PostgreSQL binary exists the caller skips with
the reason from `postgres_unavailable_reason()`.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from functools import lru_cache
from urllib.parse import quote

_ENV = "CALLCUE_TEST_PG_DSN"


def _pg_bindir() -> str | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], user: str | None) -> subprocess.CompletedProcess[str]:
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


_reason: str | None = None


@lru_cache(maxsize=1)
def postgres_dsn() -> str | None:
    """DSN of the session's PostgreSQL, starting a private cluster on first call; None if impossible."""
    global _reason
    if os.environ.get(_ENV):
        return os.environ[_ENV]
    bindir = _pg_bindir()
    if bindir is None:
        _reason = f"no PostgreSQL binaries (initdb/pg_ctl) found and {_ENV} is not set"
        return None
    user = "postgres" if os.geteuid() == 0 else None
    if user and shutil.which("runuser") is None:
        _reason = "running as root but `runuser` is missing, cannot start PostgreSQL as a non-root user"
        return None
    tmp = tempfile.mkdtemp(prefix="callcue-pg-")
    if user:
        shutil.chown(tmp, user=user)
    data = os.path.join(tmp, "data")
    port = _free_port()
    r = _run([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "callcue", "-E", "UTF8", "--no-sync"], user)
    if r.returncode != 0:
        _reason = f"initdb failed: {r.stderr.strip()[-500:]}"
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    r = _run([f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(tmp, "log"), "-w", "-t", "60", "start"], user)
    if r.returncode != 0:
        log = ""
        try:
            with open(os.path.join(tmp, "log")) as f:
                log = f.read()[-500:]
        except OSError:
            pass
        _reason = f"pg_ctl start failed: {r.stderr.strip()[-300:]} {log}"
        shutil.rmtree(tmp, ignore_errors=True)
        return None

    def _stop() -> None:
        _run([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], user)
        shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(_stop)
    return f"postgresql://callcue@127.0.0.1:{port}/postgres"


def postgres_unavailable_reason() -> str:
    return _reason or "PostgreSQL unavailable"


def fresh_postgres_url() -> str | None:
    """A DSN whose search_path is a brand-new empty schema, or None when PostgreSQL is unavailable."""
    dsn = postgres_dsn()
    if dsn is None:
        return None
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options={quote(f'-csearch_path={schema}')}"


def backend_url(backend: str) -> str | None:
    """A parametrized test's database: None for "sqlite" (the server's own file), a fresh
    PostgreSQL schema for "postgresql", or the test is skipped saying why there is none."""
    if backend != "postgresql":
        return None
    url = fresh_postgres_url()
    if url is None:
        import pytest

        pytest.skip(f"PostgreSQL tests skipped: {postgres_unavailable_reason()}")
    return url


async def open_test_db(backend: str, tmp_path):
    """A fresh `Database` on `backend` ("sqlite"|"postgresql"); skips postgres with a reason."""
    import pytest

    from callcue.store.db import Database

    if backend == "sqlite":
        return await Database.connect(f"sqlite:///{tmp_path}/test.db")
    url = fresh_postgres_url()
    if url is None:
        pytest.skip(f"PostgreSQL tests skipped: {postgres_unavailable_reason()}")
    return await Database.connect(url)
