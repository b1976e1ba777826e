"""Run a real CallCue server on loopback for a test, with its own database and port."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from callcue.clients.demo import free_port, running_server
from callcue.config import REPO_CONFIG_DIR, Settings, load_settings

AGENT_TOKEN = "demo-agent-token"
SUPERVISOR_TOKEN = "demo-supervisor-token"


def key_file(path: Path) -> Path:
    """An encryption key file at `path` (made once; base64 of 32 bytes, as an operator writes
    one): nodes that share a database share it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return path


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    s = load_settings(REPO_CONFIG_DIR / "callcue.toml")
    data = s.model_dump()
    data["storage"]["url"] = f"sqlite:///{tmp_path}/callcue.db"
    data["server"]["port"] = free_port()
    data["platforms"]["audiosocket"]["port"] = free_port()
    data["logging"]["json_format"] = False
    for k, v in sections.items():
        for key, val in v.items():  # a sub-section (platforms.audiohook) is merged, not replaced
            if isinstance(val, dict) and isinstance(data[k].get(key), dict):
                data[k][key].update(val)
            else:
                data[k][key] = val
    data["config_dir"] = str(REPO_CONFIG_DIR)
    if not data["storage"]["url"].startswith("sqlite:") and not data["encryption"]["key_file"]:
        # beside a SQLite file a key is made at first start; for PostgreSQL it would land in the
        # working directory's var/, so the test names one in its own directory, as an operator would
        data["encryption"]["key_file"] = str(key_file(tmp_path / "keys" / "data.key"))
    if not data["storage"]["url"].startswith("sqlite:") and not data["recording"]["dir"]:
        data["recording"]["dir"] = str(tmp_path / "recordings")  # not the working directory's var/
    return Settings.model_validate(data)


@contextlib.asynccontextmanager
async def server(settings: Settings) -> AsyncIterator[tuple[str, Any]]:
    async with running_server(settings) as (base, app):
        yield base, app


class AgentClient:
    """A desktop connected to /ws/agent that records every event it receives."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.events.append(json.loads(raw) if isinstance(raw, str) else __import__("msgpack").unpackb(raw))
                self._new.set()
        except Exception:
            pass

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj))

    async def wait_for(self, pred: Any, timeout: float = 30.0) -> dict[str, Any]:
        async def _wait() -> dict[str, Any]:
            seen = 0
            while True:
                for ev in self.events[seen:]:
                    if pred(ev):
                        return ev
                seen = len(self.events)
                self._new.clear()
                await self._new.wait()
        return await asyncio.wait_for(_wait(), timeout)

    def of_type(self, t: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == t]


@contextlib.asynccontextmanager
async def agent(base: str, token: str = AGENT_TOKEN, subscribe: str | None = "*",
                subprotocol: str = "callcue.v1.json") -> AsyncIterator[AgentClient]:
    async with connect(f"{base}/ws/agent", additional_headers={"Authorization": f"Bearer {token}"},
                       subprotocols=[subprotocol]) as ws:
        c = AgentClient(ws)
        await c.wait_for(lambda e: e.get("type") == "hello")
        if subscribe:
            await ws.send(json.dumps({"type": "subscribe", "call_id": subscribe}) if subprotocol.endswith("json")
                          else __import__("msgpack").packb({"type": "subscribe", "call_id": subscribe}))
            await c.wait_for(lambda e: e.get("type") == "subscribed")
        yield c


def espeak_wav(text: str, path: Path, rate: int = 8000, voice: str = "en-us", pad: tuple[float, float] = (0.4, 1.0)) -> Path:
    """Synthesize speech with espeak-ng and convert to 16-bit mono `rate` with sox."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(rate), "-b", "16", "-c", "1", str(path), "pad", str(pad[0]), str(pad[1])], check=True)
    raw.unlink()
    return path


def quick_disclosure(tmp_path: Path, deadline_s: float = 6.0) -> dict[str, Any]:
    """`understanding` overrides whose recording notice is due after `deadline_s`: a short
    real recording then earns the agent a real hint (nobody in it reads the notice)."""
    import yaml

    risks = yaml.safe_load((REPO_CONFIG_DIR / "risks.yaml").read_text())
    for d in risks["compliance"]["disclosures"]:
        if d["id"] == "recording_notice":
            d["deadline_s"] = deadline_s
    p = tmp_path / "risks.yaml"
    p.write_text(yaml.safe_dump(risks))
    return {"risks_file": str(p)}


def real_call(shared: Path) -> Any:
    """A two-party call of real telephone-band speech: JFK's inaugural line from the
    customer, CMU ARCTIC sentences from the agent, interleaved as turns (8 kHz)."""
    import numpy as np

    from callcue.clients.audio_file import CallAudio, read_call_audio

    def clip(name: str) -> Any:
        return read_call_audio(shared / "speech" / "telephone_sim" / f"{name}.wav").channels["customer"]

    rate = 8000
    agent_a, agent_b, cust = clip("cmu_arctic__axb_a0004"), clip("cmu_arctic__aew_a0003"), clip("jfk__jfk")
    n = int(rate * 0.5) + len(agent_a) + int(rate * 0.3) + len(cust) + int(rate * 0.3) + len(agent_b) + rate
    a, c = np.zeros(n, np.int16), np.zeros(n, np.int16)
    at = int(rate * 0.5)
    a[at:at + len(agent_a)] = agent_a
    at += len(agent_a) + int(rate * 0.3)
    c[at:at + len(cust)] = cust
    at += len(cust) + int(rate * 0.3)
    a[at:at + len(agent_b)] = agent_b
    return CallAudio(rate, {"customer": c, "agent": a})
