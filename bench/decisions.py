"""Decision latency: signal handed to the engine -> action dispatched, at N concurrent calls.

What is real: the DecisionEngine, the hash-chained AuditLog on SQLite (or PostgreSQL), the
Learning store (thresholds are looked up per signal), the ActionDispatcher and its
WebhookClient posting to a real HTTP server. What is simulated: the signals. Each call emits
signals as a Poisson process (default one every 1.5 s, about what the detectors raise on a
busy call: a sentiment score per final plus the odd intent/risk); most match no playbook but
are still audited, as in production.

Measured per firing:
* hint  - `engine.on_signal()` called -> the hint reaches the agent sink (suggest playbook);
* webhook - `on_signal()` called -> the CRM's HTTP server has the POST (auto playbook).

    .venv/bin/python bench/decisions.py --calls 50 --seconds 30
    .venv/bin/python bench/decisions.py --backend postgresql   # CALLCUE_BENCH_PG_DSN or a throwaway cluster
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.pg starts a throwaway PostgreSQL when no DSN is given

from callcue.audit.log import AuditLog
from callcue.decide.actions.dispatcher import ActionDispatcher
from callcue.decide.engine import CallInfo, DecisionEngine
from callcue.decide.playbooks import PlaybookSet
from callcue.events import Evidence, Hint, Signal
from callcue.learning.store import Learning
from callcue.store.db import Database

PLAYBOOKS = """
playbooks:
  - id: bench_offer
    version: 1
    trigger: {{kinds: [intent], names: [cancel_request]}}
    min_confidence: 0.5
    autonomy: suggest
    actions:
      - {{kind: hint, title: Offer the loyalty discount, severity: warning}}
  - id: bench_callback
    version: 1
    trigger: {{kinds: [risk], names: [manager_request]}}
    when: "signal.channel == 'customer'"
    min_confidence: 0.5
    autonomy: auto
    actions:
      - kind: webhook
        url: {recv}/crm/callback
        retries: 0
        timeout_s: 10
"""

# (kind, name, confidence, share of signals); sentiment matches nothing but is audited
MIX = [("sentiment", "neutral", 0.9, 0.70), ("intent", "cancel_request", 0.8, 0.15),
       ("risk", "manager_request", 0.9, 0.15)]  # fmt: skip


class Receiver:
    """The CRM: a threaded HTTP server noting when each action's POST arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                sig = (json.loads(body).get("signal") or {}).get("signal_id")
                outer.arrived[sig] = now
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a: Any) -> None:
                pass

        ThreadingHTTPServer.request_queue_size = 256
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def pick(rng: random.Random) -> tuple[str, str, float]:
    x = rng.random()
    for kind, name, conf, share in MIX:
        if x < share:
            return kind, name, conf
        x -= share
    return MIX[-1][:3]


async def one_call(engine: DecisionEngine, i: int, seconds: float, rate: float, sent: dict[str, tuple[str, float]],
                   rng: random.Random) -> int:  # fmt: skip
    info = CallInfo(call_id=f"bench-{i:03d}", agent_id=f"agent-{i % 10}")
    engine.start_call(info)
    await asyncio.sleep(rng.random() / rate)  # calls do not start in lockstep
    t_end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < t_end:
        kind, name, conf = pick(rng)
        at = float(n)
        sig = Signal(call_id=info.call_id, kind=kind, name=name, confidence=conf, detector="bench",
                     detector_version="1", evidence=Evidence(channel="customer", text=f"utterance {n}", start=at,
                                                             end=at + 1.0, segment_id=n, revision=0, is_final=True))  # fmt: skip
        if name != "neutral":
            sent[sig.signal_id] = (name, time.perf_counter())
        await engine.on_signal(info, sig)
        n += 1
        await asyncio.sleep(rng.expovariate(rate))
    await engine.on_call_end(info.call_id)
    return n


async def open_db(backend: str, tmp: Path) -> tuple[Database, str]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
    else:
        url = os.environ.get("CALLCUE_BENCH_PG_DSN", "")
        if not url:
            from tests.pg import fresh_postgres_url, postgres_unavailable_reason

            url = fresh_postgres_url() or ""
            if not url:
                raise SystemExit(f"PostgreSQL unavailable: {postgres_unavailable_reason()}")
    return await Database.connect(url), url


async def run(calls: int, seconds: float, rate: float, backend: str, seed: int) -> dict[str, Any]:
    recv = Receiver()
    tmp = Path(tempfile.mkdtemp(prefix="callcue-bench-"))
    (tmp / "pb").mkdir()
    (tmp / "pb" / "bench.yaml").write_text(PLAYBOOKS.format(recv=recv.url))
    db, _url = await open_db(backend, tmp)
    audit = await AuditLog(db).init()
    learning = await Learning(db, audit).init()
    hint_at: dict[str, float] = {}

    async def publish_hint(h: Hint) -> None:
        hint_at[h.signal_ids[0]] = time.perf_counter()

    async def nowhere(*_a: Any) -> None:
        return None

    dispatcher = ActionDispatcher(publish_to_agent=nowhere, publish_to_supervisors=nowhere, publish_hint=publish_hint)
    engine = DecisionEngine(PlaybookSet.load(tmp / "pb"), audit, dispatcher, learning=learning)
    sent: dict[str, tuple[str, float]] = {}
    rng = random.Random(seed)
    t0 = time.perf_counter()
    lag: list[float] = []

    async def loop_lag() -> None:  # how late the event loop wakes up: saturation shows here first
        while True:
            a = time.perf_counter()
            await asyncio.sleep(0.05)
            lag.append(time.perf_counter() - a - 0.05)

    probe = asyncio.create_task(loop_lag())
    counts = await asyncio.gather(*(one_call(engine, i, seconds, rate, sent, random.Random(rng.random()))
                                    for i in range(calls)))  # fmt: skip
    await engine.drain()
    await asyncio.sleep(0.2)
    wall = time.perf_counter() - t0
    probe.cancel()
    rows = await db.fetchval("SELECT COUNT(*) FROM audit_log")
    verify = await audit.verify()
    await dispatcher.webhooks.aclose()
    await engine.close()
    await db.close()
    recv.close()

    def stats(name: str, done: dict[str, float]) -> dict[str, Any]:
        ms = np.array([(done[s] - t) * 1000 for s, (n, t) in sent.items() if n == name and s in done])
        missing = sum(1 for s, (n, _t) in sent.items() if n == name and s not in done)
        if not len(ms):
            return {"n": 0, "missing": missing}
        return {"n": len(ms), "missing": missing, "p50_ms": float(np.percentile(ms, 50)),
                "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
                "max_ms": float(ms.max())}  # fmt: skip

    return {
        "backend": backend, "calls": calls, "seconds": seconds, "rate_per_call": rate, "signals": int(sum(counts)),
        "signals_per_s": round(sum(counts) / wall, 1), "audit_rows": int(rows), "chain_ok": verify.ok,
        "hint": stats("cancel_request", hint_at), "webhook": stats("manager_request", recv.arrived),
        "loop_lag_p95_ms": float(np.percentile(np.array(lag) * 1000, 95)) if lag else None,
        "load_1m_end": os.getloadavg()[0],
    }  # fmt: skip


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    mem = next((int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal")), 0) / 1024**2
    return f"{os.cpu_count()} cores ({cpu}), {mem:.1f} GiB RAM, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"


def table(results: list[dict[str, Any]]) -> str:
    head = ("| backend | calls | signals/s | action | n | p50 ms | p95 ms | p99 ms | max ms | loop lag p95 ms |\n"
            "|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    lines = [head]
    for r in results:
        for what in ("hint", "webhook"):
            s = r[what]
            if not s.get("n"):
                lines.append(f"| {r['backend']} | {r['calls']} | {r['signals_per_s']} | {what} | 0 | - | - | - | - | - |")
                continue
            lines.append(f"| {r['backend']} | {r['calls']} | {r['signals_per_s']} | {what} | {s['n']} | {s['p50_ms']:.1f} "
                         f"| {s['p95_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.1f} | {r['loop_lag_p95_ms']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0, help="how long each call emits signals")
    ap.add_argument("--rate", type=float, default=1 / 1.5, help="signals per second per call (Poisson)")
    ap.add_argument("--backend", action="append", choices=["sqlite", "postgresql"],
                    help="repeat for both (default sqlite)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print JSON results instead of a table")
    a = ap.parse_args()
    if a.calls < 1 or a.seconds <= 0 or a.rate <= 0:
        ap.error("--calls, --seconds and --rate must be positive")
    results = [asyncio.run(run(a.calls, a.seconds, a.rate, b, a.seed)) for b in (a.backend or ["sqlite"])]
    if a.json:
        print(json.dumps(results, indent=1))
        return
    print(machine())
    print(table(results))
    for r in results:
        print(f"{r['backend']}: {r['signals']} signals, {r['audit_rows']} audit rows, chain ok={r['chain_ok']}, "
              f"missing hint={r['hint'].get('missing')} webhook={r['webhook'].get('missing')}")  # fmt: skip


if __name__ == "__main__":
    main()
