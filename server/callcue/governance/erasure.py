"""Erasure: everything CallCue holds about one call, or about one customer's calls, removed
from the database, the recordings and the in-memory caches, leaving one audit entry that says
an erasure happened (how many calls and rows, why, who) without the erased content.

Why the audit trail keeps its entries: the chain must still prove that nothing else was
changed. Each erased entry keeps its payload's digest (audit/entries.py), so `callcue audit
verify` still passes, while the words, numbers and ids the payload held are gone.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from callcue.audit.log import AuditLog, canonical_json
from callcue.privacy.customers import forms, names_customer
from callcue.store.db import Database
from callcue.store.recordings import RecordingStore

log = logging.getLogger(__name__)

#: tables holding a call's rows, by their `call_id` column (the audit log is handled apart)
CALL_TABLES = ("transcripts", "signals", "hints", "feedback", "call_events", "qa_evaluations", "call_summaries",
               "ingress_rejections", "call_facts", "topic_utterances", "intent_examples", "intent_added_examples",
               "shadow_decisions", "hint_facts", "call_outcomes", "calls")  # fmt: skip
class ErasureError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Eraser:
    def __init__(self, db: Database, audit: AuditLog, recordings: RecordingStore | None,
                 live: Callable[[str], bool], forget: Iterable[Callable[[str], Any]] = (),
                 sign_key: bytes | None = None, flush: Callable[[], Awaitable[Any]] | None = None) -> None:  # fmt: skip
        """`live(call_id)`: the call is still going here (it cannot be erased yet); `forget`:
        caches to drop a call from (the engine's records, a cluster's registry)."""
        self.db = db
        self.audit = audit
        self.recordings = recordings
        self.live = live
        self.forget = list(forget)
        self.sign_key = sign_key
        self.flush = flush  # the call store's write-behind queue: nothing may land after the erasure

    async def calls_of_customer(self, who: str) -> list[str]:
        if len(who.strip()) < 3:
            raise ErasureError("name the customer: an id, phone number or e-mail of at least 3 characters")
        out: list[str] = []
        if self.db.vault is not None:  # the calls indexed by the customer's keyed forms when they started
            for f in sorted(forms(who)):
                out += await self._fetch_ids("SELECT call_id FROM calls WHERE customer_index LIKE ?",
                                             (f"%{self.db.vault.blind(f)}%",))  # fmt: skip
            rows = await self.db.fetchall("SELECT call_id, metadata FROM calls WHERE customer_index IS NULL")
        else:
            rows = await self.db.fetchall("SELECT call_id, metadata FROM calls")
        # calls stored before the index, or without keys: their metadata read one by one
        out += [r["call_id"] for r in rows if names_customer(json.loads(r["metadata"] or "{}"), who)]
        facts = await self._fetch_ids("SELECT call_id FROM call_facts WHERE customer_key = ?", (who.strip(),)) \
            if "call_facts" in await self.db.tables() else []  # fmt: skip
        return sorted(set(out) | set(facts))

    async def _fetch_ids(self, sql: str, params: tuple[Any, ...]) -> list[str]:
        return [r["call_id"] for r in await self.db.fetchall(sql, params)]

    async def erase(self, call_ids: list[str], *, actor: str, reason: str, scope: str) -> dict[str, Any]:
        if not reason.strip():
            raise ErasureError("an erasure needs a reason (it is recorded)")
        busy = [c for c in call_ids if self.live(c)]
        if busy:
            raise ErasureError(f"{len(busy)} call(s) are still live; erase them when they have ended", 409)
        if "legal_holds" in await self.db.tables():
            held = [c for c in call_ids if await self.db.fetchval("SELECT COUNT(*) FROM legal_holds WHERE call_id = ?", (c,))]
            if held:
                raise ErasureError(f"{len(held)} call(s) are under legal hold; release the hold first", 409)
        if self.flush is not None:
            await self.flush()
        rows: dict[str, int] = {}
        audit_entries = 0
        recordings = 0
        keys_shredded = 0
        # the erasure's own entry first (naming no call): the erased entries point to its seq
        body = {"scope": scope, "calls": len(call_ids), "reason": reason.strip()[:500]}
        if self.sign_key is not None:
            body["signature"] = hmac.new(self.sign_key, canonical_json(body).encode(), hashlib.sha256).hexdigest()
        entry = await self.audit.append("erasure", actor=actor, payload=body)
        tables = [t for t in CALL_TABLES if t in await self.db.tables()]  # parts that are off have none
        for cid in call_ids:
            async with self.db.transaction():
                for table in tables:  # names from CALL_TABLES only, never from input
                    n = await self.db.fetchval(f"SELECT COUNT(*) FROM {table} WHERE call_id = ?", (cid,))
                    if n:
                        await self.db.execute(f"DELETE FROM {table} WHERE call_id = ?", (cid,))
                        rows[table] = rows.get(table, 0) + int(n)
                audit_entries += await self.audit.erase_call(cid, entry.seq)
                if self.db.vault is not None:  # any copy the DELETE missed (free pages, WAL, backups) stays shut
                    keys_shredded += await self.db.vault.shred(self.db, cid)
            if self.recordings is not None and self.recordings.erase(cid):
                recordings += 1
            for f in self.forget:
                try:
                    out = f(cid)
                    if inspect.isawaitable(out):  # a cluster: Redis and the other nodes
                        await out
                except Exception:
                    log.exception("a cache did not forget an erased call")
        log.info("erased %d call(s) (%s): %d rows, %d audit payloads, %d recordings", len(call_ids), scope,
                 sum(rows.values()), audit_entries, recordings)  # fmt: skip
        return {"erased_calls": len(call_ids), "rows": rows, "audit_payloads_erased": audit_entries,
                "recordings_deleted": recordings, "data_keys_shredded": keys_shredded,
                "erasure_seq": entry.seq}  # fmt: skip
