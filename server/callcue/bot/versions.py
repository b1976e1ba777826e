"""Flow versions, governed like the knowledge base's: every flow file that was ever loaded is
stored with its YAML; one version per flow is active; a supervisor promotes a stored version
or rolls back to the one before, audited. New calls take the active version; a call already
talking keeps the one it started with.

Why stored and not only files: a rollback must survive a restart (the file on disk may still
be the version that was rolled back), and a reviewer must be able to see which YAML a call
followed long after the file changed. A file whose version number is higher than the active
one's is promoted the first time it loads (`[bot] promote_on_load`), the way an edited
playbook takes effect; anything else waits for a person, and a version rolled back stays
back even while its file is still on disk.
"""

from __future__ import annotations

import time
from typing import Any

from callcue.audit.log import AuditLog
from callcue.bot.flows import Flow, FlowError, parse_flow
from callcue.store.db import Database

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS flow_versions (
        flow_id TEXT NOT NULL, digest TEXT NOT NULL, version INTEGER NOT NULL, source TEXT NOT NULL,
        created_at {float}, created_by TEXT, PRIMARY KEY (flow_id, digest))""",
    """CREATE TABLE IF NOT EXISTS flow_active (
        flow_id TEXT PRIMARY KEY, digest TEXT NOT NULL, previous TEXT, activated_at {float}, actor TEXT)""",
]


class FlowVersions:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def init(self) -> FlowVersions:
        await self.db.migrate("flow_versions_v1", _SCHEMA)
        return self

    async def sync(self, files: dict[str, tuple[Flow, bytes]], *, promote_on_load: bool = True) -> dict[str, Flow]:
        """Store the files' versions; the active version of every flow (files first seen
        become active; a newer version number is promoted when `promote_on_load`)."""
        for fid, (flow, raw) in files.items():
            # several nodes may start at once on one database: each insert says whether it won
            added = await self.db.fetchone(
                "INSERT INTO flow_versions (flow_id, digest, version, source, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (flow_id, digest) DO NOTHING RETURNING digest",
                (fid, flow.digest, flow.version, raw.decode("utf-8"), time.time(), "file"))
            if added:
                await self.audit.append("flow_version_added", actor="system",
                                        payload={"flow": fid, "version": flow.version, "digest": flow.digest})  # fmt: skip
            active = await self._active(fid)
            if active is None:
                first = await self.db.fetchone(
                    "INSERT INTO flow_active (flow_id, digest, previous, activated_at, actor) VALUES (?, ?, NULL, ?, ?) "
                    "ON CONFLICT (flow_id) DO NOTHING RETURNING flow_id", (fid, flow.digest, time.time(), "system"))
                if first:
                    await self.audit.append("flow_promoted", actor="system", payload={
                        "flow": fid, "digest": flow.digest, "version": flow.version, "previous": None,
                        "reason": "loaded from the flows folder"})  # fmt: skip
            # only a file seen for the first time is promoted: a rolled-back version still on disk stays back
            elif promote_on_load and added and flow.version > active.version:
                await self._activate(fid, flow.digest, "system", "loaded from the flows folder")
        return await self.active_flows()

    async def active_flows(self) -> dict[str, Flow]:
        rows = await self.db.fetchall(
            "SELECT v.flow_id, v.source FROM flow_active a JOIN flow_versions v ON v.flow_id = a.flow_id AND v.digest = a.digest")
        return {r["flow_id"]: parse_flow(r["source"].encode("utf-8"), f"stored flow {r['flow_id']}") for r in rows}

    async def _active(self, fid: str) -> Flow | None:
        row = await self.db.fetchone(
            "SELECT v.source FROM flow_active a JOIN flow_versions v ON v.flow_id = a.flow_id AND v.digest = a.digest "
            "WHERE a.flow_id = ?", (fid,))
        return None if row is None else parse_flow(row["source"].encode("utf-8"), f"stored flow {fid}")

    async def _activate(self, fid: str, digest: str, actor: str, reason: str) -> dict[str, Any]:
        async with self.db.transaction():
            before = await self.db.fetchone("SELECT digest FROM flow_active WHERE flow_id = ?", (fid,))
            prev = before["digest"] if before else None
            await self.db.execute(
                "INSERT INTO flow_active (flow_id, digest, previous, activated_at, actor) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (flow_id) DO UPDATE SET digest = excluded.digest, previous = excluded.previous, "
                "activated_at = excluded.activated_at, actor = excluded.actor",
                (fid, digest, prev, time.time(), actor))
            version = await self.db.fetchval("SELECT version FROM flow_versions WHERE flow_id = ? AND digest = ?", (fid, digest))
            await self.audit.append("flow_promoted", actor=actor, payload={"flow": fid, "digest": digest, "version": version,
                                                                         "previous": prev, "reason": reason})  # fmt: skip
        return {"flow": fid, "active": digest, "version": version, "previous": prev}

    async def versions(self, fid: str) -> list[dict[str, Any]]:
        active = await self.db.fetchval("SELECT digest FROM flow_active WHERE flow_id = ?", (fid,))
        rows = await self.db.fetchall(
            "SELECT digest, version, created_at, created_by FROM flow_versions WHERE flow_id = ? ORDER BY created_at, version",
            (fid,))
        return [{**r, "active": r["digest"] == active} for r in rows]

    async def promote(self, fid: str, ref: str, *, actor: str, reason: str = "") -> dict[str, Any]:
        """Make a stored version active: `ref` is its digest or its version number."""
        rows = await self.db.fetchall("SELECT digest, version FROM flow_versions WHERE flow_id = ?", (fid,))
        match = [r["digest"] for r in rows if r["digest"] == ref or str(r["version"]) == ref]
        if not match:
            raise FlowError(f"flow {fid!r} has no stored version {ref!r}")
        return await self._activate(fid, match[-1], actor, reason)

    async def rollback(self, fid: str, *, actor: str, reason: str = "") -> dict[str, Any]:
        """Back to the version the active one replaced."""
        row = await self.db.fetchone("SELECT previous FROM flow_active WHERE flow_id = ?", (fid,))
        if row is None or not row["previous"]:
            raise FlowError(f"flow {fid!r} has no earlier version to roll back to")
        return await self._activate(fid, row["previous"], actor, reason or "rollback")
