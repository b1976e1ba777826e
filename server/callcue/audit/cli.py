"""`callcue audit ...`: verify, export and query the audit trail from a shell.

Why a CLI: auditors and on-call engineers need to check the chain and pull a call's history
without running the server or writing SQL. Output is JSON so it pipes into jq and files.
Exit codes: 0 ok, 1 chain broken (verify), 2 bad usage/input.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import typer

from callcue.audit.kpis import kpis as compute_kpis
from callcue.audit.log import AuditLog, canonical_json, to_epoch, verify_entries
from callcue.privacy.keys import reader_key_ring
from callcue.privacy.vault import TextVault
from callcue.store.db import Database, DatabaseError, sqlite_path

audit_app = typer.Typer(no_args_is_help=True, help="Verify, query and export the hash-chained audit trail.")

DbOpt = typer.Option(None, "--db", envvar="CALLCUE_DB_URL",
                     help="sqlite:///path.db or postgresql://... (env CALLCUE_DB_URL; default: the config's [storage] url)")  # fmt: skip


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def configured_db() -> str:
    """The database the server's config names ($CALLCUE_CONFIG or config/callcue.toml), as
    `callcue serve` and `callcue ingest` use it."""
    from callcue.config import ConfigError, load_settings

    try:
        return load_settings(None).storage.url
    except ConfigError as e:
        _fail(f"no --db given and the config does not load: {e}")
        raise AssertionError from e  # unreachable: _fail exits


async def _open(url: str | None) -> AuditLog:
    if not url:
        url = configured_db()
        typer.echo(f"database: {url.split('@')[-1]} (from the config; --db to choose another)", err=True)
    if url.startswith("sqlite:"):
        try:
            path = sqlite_path(url)
        except DatabaseError as e:
            _fail(str(e))
        if path != ":memory:" and not Path(path).exists():  # do not silently create an empty log
            _fail(f"database file not found: {path}")
    try:
        db = await Database.connect(url)
    except DatabaseError as e:
        _fail(str(e))
    except Exception as e:
        _fail(f"cannot connect to {url.split('@')[-1]}: {e}")
    ring = reader_key_ring(url)
    if ring is not None:  # open sealed payloads for query and export; verify needs no key
        try:
            await db.use_vault(TextVault(ring))
        except Exception as e:
            await db.close()
            _fail(f"the encryption keys do not open {url.split('@')[-1]}: {e}")
    return await AuditLog(db).init()


def _filters(call: str | None, agent: str | None, playbook: str | None, kind: list[str] | None,
             since: str | None, until: str | None) -> dict[str, Any]:  # fmt: skip
    try:
        to_epoch(since)
        to_epoch(until)
    except (ValueError, TypeError) as e:
        _fail(str(e))
    return {"call_id": call, "agent_id": agent, "playbook_id": playbook, "kind": kind or None,
            "since": since, "until": until}  # fmt: skip


@audit_app.command()
def verify(
    db: str | None = DbOpt,
    file: Path | None = typer.Option(None, "--file", help="verify an unfiltered JSONL export instead of a database"),
) -> None:
    """Walk the whole chain; exit 1 and name the first bad seq if anything was edited, deleted or reordered."""
    if file is not None:
        if not file.exists():
            _fail(f"file not found: {file}")
        try:
            with file.open() as fp:
                result = verify_entries(json.loads(line) for line in fp if line.strip())
        except (ValueError, KeyError) as e:
            _fail(f"{file} is not an audit JSONL export: {e}")
    else:

        async def run() -> Any:
            log = await _open(db)
            try:
                return await log.verify()
            finally:
                await log.db.close()

        result = asyncio.run(run())
    typer.echo(json.dumps({"ok": result.ok, "checked": result.checked, "first_bad_seq": result.first_bad_seq,
                           "reason": result.reason, "last_seq": result.last_seq, "last_hash": result.last_hash}))  # fmt: skip
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command()
def export(
    db: str | None = DbOpt,
    call: str | None = typer.Option(None, "--call", help="only this call id"),
    agent: str | None = typer.Option(None, "--agent", help="only this agent id"),
    playbook: str | None = typer.Option(None, "--playbook", help="only this playbook id"),
    kind: list[str] | None = typer.Option(None, "--kind", help="entry kind; repeat for several"),
    since: str | None = typer.Option(None, "--since", help="epoch seconds or ISO-8601 (inclusive)"),
    until: str | None = typer.Option(None, "--until", help="epoch seconds or ISO-8601 (exclusive)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write here instead of stdout"),
) -> None:
    """Write matching entries as JSON lines (stdout by default). Unfiltered exports verify offline."""
    filters = _filters(call, agent, playbook, kind, since, until)

    async def run() -> int:
        log = await _open(db)
        try:
            if out is None:
                return await log.export_jsonl(sys.stdout, **filters)
            with out.open("w") as fp:
                return await log.export_jsonl(fp, **filters)
        finally:
            await log.db.close()

    n = asyncio.run(run())
    typer.echo(f"exported {n} entries", err=True)


@audit_app.command()
def query(
    db: str | None = DbOpt,
    call: str | None = typer.Option(None, "--call"),
    agent: str | None = typer.Option(None, "--agent"),
    playbook: str | None = typer.Option(None, "--playbook"),
    kind: list[str] | None = typer.Option(None, "--kind", help="repeat for several"),
    since: str | None = typer.Option(None, "--since"),
    until: str | None = typer.Option(None, "--until"),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000),
    brief: bool = typer.Option(False, "--brief", help="one readable line per entry instead of JSON"),
) -> None:
    """Show matching entries, oldest first."""
    filters = _filters(call, agent, playbook, kind, since, until)

    async def run() -> list[Any]:
        log = await _open(db)
        try:
            return await log.query(**filters, limit=limit)
        finally:
            await log.db.close()

    for e in asyncio.run(run()):
        if brief:
            who = " ".join(f"{k}={v}" for k, v in (("call", e.call_id), ("agent", e.agent_id),
                           ("playbook", e.playbook_id), ("action", e.action_id)) if v)  # fmt: skip
            typer.echo(f"{e.seq:>8} {e.ts:.3f} {e.kind:<24} {e.actor:<14} {who} {canonical_json(e.payload)[:200]}")
        else:
            typer.echo(canonical_json(e.to_dict()))


@audit_app.command()
def kpis(
    db: str | None = DbOpt,
    by: str = typer.Option("playbook", "--by", help="playbook | agent"),
    since: str | None = typer.Option(None, "--since"),
    until: str | None = typer.Option(None, "--until"),
) -> None:
    """Hint KPIs (shown, accepted, dismissed, corrected, acceptance, time to accept, outcomes) as JSON lines."""
    if by not in ("playbook", "agent"):
        _fail(f"--by must be playbook or agent, got {by!r}")
    _filters(None, None, None, None, since, until)

    async def run() -> list[dict[str, Any]]:
        log = await _open(db)
        try:
            return await compute_kpis(log.db, by=by, since=since, until=until)  # type: ignore[arg-type]
        finally:
            await log.db.close()

    for row in asyncio.run(run()):
        typer.echo(json.dumps(row, sort_keys=True))
