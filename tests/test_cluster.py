"""Several CallCue nodes on one Redis and one PostgreSQL, on loopback.

Real redis-server, real PostgreSQL, real Twilio streams, real Whisper: an agent or supervisor
connected to one node sees the calls another node holds; approvals and list queries reach the
node that holds the call; the kill switch thrown on one node stops the playbook on all; the
audit trail written by both nodes is one valid chain; a node killed mid-call has its call
resumed by another when the platform reconnects, with nothing stored twice or lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from callcue.audit.log import AuditLog
from callcue.clients.audio_file import read_call_audio
from callcue.clients.audiohook_client import (
    STEREO_PCMU,
    AudioHookSession,
    connect_audiohook,
    media_frames,
)
from callcue.clients.demo import free_port
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, mulaw_frames
from callcue.store.db import Database
from tests.conftest import require_shared
from tests.serverkit import (
    SUPERVISOR_TOKEN,
    agent,
    espeak_wav,
    key_file,
    make_settings,
    real_call,
    server,
)
from tests.test_decisions_e2e import (  # noqa: F401 - fixture
    APPROVAL_PLAYBOOKS,
    Receiver,
    live_call,
    receiver,
    sup_http,
)
from tests.test_durability import ready

pytestmark = pytest.mark.slow


@pytest.fixture
def approval_playbooks(tmp_path: Path, receiver: Receiver) -> Path:  # noqa: F811 - the imported fixture
    """The approval-gated playbooks of the decision tests, posting to `receiver`."""
    pdir = tmp_path / "playbooks"
    pdir.mkdir()
    (pdir / "test.yaml").write_text(APPROVAL_PLAYBOOKS.format(recv=receiver.url))
    return pdir


def node_settings(tmp_path: Path, name: str, pg: str, rd: str, playbooks: Path) -> Any:
    d = tmp_path / name
    d.mkdir()
    key = key_file(tmp_path / "cluster.key")  # every node of a cluster holds the same keys ([encryption], docs/deploy.md)
    return make_settings(d, storage={"url": pg}, decision={"playbooks_dir": str(playbooks)}, encryption={"key_file": str(key)},
                         cluster={"redis_url": rd, "node_id": name, "heartbeat_s": 0.5, "owner_ttl_s": 3})  # fmt: skip


async def test_agents_anywhere_controls_reach_the_owner_kill_switch_everywhere(
        tmp_path: Path, backends: tuple[str, str], receiver: Receiver, approval_playbooks: Path) -> None:  # fmt: skip  # noqa: F811 - the imported fixture
    pg, rd = backends
    recv, pdir = receiver, approval_playbooks
    manager = read_call_audio(espeak_wav("I want to speak to a manager.", tmp_path / "m.wav", pad=(0.3, 0.9)))
    async with server(node_settings(tmp_path, "node-a", pg, rd, pdir)) as (base_a, _), \
            server(node_settings(tmp_path, "node-b", pg, rd, pdir)) as (base_b, _), \
            agent(base_a, SUPERVISOR_TOKEN) as sup_a, agent(base_a) as desk_a, \
            sup_http(base_a) as http_a, sup_http(base_b) as http_b:  # fmt: skip
        nodes = (await http_a.get("/healthz")).json()
        assert nodes["status"] == "ok"
        async with live_call(base_b) as call:  # the platform streams to node B only
            await call.say(manager)
            # the supervisor on A gets B's approval request, the agent on A B's transcript
            req = await sup_a.wait_for(lambda e: e.get("type") == "approval_request"
                                       and e["playbook_id"] == "manager_callback", timeout=60)  # fmt: skip
            assert req["call_id"] == call.call_id
            aid = req["actions"][0]["action_id"]
            final = await desk_a.wait_for(lambda e: e.get("type") == "transcript" and e["is_final"], timeout=60)
            assert final["call_id"] == call.call_id and "manager" in final["text"].lower()
            started = next(e for e in desk_a.events if e.get("type") == "call_started")
            assert started["call_id"] == call.call_id
            # the pending approval B holds is listed by A
            pending = (await http_a.get("/api/v1/actions", params={"state": "pending_approval"})).json()
            assert [a["action_id"] for a in pending["actions"]] == [aid], pending
            # approve on A: it runs on B, which holds the call; the webhook fires once
            await sup_a.send({"type": "approve", "action_id": aid, "note": "from node A"})
            ok = await sup_a.wait_for(lambda e: e.get("type") in ("approve_result", "error"))
            assert ok["type"] == "approve_result", ok
            posts = await recv.wait_for(1)
            assert posts[0]["json"]["call_id"] == call.call_id
            await sup_a.wait_for(lambda e: e.get("type") == "action_update" and e["action_id"] == aid
                                 and e["state"] == "succeeded")  # fmt: skip
            # kill switch on A: B stops the playbook at once
            r = await http_a.post("/api/v1/playbooks/manager_callback/pause", json={"reason": "cluster test"})
            assert r.status_code == 200, r.text
            for _ in range(50):
                pbs = (await http_b.get("/api/v1/playbooks")).json()["playbooks"]
                if next(p for p in pbs if p["id"] == "manager_callback")["paused"]:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"node B never paused manager_callback: {pbs}")
            before = len([e for e in sup_a.events if e.get("type") == "approval_request"])
            await call.say(manager)
            await desk_a.wait_for(lambda e: e.get("type") == "transcript" and e["is_final"]
                                  and e is not final, timeout=60)  # fmt: skip
            await asyncio.sleep(1.0)
            assert len([e for e in sup_a.events if e.get("type") == "approval_request"]) == before
            assert len(recv.snapshot()) == 1
        await desk_a.wait_for(lambda e: e.get("type") == "call_ended", timeout=60)
    # both nodes wrote to one audit trail, and it is one valid chain
    db = await Database.connect(pg)
    try:
        log = AuditLog(db)
        result = await log.verify()
        assert result.ok, result
        kinds = [e.kind async for e in log.iter_entries(call_id=call.call_id)]
        assert "action_approved" in kinds and "action_succeeded" in kinds
        paused = [e async for e in log.iter_entries(kind=["paused"])]
        assert len(paused) == 1, "the kill switch is audited once, by the node that threw it"
    finally:
        await db.close()


async def test_a_session_continued_on_another_node_is_handed_over_not_ended(
        tmp_path: Path, backends: tuple[str, str]) -> None:  # fmt: skip
    """AudioHook closes with reason=reconnect on node A (A keeps the call for the reconnect
    grace) and continues the session on node B: B takes the lease, A lets the call go without
    ending it, and the call ends once, when the platform ends it on B."""
    pg, rd = backends
    audio = real_call(require_shared())
    frames = media_frames(audio, STEREO_PCMU)
    half = len(frames) // 2
    pdir = Path(__file__).resolve().parents[1] / "config" / "playbooks"
    sa, sb = (node_settings(tmp_path, n, pg, rd, pdir) for n in ("node-a", "node-b"))
    conv = str(uuid.uuid4())
    async with server(sa) as (base_a, app_a), server(sb) as (base_b, app_b), agent(base_a, SUPERVISOR_TOKEN) as desk:
        calls_a, calls_b = app_a.state.runtime.get().calls, app_b.state.runtime.get().calls
        sid1 = str(uuid.uuid4())
        async with connect_audiohook(f"{base_a}/ws/audiohook", sid1) as ws:
            first = AudioHookSession(ws, sid1)
            await first.open(conv)
            await first.stream(frames[:half], speed=4.0)
            await first.close("reconnect")
        assert conv in calls_a.calls  # lingering on A for the continued session
        sid2 = str(uuid.uuid4())
        async with connect_audiohook(f"{base_b}/ws/audiohook", sid2) as ws:
            second = AudioHookSession(ws, sid2)
            opened = await second.open(conv, continued=[{"id": sid1, "serverseq": first.serverseq, "clientseq": first.seq}])
            assert opened["type"] == "opened"
            for _ in range(100):  # well inside A's 10 s reconnect grace
                if conv not in calls_a.calls and conv in calls_b.calls:
                    break
                await asyncio.sleep(0.05)
            assert conv not in calls_a.calls and conv in calls_b.calls, "A did not hand the call over"
            assert not [e for e in desk.events if e.get("type") == "call_ended"], "handing over must not end the call"
            await second.stream(frames[half:], speed=4.0)
            await second.close("end")
        await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == conv, 90)
        await asyncio.sleep(0.5)
        assert len([e for e in desk.events if e.get("type") == "call_ended" and e["call_id"] == conv]) == 1
        finals = [e for e in desk.events if e.get("type") == "transcript" and e["is_final"] and e["call_id"] == conv]
        segs = [(f["channel"], f["segment_id"]) for f in finals]
        assert len(segs) == len(set(segs)) and finals[-1]["end"] <= audio.duration + 2.0


async def test_an_approval_pending_on_the_old_node_is_decided_on_the_new_one(
        tmp_path: Path, backends: tuple[str, str], receiver: Receiver, approval_playbooks: Path) -> None:  # fmt: skip  # noqa: F811 - the imported fixture
    """A call moves from A to B with a supervisor approval still pending: B brings it back from
    the audit log, A forgets it, and the approval sent to A runs once, on B."""
    pg, rd = backends
    recv, pdir = receiver, approval_playbooks
    manager = read_call_audio(espeak_wav("I want to speak to a manager.", tmp_path / "m.wav", pad=(0.3, 1.5)))
    frames = media_frames(manager, STEREO_PCMU)
    conv = str(uuid.uuid4())
    async with server(node_settings(tmp_path, "node-a", pg, rd, pdir)) as (base_a, app_a), \
            server(node_settings(tmp_path, "node-b", pg, rd, pdir)) as (base_b, app_b), \
            agent(base_a, SUPERVISOR_TOKEN) as sup, sup_http(base_b) as http_b:  # fmt: skip
        engine_a, engine_b = app_a.state.runtime.get().engine, app_b.state.runtime.get().engine
        sid1 = str(uuid.uuid4())
        async with connect_audiohook(f"{base_a}/ws/audiohook", sid1) as ws:
            first = AudioHookSession(ws, sid1)
            await first.open(conv)
            await first.stream(frames, speed=2.0)
            req = await sup.wait_for(lambda e: e.get("type") == "approval_request"
                                     and e["playbook_id"] == "manager_callback", timeout=60)  # fmt: skip
            aid = req["actions"][0]["action_id"]
            assert engine_a.action(aid).state == "pending_approval"
            # a per-call switch thrown while the call is on A must hold on B too
            await sup.send({"type": "pause_playbook", "playbook_id": "cancel_hold", "call_id": conv})
            paused = await sup.wait_for(lambda e: e.get("type") in ("pause_playbook_result", "error"))
            assert paused["type"] == "pause_playbook_result", paused
            await first.close("reconnect")
        sid2 = str(uuid.uuid4())
        async with connect_audiohook(f"{base_b}/ws/audiohook", sid2) as ws:
            second = AudioHookSession(ws, sid2)
            await second.open(conv, continued=[{"id": sid1, "serverseq": first.serverseq, "clientseq": first.seq}])
            for _ in range(100):
                if aid in {r.action_id for r in engine_b.actions()}:
                    break
                await asyncio.sleep(0.05)
            assert engine_b.action(aid).state == "pending_approval", "B did not restore the pending approval"
            assert engine_b.is_paused("cancel_hold", conv) and not engine_b.is_paused("cancel_hold")
            assert aid not in {r.action_id for r in engine_a.actions()}, "A still holds the moved approval"
            pending = (await http_b.get("/api/v1/actions", params={"state": "pending_approval"})).json()["actions"]
            assert [a["action_id"] for a in pending] == [aid]
            await sup.send({"type": "approve", "action_id": aid, "note": "after the move"})
            ok = await sup.wait_for(lambda e: e.get("type") in ("approve_result", "error"))
            assert ok["type"] == "approve_result", ok
            posts = await recv.wait_for(1)
            assert posts[0]["json"]["call_id"] == conv
            await second.close("end")
        await asyncio.sleep(1.0)
        assert len(recv.snapshot()) == 1, "the approved action ran more than once"


# ----------------------------------------------------------------------------- failover
def spawn_node(tmp_path: Path, name: str, port: int, pg: str, rd: str) -> subprocess.Popen:
    cfg = tmp_path / f"{name}.toml"
    repo_cfg = Path(__file__).resolve().parents[1] / "config" / "callcue.toml"
    text = repo_cfg.read_text()
    text = text.replace('redis_url = ""', f'redis_url = "{rd}"').replace('node_id = ""', f'node_id = "{name}"')
    text = text.replace("heartbeat_s = 5.0", "heartbeat_s = 0.5").replace("owner_ttl_s = 15.0", "owner_ttl_s = 3.0")
    text = text.replace("port = 9092", f"port = {free_port()}")  # each node its own AudioSocket listener
    # relative file names (phrases, playbooks) resolve against the repo's config folder
    cfg.write_text(f'config_dir = "{repo_cfg.parent}"\n' + text)
    log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "callcue.cli", "serve", "--config", str(cfg), "--port", str(port),
                             "--storage-url", pg], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)  # fmt: skip


async def test_killed_node_call_resumes_on_another_node(tmp_path: Path, backends: tuple[str, str]) -> None:
    pg, rd = backends
    audio = read_call_audio(require_shared("speech", "telephone_sim", "jfk__jfk.wav"))
    frames = list(mulaw_frames(audio))
    pa, pb = free_port(), free_port()
    a, b = spawn_node(tmp_path, "node-a", pa, pg, rd), spawn_node(tmp_path, "node-b", pb, pg, rd)
    msgs = TwilioMessages(call_sid="CAfailover", agent_id="agent-1")
    try:
        await asyncio.gather(ready(pa, a, path="/readyz"), ready(pb, b, path="/readyz"))
        async with agent(f"ws://127.0.0.1:{pb}") as desk_b:  # the agent's desktop is on B
            async with connect_twilio(f"ws://127.0.0.1:{pa}/ws/twilio") as tw:
                await tw.send(msgs.connected())
                await tw.send(msgs.start(["inbound"]))
                sent = 0
                t0 = time.monotonic()
                for offset, fr in frames:  # real time until B's desktop shows A's first final
                    delay = t0 + offset - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    for track, payload in fr.items():
                        await tw.send(msgs.media(track, int(offset * 1000), payload))
                    sent += 1
                    if any(e.get("type") == "transcript" and e["is_final"] for e in desk_b.events):
                        break
                assert sent < len(frames), "no final reached node B's desktop before the audio ran out"
                os.kill(a.pid, signal.SIGKILL)
                killed_at = time.monotonic()
            before = [e for e in desk_b.events if e.get("type") == "transcript" and e["is_final"]]
            # the platform reconnects the same call to the surviving node and sends the rest
            async with connect_twilio(f"ws://127.0.0.1:{pb}/ws/twilio") as tw:
                msgs2 = TwilioMessages(call_sid="CAfailover", agent_id="agent-1")
                await tw.send(msgs2.connected())
                await tw.send(msgs2.start(["inbound"]))
                t0 = time.monotonic()
                base_offset = frames[sent][0]
                for offset, fr in frames[sent:]:
                    delay = t0 + (offset - base_offset) / 4 - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    for track, payload in fr.items():  # a new stream's timestamps start at 0
                        await tw.send(msgs2.media(track, int((offset - base_offset) * 1000), payload))
                first_partial = await desk_b.wait_for(lambda e: e.get("type") == "transcript" and not e["is_final"]
                                                      and e["start"] >= before[-1]["end"] - 0.05, timeout=60)  # fmt: skip
                resumed_s = time.monotonic() - killed_at
                await tw.send(msgs2.stop())  # the stop flushes the last segment's final
                first_after = await desk_b.wait_for(lambda e: e.get("type") == "transcript" and e["is_final"]
                                                    and e not in before, timeout=60)  # fmt: skip
                await tw.wait_closed()
            assert first_after["call_id"] == "CAfailover" and first_partial["call_id"] == "CAfailover"
            assert first_after["start"] >= before[-1]["end"] - 0.05, "the call clock goes on where A left it"
            await desk_b.wait_for(lambda e: e.get("type") == "call_ended", timeout=60)
        async with httpx.AsyncClient() as c:
            rec = (await c.get(f"http://127.0.0.1:{pb}/api/v1/calls/CAfailover",
                               headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"})).json()  # fmt: skip
        finals = rec["transcripts"]  # only finals are stored
        keys = [(t["channel"], t["segment_id"]) for t in finals]
        assert len(keys) == len(set(keys)), f"a segment stored twice: {keys}"
        assert {(t["channel"], t["segment_id"]) for t in before} <= set(keys), "a final A sent was lost"
        text = " ".join(t["text"] for t in finals).lower()
        assert "country" in text, text
        assert max(t["end_s"] for t in finals) <= audio.duration + 0.5, "the resumed clock must not skip ahead"
        print(json.dumps({"resume_s": round(resumed_s, 2)}))
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in (a, b):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
