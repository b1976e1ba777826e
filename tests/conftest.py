"""Shared fixtures. Real data lives in ../shared/data beside the checkout, never in the repo."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


#: the ports `make demo` serves on (HTTP, AudioSocket): held for the whole run, as a demo
#: running beside `make test` would hold them, so a test server that takes one fails here too
SHIPPED_PORTS = (8080, 9092)
_held: list[socket.socket] = []


def pytest_configure(config: pytest.Config) -> None:
    """Models prepared during the run (Moonshine's one-time conversion) go to a temporary
    folder, never the user's ~/.cache: tests leave no trace. Servers the tests spawn inherit it."""
    if "CALLCUE_MODELS_DIR" not in os.environ:
        d = tempfile.mkdtemp(prefix="callcue-test-models-")
        os.environ["CALLCUE_MODELS_DIR"] = d
        os.environ["CALLCUE_TEST_OWN_MODELS_DIR"] = d
    for port in SHIPPED_PORTS:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
            _held.append(s)
        except OSError:  # a demo is running: it holds the port already, which is the same test
            s.close()


def pytest_unconfigure(config: pytest.Config) -> None:
    d = os.environ.pop("CALLCUE_TEST_OWN_MODELS_DIR", None)
    if d:
        os.environ.pop("CALLCUE_MODELS_DIR", None)
        shutil.rmtree(d, ignore_errors=True)
    while _held:
        _held.pop().close()


def require_shared(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test saying exactly what is missing."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (tests read real data from ../shared/data beside the checkout)")
    return p


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def speech_manifest() -> list[dict]:
    p = require_shared("speech", "manifest.jsonl")
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


@pytest.fixture
def backends() -> tuple[str, str]:
    """Cluster mode's stores: a fresh PostgreSQL schema and a flushed Redis database, or skip."""
    from tests.pg import fresh_postgres_url, postgres_unavailable_reason
    from tests.rediskit import fresh_redis_url

    pg = fresh_postgres_url()
    if pg is None:
        pytest.skip(f"PostgreSQL: {postgres_unavailable_reason()}")
    rd = fresh_redis_url(1)
    if rd is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    return pg, rd
