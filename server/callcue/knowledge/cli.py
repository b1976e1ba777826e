"""`callcue kb ...`: import articles as a new KB version, review it, switch it on and back.

Output is JSON (one object), so it pipes into jq. A server that is running picks a promoted
version up on its next start or on the supervisor API's `kb_promote` (which swaps the live
index at once). Exit codes: 0 ok, 2 bad usage or a refused change.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import typer

kb_app = typer.Typer(no_args_is_help=True, help="Knowledge base versions: import, diff, promote, roll back, search.")

DbOpt = typer.Option(None, "--db", envvar="CALLCUE_DB_URL",
                     help="sqlite:///path.db or postgresql://... (env CALLCUE_DB_URL; default: the config's [storage] url)")  # fmt: skip
ActorOpt = typer.Option("cli", "--actor", help="who makes the change (recorded in the audit trail)")


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _run(db_url: str | None, body: Callable[[Any], Awaitable[Any]]) -> Any:
    from callcue.audit.log import AuditLog
    from callcue.config import ConfigError, load_settings
    from callcue.knowledge.gate import Gate
    from callcue.knowledge.passages import KnowledgeImportError
    from callcue.knowledge.service import KnowledgeBase
    from callcue.knowledge.store import KnowledgeError, KnowledgeStore
    from callcue.privacy.keys import reader_key_ring
    from callcue.privacy.vault import TextVault
    from callcue.store.db import Database, sqlite_path
    from callcue.understand.encoder import SentenceEncoder

    try:
        settings = load_settings(None)
    except ConfigError as e:
        _fail(f"the config does not load: {e}")
        raise AssertionError from e
    url = db_url or settings.storage.url
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    typer.echo(f"database: {url.split('@')[-1]}", err=True)

    async def go() -> Any:
        db = await Database.connect(url)
        if (ring := reader_key_ring(url)) is not None:  # its audit entries sealed like the server's
            await db.use_vault(TextVault(ring))
        pool = ThreadPoolExecutor(2, thread_name_prefix="kb")
        try:
            cfg = settings.knowledge
            kb = KnowledgeBase(KnowledgeStore(db, AuditLog(db)), lambda t: SentenceEncoder.load().embed(t), pool,
                               Gate(cfg.min_score, cfg.min_ask))  # fmt: skip
            await kb.store.init()
            return await body(kb)
        finally:
            pool.shutdown(wait=False)
            await db.close()

    try:
        return asyncio.run(go())
    except (KnowledgeError, KnowledgeImportError) as e:
        _fail(str(e))


def _out(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


@kb_app.command("import")
def import_(path: Path = typer.Argument(..., help="a folder of .md/.html articles, or a .jsonl of passages"),
            promote: bool = typer.Option(False, "--promote", help="make it the active version at once"),
            note: str = typer.Option("", "--note"), actor: str = ActorOpt, db: str | None = DbOpt) -> None:  # fmt: skip
    """Read articles into a new KB version (unchanged content makes none)."""

    async def body(kb: Any) -> Any:
        v = await kb.import_path(path, actor=actor, note=note, promote=promote)
        return {"created": v.to_dict() if v else None, "unchanged": v is None, "active": await kb.store.active_version()}

    _out(_run(db, body))


@kb_app.command()
def versions(db: str | None = DbOpt) -> None:
    """Every KB version, the active one marked."""

    async def body(kb: Any) -> Any:
        return {"versions": [v.to_dict() for v in await kb.store.versions()], "active": await kb.store.active_version()}

    _out(_run(db, body))


@kb_app.command()
def diff(a: int, b: int, db: str | None = DbOpt) -> None:
    """Passages added, removed and changed from version A to version B."""
    _out(_run(db, lambda kb: kb.store.diff(a, b)))


@kb_app.command()
def promote(version: int, actor: str = ActorOpt, db: str | None = DbOpt) -> None:
    """Make VERSION the active KB (audited)."""

    async def body(kb: Any) -> Any:
        await kb.store.promote(version, actor=actor)
        return {"active": version}

    _out(_run(db, body))


@kb_app.command()
def rollback(actor: str = ActorOpt, db: str | None = DbOpt) -> None:
    """Back to the version active before the current one (audited)."""

    async def body(kb: Any) -> Any:
        return {"active": await kb.store.rollback(actor=actor)}

    _out(_run(db, body))


@kb_app.command()
def search(query: str, k: int = typer.Option(5, "--k"), db: str | None = DbOpt) -> None:
    """Search the active version as an agent does from the desktop."""

    async def body(kb: Any) -> Any:
        await kb.reload()
        return await kb.search(query, k=k)

    _out(_run(db, body))


@kb_app.command()
def train(queries: Path = typer.Option(..., "--queries", help="labelled turns (the `callcue eval knowledge` format)"),
          actor: str = ActorOpt, db: str | None = DbOpt) -> None:  # fmt: skip
    """Fit the re-ranker and the asking head of the active version on labelled turns."""
    from callcue.knowledge import training as ke

    async def body(kb: Any) -> Any:
        await kb.reload()
        if kb.index is None:
            _fail("no KB version is active")
        rows = ke.load_queries(queries)
        loop = asyncio.get_running_loop()
        qvs = await loop.run_in_executor(kb.executor, kb.embed, [r["utterance"] for r in rows])
        reranker, gate = await loop.run_in_executor(kb.executor, ke.fit, kb.index, rows, qvs, kb.gate)
        await kb.store.set_learned(kb.index.version, reranker=reranker, gate=gate, actor=actor)
        return {"kb_version": kb.index.version, "turns": len(rows),
                "reranker_turns": reranker.trained_on if reranker else 0}  # fmt: skip

    _out(_run(db, body))


@kb_app.command("mine-replies")
def mine_replies(out: Path = typer.Option(Path("replies-proposed.yaml"), "--out", help="the review file to write"),
                 min_count: int = typer.Option(3, "--min-count", min=2, help="how often agents said a line"),
                 db: str | None = DbOpt) -> None:  # fmt: skip
    """Lines agents say often, from stored agent turns, into a file for review: none is offered
    to agents until someone copies it into config/replies.yaml."""
    import yaml

    from callcue.knowledge.replies import mine_agent_lines

    async def body(kb: Any) -> Any:
        rows = await kb.store.db.fetchall("SELECT text FROM transcripts WHERE channel = 'agent' AND text IS NOT NULL")
        found = mine_agent_lines([r["text"] for r in rows], min_count=min_count)
        doc = {"review": "proposed replies mined from agent turns; copy the good ones (with an id and when) "
                         "into config/replies.yaml",
               "replies": [{"id": f"mined_{i + 1}", "when": "", "text": f["text"], "said": f["count"]} for i, f in enumerate(found)]}  # fmt: skip
        out.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return {"agent_turns": len(rows), "proposed": len(found), "file": str(out)}

    _out(_run(db, body))
