"""KB versions in the database: every import is a new, immutable version; one is active.

Why versions like playbooks and intent datasets: an article edited today changes what
agents are told on every call from now on, so it is reviewed (`diff`), switched on
(`promote`) and switched back (`rollback`) as one step each, audited, and every card says
which version it came from. Passage vectors are stored with the version, so a server
starts in a second instead of embedding the KB again; the learned parts (re-ranker, the
asking head) are stored with the version they were fitted on.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from callcue.audit.log import AuditLog
from callcue.knowledge.gate import Gate
from callcue.knowledge.passages import Passage
from callcue.knowledge.rerank import Reranker
from callcue.store.db import Database

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("kb_0001_versions", [
        """CREATE TABLE IF NOT EXISTS kb_versions (
            version {bigint} PRIMARY KEY, created_at {float} NOT NULL, created_by TEXT NOT NULL,
            source TEXT NOT NULL, note TEXT NOT NULL, digest TEXT NOT NULL, passages {bigint} NOT NULL,
            reranker {json}, gate {json})""",
        """CREATE TABLE IF NOT EXISTS kb_passages (
            version {bigint} NOT NULL, ord {bigint} NOT NULL, passage_id TEXT NOT NULL, doc_id TEXT NOT NULL,
            title TEXT NOT NULL, section TEXT NOT NULL, text TEXT NOT NULL, url TEXT NOT NULL, meta {json} NOT NULL,
            digest TEXT NOT NULL, vec {blob} NOT NULL, PRIMARY KEY (version, passage_id))""",
        """CREATE TABLE IF NOT EXISTS kb_activations (
            seq {pk}, version {bigint} NOT NULL, at {float} NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL)""",
    ]),
]  # fmt: skip


class KnowledgeError(ValueError):
    """A refused KB change (unknown version, nothing to roll back to), said plainly."""


@dataclass(frozen=True)
class KbVersion:
    version: int
    created_at: float
    created_by: str
    source: str
    note: str
    digest: str
    passages: int
    active: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoadedKb:
    version: int
    passages: list[Passage]
    vectors: np.ndarray
    reranker: Reranker | None
    gate: Gate | None


class KnowledgeStore:
    def __init__(self, db: Database, audit: AuditLog, clock: Any = time.time) -> None:
        self.db = db
        self.audit = audit
        self.clock = clock
        self._ready = False

    async def init(self) -> KnowledgeStore:
        if not self._ready:
            await self.audit.init()
            for name, stmts in MIGRATIONS:
                await self.db.migrate(name, stmts)
            self._ready = True
        return self

    # ---------------------------------------------------------------- reading
    async def active_version(self) -> int | None:
        await self.init()
        row = await self.db.fetchone("SELECT version FROM kb_activations ORDER BY seq DESC LIMIT 1")
        return None if row is None else int(row["version"])

    async def versions(self) -> list[KbVersion]:
        await self.init()
        active = await self.active_version()
        rows = await self.db.fetchall("SELECT version, created_at, created_by, source, note, digest, passages"
                                      " FROM kb_versions ORDER BY version")  # fmt: skip
        return [KbVersion(int(r["version"]), float(r["created_at"]), r["created_by"], r["source"], r["note"], r["digest"],
                          int(r["passages"]), int(r["version"]) == active) for r in rows]  # fmt: skip

    async def _passage_rows(self, version: int) -> list[dict[str, Any]]:
        return await self.db.fetchall("SELECT passage_id, doc_id, title, section, text, url, meta, digest, vec"
                                      " FROM kb_passages WHERE version = ? ORDER BY ord", (version,))  # fmt: skip

    async def load(self, version: int) -> LoadedKb:
        await self.init()
        head = await self.db.fetchone("SELECT reranker, gate FROM kb_versions WHERE version = ?", (version,))
        if head is None:
            raise KnowledgeError(f"no KB version {version}")
        rows = await self._passage_rows(version)
        passages = [Passage(r["passage_id"], r["doc_id"], r["title"], r["text"], r["section"], r["url"], json.loads(r["meta"]))
                    for r in rows]  # fmt: skip
        vectors = np.stack([np.frombuffer(bytes(r["vec"]), dtype=np.float16) for r in rows]).astype(np.float32) if rows \
            else np.zeros((0, 384), dtype=np.float32)  # fmt: skip
        reranker = Reranker.from_dict(json.loads(head["reranker"])) if head["reranker"] else None
        gate = Gate.from_dict(json.loads(head["gate"])) if head["gate"] else None
        return LoadedKb(version, passages, vectors, reranker, gate)

    async def diff(self, a: int, b: int) -> dict[str, Any]:
        """What changed from version `a` to `b`: passages added, removed and edited."""
        await self.init()
        known = {v.version for v in await self.versions()}
        for v in (a, b):
            if v not in known:
                raise KnowledgeError(f"no KB version {v}")
        old = {r["passage_id"]: r for r in await self._passage_rows(a)}
        new = {r["passage_id"]: r for r in await self._passage_rows(b)}
        changed = sorted(p for p in old.keys() & new.keys() if old[p]["digest"] != new[p]["digest"])
        return {"from": a, "to": b, "added": sorted(new.keys() - old.keys()), "removed": sorted(old.keys() - new.keys()),
                "changed": [{"passage_id": p, "before": old[p]["text"], "after": new[p]["text"]} for p in changed]}  # fmt: skip

    # ---------------------------------------------------------------- writing
    async def add_version(self, passages: list[Passage], vectors: np.ndarray, *, actor: str, source: str,
                          note: str = "") -> KbVersion | None:  # fmt: skip
        """A new version with these passages (None when they equal the newest version's)."""
        await self.init()
        if not passages:
            raise KnowledgeError("a KB version needs at least one passage")
        if len(vectors) != len(passages):
            raise KnowledgeError(f"{len(passages)} passages but {len(vectors)} vectors")
        digest = hashlib.sha256("\n".join(p.digest() for p in passages).encode()).hexdigest()
        now = float(self.clock())
        async with self.db.transaction():
            if self.db.dialect == "postgresql":  # version numbers in turn: two nodes importing at start collided
                await self.db.execute("SELECT pg_advisory_xact_lock(?)", (0x43634B42,))  # "CcKB"
            last = await self.db.fetchone("SELECT version, digest FROM kb_versions ORDER BY version DESC LIMIT 1")
            if last is not None and last["digest"] == digest:
                return None
            version = 1 if last is None else int(last["version"]) + 1
            await self.db.execute("INSERT INTO kb_versions (version, created_at, created_by, source, note, digest, passages)"
                                  " VALUES (?, ?, ?, ?, ?, ?, ?)", (version, now, actor, source, note, digest, len(passages)))  # fmt: skip
            await self.db.executemany(
                "INSERT INTO kb_passages (version, ord, passage_id, doc_id, title, section, text, url, meta, digest, vec)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(version, i, p.passage_id, p.doc_id, p.title, p.section, p.text, p.url, json.dumps(p.meta, default=str),
                  p.digest(), np.asarray(v, dtype=np.float16).tobytes()) for i, (p, v) in enumerate(zip(passages, vectors, strict=True))])  # fmt: skip
            await self.audit.append("kb_version_created", actor=actor, payload={
                "kb_version": version, "passages": len(passages), "source": source, "digest": digest, "note": note})  # fmt: skip
        return KbVersion(version, now, actor, source, note, digest, len(passages))

    async def set_learned(self, version: int, *, reranker: Reranker | None, gate: Gate | None, actor: str) -> None:
        """The learned parts fitted for a version (labelled turns, or agents' feedback)."""
        await self.init()
        async with self.db.transaction():
            await self.db.execute("UPDATE kb_versions SET reranker = ?, gate = ? WHERE version = ?",
                                  (json.dumps(reranker.to_dict()) if reranker else None,
                                   json.dumps(gate.to_dict()) if gate else None, version))  # fmt: skip
            await self.audit.append("kb_learned_parts_set", actor=actor, payload={
                "kb_version": version, "reranker_turns": reranker.trained_on if reranker else 0, "gate": bool(gate)})  # fmt: skip

    async def promote(self, version: int, *, actor: str, reason: str = "promote") -> None:
        await self.init()
        if version not in {v.version for v in await self.versions()}:
            raise KnowledgeError(f"no KB version {version}")
        async with self.db.transaction():
            before = await self.active_version()
            await self.db.execute("INSERT INTO kb_activations (version, at, actor, reason) VALUES (?, ?, ?, ?)",
                                  (version, float(self.clock()), actor, reason))  # fmt: skip
            await self.audit.append("kb_version_promoted", actor=actor, payload={
                "kb_version": version, "previous": before, "reason": reason})  # fmt: skip

    async def rollback(self, *, actor: str) -> int:
        """Back to the version active before the current one; returns it."""
        await self.init()
        rows = await self.db.fetchall("SELECT version FROM kb_activations ORDER BY seq DESC")
        current = int(rows[0]["version"]) if rows else None
        previous = next((int(r["version"]) for r in rows if int(r["version"]) != current), None)
        if previous is None:
            raise KnowledgeError("no earlier active KB version to roll back to")
        await self.promote(previous, actor=actor, reason=f"rollback from {current}")
        return previous
