"""A throwaway redis-server for the cluster tests (Debian's `redis-server`, installed by
`.ci/run`): loopback, a free port, no persistence, its directory under a temp dir, stopped at
exit. `CALLCUE_TEST_REDIS_URL` points the tests at an existing server instead."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from functools import lru_cache

_ENV = "CALLCUE_TEST_REDIS_URL"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@lru_cache(maxsize=1)
def redis_url() -> str | None:
    """URL of the session's Redis, starting one on first call; None when there is no redis-server."""
    if os.environ.get(_ENV):
        return os.environ[_ENV]
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    port = _free_port()
    d = tempfile.mkdtemp(prefix="callcue-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", d, "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(d, ignore_errors=True)

    atexit.register(stop)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.1)
    stop()
    return None


def fresh_redis_url(db: int) -> str | None:
    """The session's Redis, database `db` flushed: each test its own keyspace."""
    url = redis_url()
    if url is None:
        return None
    import redis

    url = url.rsplit("/", 1)[0] + f"/{db}"
    redis.Redis.from_url(url).flushdb()
    return url
