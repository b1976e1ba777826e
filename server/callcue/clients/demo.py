"""`callcue demo`: the whole system in one command.

Starts the real server (uvicorn, loopback), connects an agent desktop client to `/ws/agent`,
and plays the shipped demo call into `/ws/twilio` exactly as Twilio Media Streams would, at
real-time pace. What prints is what an agent's screen would receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import uvicorn
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from callcue.app import create_app
from callcue.clients.audio_file import read_call_audio
from callcue.clients.printer import EventPrinter
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, stream_call
from callcue.config import Settings


def demo_call_path() -> Path:
    return Path(str(resources.files("callcue") / "data" / "demo_call.wav"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def scratch_settings(folder: Path, asr_engine: str | None = None) -> Settings:
    """The shipped config with its database in `folder` and free loopback ports: a runtime
    for a batch job or a benchmark that touches nothing of the user's (var/, port 8080)."""
    from callcue.config import REPO_CONFIG_DIR, load_settings

    s = load_settings(REPO_CONFIG_DIR / "callcue.toml")
    d = s.model_dump()
    d["storage"]["url"] = f"sqlite:///{folder}/callcue.db"
    d["server"]["port"] = free_port()
    d["platforms"]["audiosocket"]["port"] = free_port()
    if asr_engine:
        d["asr"]["engine"] = asr_engine
    d["config_dir"] = str(REPO_CONFIG_DIR)
    return Settings.model_validate(d)


@contextlib.asynccontextmanager
async def running_server(settings: Settings):
    """Serve `settings` on loopback until the block exits; yields the base ws:// URL."""
    app = create_app(settings)
    cfg = uvicorn.Config(app, host=settings.server.host, port=settings.server.port, log_config=None,
                         ws_max_size=4 * settings.server.max_frame_bytes, lifespan="on", **settings.tls())  # type: ignore[arg-type]
    server = uvicorn.Server(cfg)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises the startup error
            raise RuntimeError("server exited during startup")
        await asyncio.sleep(0.05)
    try:
        scheme = "wss" if settings.server.tls_cert else "ws"
        yield f"{scheme}://{settings.server.host}:{settings.server.port}", app
    finally:
        server.should_exit = True
        await task


def agent_token(settings: Settings, user_id: str = "agent-1") -> str:
    for t in settings.auth.tokens:
        if t.user_id == user_id:
            return t.token
    raise RuntimeError(f"config has no token for {user_id!r}; add one under [[auth.tokens]]")


def supervisor_token(settings: Settings) -> str | None:
    return next((t.token for t in settings.auth.tokens if t.role == "supervisor"), None)


def page_urls(settings: Settings) -> list[str]:
    """The pages with the demo tokens in the fragment (it never leaves the browser)."""
    root = f"http://{settings.server.host}:{settings.server.port}/agent"
    lines = [f"Agent desktop:      {root}/agent.html#token={agent_token(settings)}"]
    sup = supervisor_token(settings)
    if sup:
        lines.append(f"Supervisor console: {root}/supervisor.html#token={sup}")
        lines.append(f"CX analytics:       {root}/analytics.html#token={sup}")
    return lines


async def demo(settings: Settings, wav: Path | None = None, speed: float = 1.0, show_partials: bool = True,
               out: Callable[[str], None] = print, keep_serving: bool = False) -> list[dict]:
    wav = wav or demo_call_path()
    audio = read_call_audio(wav)
    printer = EventPrinter(out, show_partials, speed=speed)
    events = printer.events
    async with running_server(settings) as (base, app):
        rt = app.state.runtime.get()
        out(f"CallCue serving on http://{settings.server.host}:{settings.server.port}  (ASR: {rt.asr_note})")
        for line in page_urls(settings):
            out(line)
        out(f"Playing {wav.name} ({audio.duration:.0f} s) as a Twilio Media Stream at {speed:g}x ...\n")
        headers = {"Authorization": f"Bearer {agent_token(settings)}"}
        async with connect(f"{base}/ws/agent", additional_headers=headers, subprotocols=[Subprotocol("callcue.v1.json")]) as agent:
            await agent.send(json.dumps({"type": "subscribe", "call_id": "*"}))

            async def listen() -> None:
                async for raw in agent:
                    if printer.feed(json.loads(raw)):
                        return

            listener = asyncio.create_task(listen())
            tokens = settings.platforms.twilio.auth_tokens
            async with connect_twilio(f"{base}/ws/twilio", tokens[0] if tokens else "") as tw:
                printer.started_at = time.time()
                await stream_call(tw, audio, TwilioMessages(agent_id="agent-1"), speed=speed)
            await asyncio.wait_for(listener, timeout=60)
            printer.close()
        hints = [e for e in events if e.get("type") == "hint"]
        finals = [e for e in events if e.get("type") == "transcript" and e.get("is_final")]
        out(f"\nDemo finished: {len(finals)} final transcript segments, {len(hints)} hints.")
        if keep_serving:
            out("\nThe server keeps running: open the pages above (the call stays listed and opens with its "
                "history); play more calls with\n"
                f"  callcue play FILE.wav --url http://{settings.server.host}:{settings.server.port}\n"
                "Ctrl-C stops the server.")
            await asyncio.Event().wait()
    return events
