"""Faults under load: N real-time calls over the real server for M minutes while faults are
injected, then an account of what was lost.

    .venv/bin/python bench/faults.py --calls 3 --minutes 2

Each call is the shipped demo recording streamed as Twilio does (signed), looping; an agent
desktop watches every call and accepts every hint it is shown. Faults, in turn:

  sigkill       the server is SIGKILLed and started again on the same database
  sigterm       a graceful stop and start
  agent_drop    the desktop's socket is cut without a close; it reconnects
  stream_drop   a platform stream is cut mid-call; the platform reconnects with the same
                callSid and the call continues
  hostile       a burst of 100 sockets: unsigned Twilio streams and authenticated native
                streams that never send audio (the idle timeout closes them)
  db_locked     another process holds the SQLite database locked for 2 s

  decoder_raise throughout the run, every Nth recognizer call raises in its decoder thread
                (the server's opt-in hook, CALLCUE_FAULT_DECODER_RAISE_EVERY)
 At the end the server is stopped, and every final transcript, signal and hint the
desktop received, and every feedback the server acknowledged, is looked up in the database
and the audit trail; `callcue audit verify` checks the hash chain. Loss is attributed to the
last fault before the item was received. Prints a table; --json-out writes the raw figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from callcue.clients.audio_file import read_call_audio
from callcue.clients.demo import demo_call_path, free_port
from callcue.clients.twilio_stream import (
    TwilioMessages,
    connect_native,
    connect_twilio,
    mulaw_frames,
)

AGENT_TOKEN = "demo-agent-token"
FAULTS = ("sigkill", "sigterm", "agent_drop", "stream_drop", "hostile", "db_locked")


@dataclass
class Server:
    workdir: Path
    decoder_raise_every: int = 0
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def db(self) -> Path:
        return self.workdir / "faults.db"

    def start(self) -> None:
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - handed to the child
        env = dict(os.environ)
        if self.decoder_raise_every:
            env["CALLCUE_FAULT_DECODER_RAISE_EVERY"] = str(self.decoder_raise_every)
        self.proc = subprocess.Popen([sys.executable, "-m", "callcue.cli", "serve", "--port", str(self.port), "--audiosocket-port", "0",
                                      "--storage-url", f"sqlite:///{self.db}"], stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir, env=env)  # fmt: skip

    async def ready(self, timeout: float = 120) -> float:
        t0 = time.monotonic()
        async with httpx.AsyncClient(timeout=2) as c:
            while time.monotonic() - t0 < timeout:
                assert self.proc is not None and self.proc.poll() is None, "server exited; see server.log"
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get(f"http://127.0.0.1:{self.port}/healthz")).status_code == 200:
                        return time.monotonic() - t0
                await asyncio.sleep(0.2)
        raise RuntimeError("server not ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)


@dataclass
class Ledger:
    """What clients were sent or had acknowledged, each with when it arrived."""

    finals: list[tuple[float, str, str]] = field(default_factory=list)  # (t, call, text)
    signals: list[tuple[float, str]] = field(default_factory=list)
    hints: list[tuple[float, str]] = field(default_factory=list)
    acked: list[tuple[float, str]] = field(default_factory=list)
    resumed: int = 0
    resume_failed: int = 0


async def desk(srv: Server, ledger: Ledger, stop: asyncio.Event, cut: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with connect(f"ws://127.0.0.1:{srv.port}/ws/agent", additional_headers={"Authorization": f"Bearer {AGENT_TOKEN}"},
                               subprotocols=["callcue.v1.json"], open_timeout=5) as ws:  # type: ignore[list-item]
                await ws.send(json.dumps({"type": "subscribe", "call_id": "*"}))
                while not stop.is_set():
                    if cut.is_set():
                        cut.clear()
                        ws.transport.abort()  # a dropped network, not a close
                        break
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    ev, now = json.loads(raw), time.time()
                    if ev.get("type") == "transcript" and ev.get("is_final") and ev.get("text"):
                        ledger.finals.append((now, ev["call_id"], ev["text"]))
                    elif ev.get("type") == "signal":
                        ledger.signals.append((now, ev["signal_id"]))
                    elif ev.get("type") == "hint":
                        ledger.hints.append((now, ev["hint_id"]))
                        await ws.send(json.dumps({"type": "feedback", "hint_id": ev["hint_id"], "action": "accepted"}))
                    elif ev.get("type") == "feedback_ack":
                        ledger.acked.append((now, ev["hint_id"]))
        except Exception:
            await asyncio.sleep(0.5)


async def caller(i: int, srv: Server, ledger: Ledger, stop: asyncio.Event, cut: asyncio.Event) -> None:
    """One call, looping over the demo recording at real time; reconnects with the same
    callSid when its stream is lost, so the server must continue the call."""
    audio = read_call_audio(demo_call_path())
    frames = list(mulaw_frames(audio))
    loop_no = 0
    while not stop.is_set():
        sid = f"CAfault{i}x{loop_no}"
        pos, connected_before = 0, False
        while pos < len(frames) and not stop.is_set():
            try:
                url = f"ws://127.0.0.1:{srv.port}/ws/twilio"
                async with connect_twilio(url, open_timeout=5) as ws:
                    m = TwilioMessages(call_sid=sid, agent_id="agent-1")
                    await ws.send(m.connected())
                    await ws.send(m.start(["inbound", "outbound"]))
                    if connected_before:
                        ledger.resumed += 1
                    connected_before = True
                    t0 = time.monotonic() - frames[pos][0]
                    first = frames[pos][0]  # a new stream's timestamps start at 0, as Twilio's do
                    while pos < len(frames) and not stop.is_set():
                        if cut.is_set() and i == 0:
                            cut.clear()
                            ws.transport.abort()
                            break
                        offset, by_ch = frames[pos]
                        delay = t0 + offset - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        for track, payload in by_ch.items():
                            await ws.send(m.media(track, int((offset - first) * 1000), payload))
                        pos += 1
                    else:
                        await ws.send(m.stop())
                        await asyncio.wait_for(ws.wait_closed(), 60)
            except Exception:
                await asyncio.sleep(0.5)
        loop_no += 1


async def hostile(srv: Server, n: int = 100) -> int:
    """Returns how many of the sockets the server closed by itself (refused or idle)."""
    async def one(k: int) -> bool:
        try:
            if k % 2:
                async with connect(f"ws://127.0.0.1:{srv.port}/ws/twilio", open_timeout=5) as ws:
                    await asyncio.wait_for(ws.wait_closed(), 30)
            else:
                async with connect_native(f"ws://127.0.0.1:{srv.port}/ws/native", open_timeout=5) as ws:
                    await ws.send(json.dumps({"type": "start", "call_id": f"idle-{k}-{time.time_ns()}", "agent_id": "agent-1",
                                              "channels": ["customer"], "encoding": "PCMU", "sample_rate": 8000}))
                    await asyncio.wait_for(ws.wait_closed(), 30)
            return True
        except ConnectionClosed:
            return True  # closed by the server before we were done: refused
        except Exception:
            return False
    return sum(await asyncio.gather(*(one(k) for k in range(n))))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="callcue-faults-"))
    work.mkdir(parents=True, exist_ok=True)  # a --workdir that does not exist yet is made
    srv = Server(work, decoder_raise_every=args.decoder_raise_every)
    srv.start()
    await srv.ready()
    ledger = Ledger()
    stop, desk_cut, stream_cut = asyncio.Event(), asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(desk(srv, ledger, stop, desk_cut))]
    tasks += [asyncio.create_task(caller(i, srv, ledger, stop, stream_cut)) for i in range(args.calls)]
    log: list[dict[str, Any]] = []
    t_end = time.monotonic() + args.minutes * 60
    k = 0
    await asyncio.sleep(args.settle)
    while time.monotonic() < t_end:
        kind = FAULTS[k % len(FAULTS)]
        k += 1
        entry: dict[str, Any] = {"fault": kind, "at": time.time(), "survived": True, "recover_s": 0.0}
        t0 = time.monotonic()
        if kind in ("sigkill", "sigterm"):
            srv.stop(signal.SIGKILL if kind == "sigkill" else signal.SIGTERM)
            srv.start()
            entry["recover_s"] = round(await srv.ready(), 2)
        elif kind == "agent_drop":
            desk_cut.set()
        elif kind == "stream_drop":
            stream_cut.set()
        elif kind == "hostile":
            closed = await hostile(srv)
            entry["closed_by_server"] = closed
            entry["survived"] = closed == 100
            entry["recover_s"] = round(time.monotonic() - t0, 2)
        elif kind == "db_locked":
            con = sqlite3.connect(srv.db, timeout=10)
            con.execute("BEGIN EXCLUSIVE")
            await asyncio.sleep(2.0)
            con.rollback()
            con.close()
            entry["recover_s"] = round(time.monotonic() - t0, 2)
        with contextlib.suppress(Exception):
            async with httpx.AsyncClient(timeout=5) as c:
                entry["survived"] = entry["survived"] and (await c.get(f"http://127.0.0.1:{srv.port}/healthz")).status_code == 200
        log.append(entry)
        await asyncio.sleep(args.every)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    srv.stop()
    return account(srv, ledger, log)


def account(srv: Server, ledger: Ledger, log: list[dict[str, Any]]) -> dict[str, Any]:
    db = sqlite3.connect(srv.db)
    finals = set(db.execute("SELECT call_id, text FROM transcripts").fetchall())
    signals = {r[0] for r in db.execute("SELECT signal_id FROM signals")}
    hints = {r[0] for r in db.execute("SELECT hint_id FROM hints")}
    feedback = {r[0] for r in db.execute("SELECT hint_id FROM feedback")}
    audited = {(r[0], json.loads(r[1]).get("hint_id")) for r in db.execute(
        "SELECT kind, payload FROM audit_log WHERE kind IN ('hint_shown', 'feedback')")}
    open_calls = db.execute("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL").fetchone()[0]
    db.close()

    def fault_at(t: float) -> str:
        before = [e["fault"] for e in log if e["at"] <= t]
        return before[-1] if before else "(before any fault)"

    lost: dict[str, dict[str, int]] = {}
    def miss(kind: str, t: float) -> None:
        lost.setdefault(fault_at(t), {}).setdefault(kind, 0)
        lost[fault_at(t)][kind] += 1

    for t, call, text in ledger.finals:
        if (call, text) not in finals:
            miss("rows", t)
    for t, sid in ledger.signals:
        if sid not in signals:
            miss("rows", t)
    for t, hid in ledger.hints:
        if hid not in hints:
            miss("rows", t)
        if ("hint_shown", hid) not in audited:
            miss("audit", t)
    for t, hid in ledger.acked:
        if hid not in feedback or ("feedback", hid) not in audited:
            miss("acked_feedback", t)
    verify = subprocess.run([sys.executable, "-m", "callcue.cli", "audit", "verify", "--db", f"sqlite:///{srv.db}"],
                            capture_output=True, text=True)  # fmt: skip
    return {"faults": log, "lost": lost, "resumed": ledger.resumed, "received": {
        "finals": len(ledger.finals), "signals": len(ledger.signals), "hints": len(ledger.hints), "acked": len(ledger.acked)},
        "calls_left_open": open_calls, "audit_verify_rc": verify.returncode,
        "audit_verify": (verify.stdout + verify.stderr).strip().splitlines()[-1:],
        "decoder_faults": (srv.workdir / "server.log").read_text(errors="replace").count("injected decoder fault ("),
        "load": os.getloadavg(), "cores": os.cpu_count(), "workdir": str(srv.workdir)}  # fmt: skip


def print_table(r: dict[str, Any]) -> None:
    print(f"{r['cores']} cores, load {r['load'][0]:.2f}; received {r['received']}; calls resumed {r['resumed']}")
    print(f"{'fault':<12} {'tried':>5} {'survived':>8} {'rows lost':>9} {'audit lost':>10} {'acked lost':>10} {'recover s (max)':>15}")
    for f in FAULTS:
        es = [e for e in r["faults"] if e["fault"] == f]
        lost = r["lost"].get(f, {})
        print(f"{f:<12} {len(es):>5} {sum(e['survived'] for e in es):>8} {lost.get('rows', 0):>9} {lost.get('audit', 0):>10} "
              f"{lost.get('acked_feedback', 0):>10} {max((e['recover_s'] for e in es), default=0):>15}")
    n = r["decoder_faults"]
    print(f"{'decoder_raise':<12} {n:>5} {n if r['calls_left_open'] == 0 else 0:>8} {'(loss counted above)':>31}")
    before = r["lost"].get("(before any fault)", {})
    if before:
        print(f"lost before any fault: {before}")
    print(f"calls left open after the final stop: {r['calls_left_open']}")
    print(f"callcue audit verify: rc={r['audit_verify_rc']} {' '.join(r['audit_verify'])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="CallCue under injected faults")
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--every", type=float, default=6.0, help="seconds between faults")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds of clean running first")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--decoder-raise-every", type=int, default=400, help="every Nth recognizer call raises; 0 = off")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args(argv)
    r = asyncio.run(run(args))
    print_table(r)
    if args.json_out:
        args.json_out.write_text(json.dumps(r, indent=1, default=str))
    total = sum(sum(v.values()) for v in r["lost"].values())
    return 0 if total == 0 and r["audit_verify_rc"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
