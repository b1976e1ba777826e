"""The `callcue` command line (typer)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from callcue.config import ConfigError, Settings, load_settings

app = typer.Typer(help="CallCue: real-time agent assist for live phone calls.", no_args_is_help=True,
                  add_completion=False)
models_app = typer.Typer(help="List, verify and fetch ASR models (no sub-command: list).", invoke_without_command=True)
app.add_typer(models_app, name="models")

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML config file (default: config/callcue.toml)")


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e


def _logging(settings: Settings, quiet: bool = False) -> None:
    from callcue.logs import setup_logging

    setup_logging("WARNING" if quiet else settings.logging.level, settings.logging.json_format)


@app.command()
def serve(config: Path | None = ConfigOpt, host: str | None = None, port: int | None = None,
          storage_url: str | None = typer.Option(None, help="database URL instead of the config's [storage] url"),
          audiosocket_port: int | None = typer.Option(None, min=0, max=65535,
                                                         help="AudioSocket TCP port instead of the config's (0 = any free port)")) -> None:
    """Run the server (Starlette under uvicorn)."""
    import uvicorn

    from callcue.app import create_app

    s = _settings(config)
    if host:
        s.server.host = host
    if port is not None:
        s.server.port = port
    if storage_url:
        s.storage.url = storage_url
    if audiosocket_port is not None:
        s.platforms.audiosocket.port = audiosocket_port
    from callcue.asr.select import ModelNotFoundError, choose_engine

    try:
        choose_engine(s.asr)  # an unknown engine or a missing model: one line now, not a traceback later
    except (ValueError, ModelNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    busy = _ports_in_use(s)
    if busy:
        typer.echo(f"error: {busy}", err=True)
        raise typer.Exit(2)
    _logging(s)
    try:
        uvicorn.run(create_app(s), host=s.server.host, port=s.server.port, log_config=None,
                    ws_max_size=4 * s.server.max_frame_bytes, lifespan="on", **s.tls())  # type: ignore[arg-type]
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e


def _ports_in_use(s: Settings) -> str | None:
    """One clear line when a port this server needs is taken (another CallCue, `make demo`)."""
    import socket

    wanted = [("HTTP", s.server.host, s.server.port, "--port or [server] port")]
    if s.platforms.audiosocket.enabled and s.platforms.audiosocket.port:
        wanted.append(("AudioSocket", s.platforms.audiosocket.host, s.platforms.audiosocket.port,
                       "--audiosocket-port or [platforms.audiosocket] port"))  # fmt: skip
    for what, host, port, how in wanted:
        if not port:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as e:
                return f"{what} port {host}:{port} is already in use ({e.strerror}): stop what holds it, or choose another with {how}"
    return None


@app.command()
def replay(wav: Path = typer.Argument(..., exists=True, dir_okay=False, help="16-bit WAV; mono = customer, stereo = customer left / agent right"),
           speed: float = typer.Option(1.0, min=0, help="playback speed; 1 = real time, 0 = as fast as possible"),
           partials: bool = typer.Option(True, help="print partial transcripts"),
           config: Path | None = ConfigOpt) -> None:
    """Stream a recording through the pipeline at real-time pace and print events."""
    from callcue.clients.replay import replay as run

    s = _settings(config)
    _logging(s, quiet=True)
    try:
        asyncio.run(run(wav, s, speed=speed, show_partials=partials))
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e


@app.command()
def demo(speed: float = typer.Option(1.0, min=0, help="playback speed of the demo call; 1 = real time, 0 = as fast as possible"),
         partials: bool = typer.Option(True, help="print partial transcripts"),
         wav: Path | None = typer.Option(None, help="another call to play instead of the shipped demo"),
         port: int | None = typer.Option(None, help="port (default: from config)"),
         serve_after: bool = typer.Option(True, "--serve/--no-serve",
                                          help="keep the server running after the demo call (Ctrl-C stops it)"),
         config: Path | None = ConfigOpt) -> None:
    """Start the server, play the shipped demo call into it as Twilio would, and keep serving."""
    from callcue.clients.demo import demo as run

    s = _settings(config)
    if port is not None:
        s.server.port = port
    _logging(s, quiet=True)
    try:
        events = asyncio.run(run(s, wav=wav, speed=speed, show_partials=partials, keep_serving=serve_after))
    except KeyboardInterrupt:
        typer.echo("\nstopped")
        return
    if not any(e.get("type") == "hint" for e in events):
        typer.echo("warning: the demo produced no hint", err=True)
        raise typer.Exit(1)


@app.command()
def play(wav: Path = typer.Argument(..., exists=True, dir_okay=False, help="16-bit WAV; mono = customer, stereo = customer left / agent right"),
         url: str = typer.Option("http://127.0.0.1:8080", help="the running server's base URL"),
         speed: float = typer.Option(1.0, min=0, help="playback speed; 1 = real time, 0 = as fast as possible"),
         call_id: str | None = typer.Option(None, help="the call's id (Twilio CallSid); default: a new one"),
         agent: str = typer.Option("agent-1", help="agent the call is for (Twilio customParameters agent_id)"),
         partials: bool = typer.Option(True, help="print partial transcripts"),
         config: Path | None = ConfigOpt) -> None:
    """Play a recording into a running server as a Twilio Media Stream and print what the desk is sent.

    Tokens: $CALLCUE_AGENT_TOKEN and $CALLCUE_TWILIO_AUTH_TOKEN, else the demo ones in the config."""
    import os

    from callcue.clients.demo import agent_token
    from callcue.clients.play import play as run

    if speed < 0:
        typer.echo("error: --speed must be 0 (as fast as possible) or above", err=True)
        raise typer.Exit(2)
    s = _settings(config)
    desk = os.environ.get("CALLCUE_AGENT_TOKEN") or agent_token(s, agent)
    twilio = os.environ.get("CALLCUE_TWILIO_AUTH_TOKEN") or next(iter(s.platforms.twilio.auth_tokens), "")
    try:
        events = asyncio.run(run(wav, url, desk, twilio, speed=speed, agent_id=agent, call_id=call_id, show_partials=partials))
    except (OSError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    if not any(e.get("type") == "call_ended" for e in events):
        raise typer.Exit(1)


@app.command()
def ingest(paths: list[Path] = typer.Argument(..., help="recordings (WAV: PCM, mu-law, A-law; FLAC) or folders of them"),
           jobs: int = typer.Option(2, help="calls processed at once"),
           layout: str | None = typer.Option(None, help="channels: stereo (customer left), stereo-agent-left, mono, mono-agent"),
           agent: str | None = typer.Option(None, help="agent id to file the calls under"),
           as_json: bool = typer.Option(False, "--json", help="one JSON object per call on stdout (scorecard, summary)"),
           storage_url: str | None = typer.Option(None, help="database URL instead of the config's [storage] url"),
           config: Path | None = ConfigOpt) -> None:
    """Run recorded calls through the pipeline as fast as the machine allows, store everything a
    live call stores, score and summarize each; a second run skips what is done."""
    from tqdm import tqdm

    from callcue.clients.ingest import ingest as run
    from callcue.clients.ingest import print_json, recordings

    s = _settings(config)
    if storage_url:
        s.storage.url = storage_url
    _logging(s, quiet=True)
    try:
        files = recordings(paths)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    if not files:
        typer.echo("error: no recordings found", err=True)
        raise typer.Exit(2)

    def line(r: dict) -> None:
        if as_json:
            print_json(r)
        else:
            sc = r.get("scorecard") or {}
            out = (r.get("summary") or {}).get("outcome") or {}
            tqdm.write(f"{r['status']:<16} {r['source']}  score {sc.get('score', '–')}  outcome {out.get('outcome', '–')}"
                       + (f"  ({r['error']})" if r.get("error") else ""), file=sys.stderr)

    with tqdm(total=len(files), unit="call", file=sys.stderr, disable=None) as bar:
        results = asyncio.run(run(files, s, jobs=jobs, layout=layout, agent_id=agent, on_done=line, progress=bar))
    failed = [r for r in results if r["status"] == "failed"]
    typer.echo(f"{len(results) - len(failed)} of {len(results)} recordings done"
               f"{f', {len(failed)} failed' if failed else ''}", err=True)
    if failed:
        raise typer.Exit(1)


@models_app.command("list")
def models_list(config: Path | None = ConfigOpt,
                load: bool = typer.Option(True, help="load each model with its engine to prove it works")) -> None:
    """List the ASR engines and models found, verify each, and say which one `auto` picks."""
    from callcue.asr.model_store import (
        format_size,
        list_models,
        model_search_dirs,
        purpose,
        verify,
    )
    from callcue.asr.select import ModelNotFoundError, choose_engine

    s = _settings(config)
    extra = [Path(s.asr.vosk_model_path).parent] if s.asr.vosk_model_path else []
    found = list_models(model_search_dirs(extra))
    if not found:
        typer.echo("no ASR models found")
    for m in found:
        m = verify(m, load=load)
        status = "OK " if m.verified else "BAD"
        typer.echo(f"{status} {m.engine:<9} {m.language:<6} {m.name:<36} {format_size(m.size_bytes):>9}  {purpose(m)}"
                   + (f"  ({m.problem})" if m.problem else ""))
        typer.echo(f"    {m.path}")
    try:
        typer.echo(choose_engine(s.asr).reason)
    except ModelNotFoundError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


@models_app.callback()
def models_default(ctx: typer.Context, config: Path | None = ConfigOpt) -> None:
    """`callcue models` alone lists and verifies what is installed."""
    if ctx.invoked_subcommand is None:
        models_list(config=config, load=True)


@models_app.command("fetch")
def models_fetch(name: str = typer.Argument("vosk-model-small-en-us-0.15"),
                 dest: Path | None = typer.Option(None, help="directory to unpack into (default ~/.cache/callcue/models)")) -> None:
    """Download an official Vosk model (checksum verified, with a progress bar); needs the internet.
    Not needed to run: Moonshine (the default engine) and Whisper ship as Python packages."""
    from callcue.asr.model_store import ModelFetchError, fetch_vosk

    try:
        path = fetch_vosk(name, dest=dest, progress=True)
    except ModelFetchError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"installed {path}")


@app.command("rewrap-keys")
def rewrap_keys(config: Path | None = ConfigOpt) -> None:
    """Key rotation: re-wrap every data key (the database's and the recordings') under the
    first key of `[encryption]`; the keys after it must still open them. Then drop the old key."""
    from callcue.privacy.keys import load_key_ring
    from callcue.privacy.vault import TextVault
    from callcue.store.db import Database
    from callcue.wiring import open_recordings

    s = _settings(config)
    try:
        ring = load_key_ring(s, create=False)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e

    async def go() -> int:
        db = await Database.connect(s.storage.url)
        try:
            vault = TextVault(ring)
            await db.use_vault(vault)
            return await vault.rewrap(db, ring)
        finally:
            await db.close()

    try:
        n = asyncio.run(go())
        rec = open_recordings(s, ring)
        files = rec.rewrap(ring) if rec is not None else 0
    except Exception as e:
        typer.echo(f"error: {type(e).__name__}: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"re-wrapped {n} data key(s) and {files} recording(s) under key {ring.current}; "
               "the older keys may now be removed")


def _mount_optional() -> None:
    """Sub-commands contributed by other layers (evaluation, audit)."""
    try:
        from callcue.evaluation.cli import eval_app

        app.add_typer(eval_app, name="eval", help="Evaluate understanding and ASR on ../shared/data.")
    except ImportError:
        pass
    try:
        from callcue.knowledge.cli import kb_app

        app.add_typer(kb_app, name="kb", help="Knowledge base versions: import, diff, promote, roll back, search.")
    except ImportError:
        pass
    try:
        from callcue.audit.cli import audit_app

        app.add_typer(audit_app, name="audit", help="Verify, query and export the audit trail.")
    except ImportError:
        pass


_mount_optional()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
