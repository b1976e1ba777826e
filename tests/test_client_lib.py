"""The JavaScript client library (`client_js/callcue.js`): its own node tests against a real
server, and the library as a user gets it: packed, installed from the tarball into a fresh npm
project (its dependencies from the registry), with its example run against a live call."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from callcue.clients.audio_file import read_call_audio
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, stream_call
from tests.serverkit import AGENT_TOKEN, make_settings, server

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "client_js"
DEMO = REPO / "server" / "callcue" / "data" / "demo_call.wav"

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="node and npm are needed (scripts/install-system-deps.sh)")


def _callcue_bin() -> str:
    found = Path(sys.executable).with_name("callcue")
    return str(found) if found.exists() else (shutil.which("callcue") or "callcue")


@pytest.mark.slow
def test_the_library_tests_pass_against_a_real_server(tmp_path: Path) -> None:
    if not (CLIENT / "node_modules" / "ws").exists():
        pytest.skip("client_js dependencies not installed (make test runs npm install)")
    env = {**os.environ, "CALLCUE_BIN": _callcue_bin(), "CALLCUE_TMP": str(tmp_path)}
    p = subprocess.run(["node", "--test", "--test-reporter=tap", "tests/lib.test.mjs"], cwd=CLIENT, env=env,
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    print(p.stdout[-6000:])
    assert p.returncode == 0, p.stdout[-8000:] + p.stderr[-4000:]
    assert "# fail 0" in p.stdout and "# pass 4" in p.stdout, p.stdout[-3000:]


@pytest.mark.slow
async def test_the_packed_library_installs_into_a_fresh_project_and_its_example_runs(tmp_path: Path) -> None:
    pack = subprocess.run(["npm", "pack", str(CLIENT), "--pack-destination", str(tmp_path), "--json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert pack.returncode == 0, pack.stderr
    info = json.loads(pack.stdout)[0]
    shipped = {f["path"] for f in info["files"]}
    assert {"callcue.js", "callcue.d.ts", "package.json", "examples/print-events.mjs"} <= shipped, shipped
    assert not any(p.startswith(("tests/", "node_modules/")) or p.endswith(".html") for p in shipped), shipped
    project = tmp_path / "desk"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "my-desk", "version": "1.0.0", "type": "module"}))
    env = {**os.environ, "npm_config_cache": str(tmp_path / "npm-cache")}
    inst = subprocess.run(["npm", "install", "--no-audit", "--no-fund", str(tmp_path / info["filename"])], cwd=project,
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    if inst.returncode != 0 and "ENOTFOUND" in inst.stderr + inst.stdout:
        pytest.skip("the npm registry is not reachable")
    assert inst.returncode == 0, inst.stderr[-3000:]
    example = project / "node_modules" / "callcue-client" / "examples" / "print-events.mjs"
    settings = make_settings(tmp_path)
    audio = read_call_audio(DEMO)
    audio.channels = {ch: pcm[: 8000 * 40] for ch, pcm in audio.channels.items()}
    async with server(settings) as (base, _app):
        proc = await asyncio.create_subprocess_exec(
            "node", str(example), "--once", cwd=project, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "CALLCUE_URL": f"{base}/ws/agent", "CALLCUE_TOKEN": AGENT_TOKEN})  # fmt: skip
        assert proc.stdout is not None
        head = [await asyncio.wait_for(proc.stdout.readline(), 30) for _ in range(3)]  # connecting, open, subscribed
        assert b"[subscribed]" in head[-1], head
        async with connect_twilio(f"{base}/ws/twilio") as tw:
            await stream_call(tw, audio, TwilioMessages(agent_id="agent-1", call_sid="example-call"), speed=3.0)
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    text = b"".join(head).decode() + out.decode()
    assert proc.returncode == 0, text + err.decode()
    assert "callcue.v1.msgpack" in text  # the installed @msgpack/msgpack was picked up
    assert "[call] example-call started" in text and "[call] example-call ended" in text, text
    assert "[hint]" in text and "[customer]" in text, text
