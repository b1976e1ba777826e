"""Retention: each kind of artifact kept for its own number of days after the call ended,
then removed by a sweeper; a call under legal hold keeps everything until the hold is lifted.

Why per artifact: a contact centre typically keeps audio for months (disputes), transcripts
and events a little longer (QA, coaching), scores and summaries longer still, and aggregate
facts for trends; each is its own rule in `[retention]`. The audit trail follows its own
rule: its entries stay (they are the record of what was done), and after `audit_payload_days`
a call's entries lose their payloads, keeping the digests the chain is checked by.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from callcue.audit.log import AuditLog
from callcue.config import RetentionConfig
from callcue.store.db import Database
from callcue.store.recordings import RecordingStore

log = logging.getLogger(__name__)

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("governance_001_holds", [
        """CREATE TABLE IF NOT EXISTS legal_holds (
            call_id TEXT PRIMARY KEY, set_at {float} NOT NULL, set_by TEXT NOT NULL, reason TEXT NOT NULL)""",
    ]),
]  # fmt: skip

#: artifact -> the tables (by call) it is made of
ARTIFACTS: dict[str, tuple[str, ...]] = {
    "transcripts": ("transcripts", "signals", "hints", "feedback", "call_events"),
    "qa": ("qa_evaluations", "call_summaries"),
    "analytics": ("call_facts",),
    "topics": ("topic_utterances",),
}


class Retention:
    def __init__(self, db: Database, audit: AuditLog, recordings: RecordingStore | None, cfg: RetentionConfig,
                 clock: Any = time.time) -> None:  # fmt: skip
        self.db = db
        self.audit = audit
        self.recordings = recordings
        self.cfg = cfg
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def init(self) -> Retention:
        for name, stmts in MIGRATIONS:
            await self.db.migrate(name, stmts)
        return self

    # ---------------------------------------------------------------- legal holds
    async def hold(self, call_id: str, *, actor: str, reason: str) -> None:
        await self.db.execute("DELETE FROM legal_holds WHERE call_id = ?", (call_id,))
        await self.db.execute("INSERT INTO legal_holds (call_id, set_at, set_by, reason) VALUES (?, ?, ?, ?)",
                              (call_id, float(self.clock()), actor, reason))  # fmt: skip
        await self.audit.append("legal_hold_set", call_id=call_id, actor=actor, payload={"reason": reason})

    async def release(self, call_id: str, *, actor: str) -> bool:
        held = await self.db.fetchval("SELECT COUNT(*) FROM legal_holds WHERE call_id = ?", (call_id,))
        await self.db.execute("DELETE FROM legal_holds WHERE call_id = ?", (call_id,))
        if held:
            await self.audit.append("legal_hold_released", call_id=call_id, actor=actor, payload={})
        return bool(held)

    async def held(self, call_id: str) -> bool:
        return bool(await self.db.fetchval("SELECT COUNT(*) FROM legal_holds WHERE call_id = ?", (call_id,)))

    # ---------------------------------------------------------------- the sweep
    async def sweep(self) -> dict[str, int]:
        """One pass: what is past its retention, not under hold, removed; counts per artifact."""
        now = float(self.clock())
        tables = await self.db.tables()
        out: dict[str, int] = {}
        rules = {"audio": self.cfg.audio_days, "transcripts": self.cfg.transcripts_days, "qa": self.cfg.qa_days,
                 "analytics": self.cfg.analytics_days, "topics": self.cfg.topics_days,
                 "audit_payloads": self.cfg.audit_payload_days}  # fmt: skip
        for artifact, days in rules.items():
            if not days:
                continue
            cutoff = now - days * 86400
            ended = [r["call_id"] for r in await self.db.fetchall(
                "SELECT call_id FROM calls WHERE ended_at IS NOT NULL AND ended_at < ?"
                " AND call_id NOT IN (SELECT call_id FROM legal_holds)", (cutoff,))]  # fmt: skip
            n = 0
            if artifact == "audio":
                for cid in ended:
                    n += int(self.recordings is not None and self.recordings.erase(cid))
            elif artifact == "audit_payloads":
                for cid in ended:
                    n += await self.audit.erase_call(cid, None)
            else:
                for table in ARTIFACTS[artifact]:
                    if table not in tables:
                        continue
                    for cid in ended:
                        k = await self.db.fetchval(f"SELECT COUNT(*) FROM {table} WHERE call_id = ?", (cid,))
                        if k:
                            await self.db.execute(f"DELETE FROM {table} WHERE call_id = ?", (cid,))
                            n += int(k)
            out[artifact] = n
        if any(out.values()):
            await self.audit.append("retention_sweep", actor="system", payload={"removed": out})
            log.info("retention sweep removed %s", out)
        return out

    def start(self) -> None:
        async def loop() -> None:
            while True:
                try:
                    await self.sweep()
                except Exception:
                    log.exception("retention sweep failed; trying again next time")
                await asyncio.sleep(self.cfg.sweep_every_s)

        self._task = asyncio.create_task(loop(), name="retention-sweeper")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
