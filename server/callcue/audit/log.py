"""Append-only, hash-chained audit trail of every decision CallCue makes.

Why a hash chain: supervisors and compliance must be able to trust that "the system showed
hint X because of signal Y" was not edited afterwards. Each entry's `hash` is sha256 over a
canonical JSON of all its fields plus the previous entry's hash, so editing, deleting or
reordering any row breaks the chain at that row, and `verify()` says where. A one-row
`audit_head` table (updated in the same transaction) remembers the last seq and hash, so
truncating the tail is detected too. This proves tampering by someone with SQL access but
without the will to recompute every later hash; anchoring the head elsewhere (e.g. exporting
it daily) closes that gap and is left to operations (docs/audit.md).

Appends are serialized by a transaction that locks the head row (`BEGIN IMMEDIATE` on
SQLite, `SELECT ... FOR UPDATE` on PostgreSQL), within and across processes, so the chain
never forks. No extra asyncio lock: `append` may run inside a caller's transaction (learning
writes a version and its audit entry atomically) and a second lock could deadlock with it.

Entries of kind `hint_shown`, `feedback` and `disposition` are also projected, in the same
transaction, into the KPI fact tables of `callcue.audit.kpis` (an index, rebuildable from
this log), because KPIs need SQL joins on the hint id that JSON payloads cannot give portably.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import IO, Any

from callcue.audit import kpis as _kpis
from callcue.audit.entries import (
    _COLUMNS,
    _KIND_RE,
    ERASED,
    FEEDBACK_ACTIONS,
    GENESIS_HASH,
    KNOWN_KINDS,
    OUTCOMES,
    SEALED,
    AuditEntry,
    AuditPayloadError,
    SensitiveDataError,
    VerifyResult,
    _check_kpi_contract,
    canonical_json,
    entry_hash,
    erased_payload,
    find_unmasked_digits,
    sealed_payload,
    to_epoch,
    verify_entries,
)
from callcue.privacy.vault import ERASED_TEXT, SYSTEM
from callcue.store.db import Database

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("audit_001_log", [
        """CREATE TABLE audit_log (
            seq {bigint} PRIMARY KEY,
            ts {float} NOT NULL,
            kind TEXT NOT NULL,
            call_id TEXT,
            agent_id TEXT,
            playbook_id TEXT,
            playbook_version TEXT,
            action_id TEXT,
            actor TEXT NOT NULL,
            payload {json} NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE
        )""",
        "CREATE INDEX audit_log_call ON audit_log (call_id, seq)",
        "CREATE INDEX audit_log_agent ON audit_log (agent_id, seq)",
        "CREATE INDEX audit_log_playbook ON audit_log (playbook_id, seq)",
        "CREATE INDEX audit_log_kind ON audit_log (kind, seq)",
        "CREATE INDEX audit_log_ts ON audit_log (ts)",
        "CREATE TABLE audit_head (id INTEGER PRIMARY KEY, seq {bigint} NOT NULL, hash TEXT NOT NULL)",
        f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')",
    ]),
]  # fmt: skip


class AuditLog:
    """The audit trail on one `Database`. Create once per process and share it."""

    def __init__(self, db: Database, *, clock: Any = time.time) -> None:
        self.db = db
        self.clock = clock
        self._ready = False

    async def init(self) -> AuditLog:
        """Create tables (idempotent); called lazily by every method, callable eagerly at startup."""
        if not self._ready:
            for name, stmts in MIGRATIONS:
                await self.db.migrate(name, stmts)
            await _kpis.migrate(self.db)
            self._ready = True
        return self

    # ---------------------------------------------------------------- writing

    async def append(
        self, kind: str, *, call_id: str | None = None, agent_id: str | None = None,
        playbook_id: str | None = None, playbook_version: int | str | None = None,
        action_id: str | None = None, actor: str = "system", payload: dict[str, Any] | None = None,
    ) -> AuditEntry:  # fmt: skip
        """Append one entry and return it (with seq and hash).

        Raises ValueError subclasses for a bad kind, a non-JSON payload, an unmasked 13+ digit
        run, or a KPI kind whose payload lacks its required fields: nothing is written then.
        """
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise ValueError(f"audit kind must be snake_case (a-z, 0-9, _; max 64), got {kind!r}")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise TypeError(f"audit payload must be a dict, got {type(payload).__name__}")
        if not isinstance(actor, str) or not actor:
            raise ValueError("audit actor must be a non-empty string")
        for label, v in (("call_id", call_id), ("agent_id", agent_id), ("playbook_id", playbook_id), ("action_id", action_id)):
            if v is not None and not isinstance(v, str):
                raise TypeError(f"audit {label} must be a string or None, got {type(v).__name__}")
        try:
            payload_text = canonical_json(payload)
        except (TypeError, ValueError) as e:
            raise TypeError(f"audit payload for {kind!r} is not plain JSON: {e}") from None
        norm_payload = json.loads(payload_text)  # tuples -> lists etc., exactly what is stored
        hit = find_unmasked_digits(norm_payload)
        if hit:
            raise SensitiveDataError(f"{hit} holds a run of 13+ digits (looks like an unmasked card or account "
                                     "number); mask it before auditing")  # fmt: skip
        _check_kpi_contract(kind, norm_payload)
        if kind == "disposition" and not call_id:
            raise AuditPayloadError("disposition needs call_id: an outcome belongs to a call")
        version = None if playbook_version is None else str(playbook_version)

        await self.init()
        stored_text = payload_text
        if self.db.vault is not None:  # the words stay sealed at rest; the digest keeps the chain checkable
            sealed = await self.db.vault.seal(self.db, call_id or SYSTEM, payload_text)
            stored_text = canonical_json(sealed_payload(sealed, norm_payload))
        async with self.db.transaction():
            lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
            head = await self.db.fetchone(f"SELECT seq, hash FROM audit_head WHERE id = 1{lock}")
            assert head is not None, "audit_head row missing: the audit tables were tampered with"
            fields: dict[str, Any] = {
                "seq": int(head["seq"]) + 1, "ts": round(float(self.clock()), 6), "kind": kind,
                "call_id": call_id, "agent_id": agent_id, "playbook_id": playbook_id,
                "playbook_version": version, "action_id": action_id, "actor": actor,
                "payload": norm_payload, "prev_hash": head["hash"],
            }  # fmt: skip
            fields["hash"] = entry_hash(fields)
            row = dict(fields, payload=stored_text)
            await self.db.execute(
                f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                tuple(row[c] for c in _COLUMNS),
            )
            await self.db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (fields["seq"], fields["hash"]))
            entry = AuditEntry(**fields)
            await _kpis.project(self.db, entry)
        return entry

    # ---------------------------------------------------------------- reading

    async def erase_call(self, call_id: str, erasure_seq: int | None) -> int:
        """Erase the payloads of a call's entries (their digests stay, so the chain still
        verifies); returns how many. The erasure's own entry names no call."""
        await self.init()
        rows = await self.db.fetchall("SELECT seq, payload FROM audit_log WHERE call_id = ? AND kind != 'erasure'"
                                      f" AND payload NOT LIKE '{{\"{ERASED}\"%'", (call_id,))  # fmt: skip
        for r in rows:
            r = await self._opened(r)
            payload = json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
            await self.db.execute("UPDATE audit_log SET payload = ? WHERE seq = ?",
                                  (canonical_json(erased_payload(payload, erasure_seq)), r["seq"]))  # fmt: skip
        return len(rows)

    async def query(
        self, call_id: str | None = None, agent_id: str | None = None, playbook_id: str | None = None,
        kind: str | Iterable[str] | None = None, since: Any = None, until: Any = None, limit: int | None = 1000,
        after_seq: int | None = None, action_id: str | None = None,
    ) -> list[AuditEntry]:  # fmt: skip
        """Entries matching every given filter, oldest first. `since` inclusive, `until` exclusive;
        times are epoch seconds, datetimes or ISO strings. `after_seq` pages (seq > after_seq)."""
        await self.init()
        where: list[str] = []
        params: list[Any] = []
        for col, v in (("call_id", call_id), ("agent_id", agent_id), ("playbook_id", playbook_id), ("action_id", action_id)):
            if v is not None:
                where.append(f"{col} = ?")
                params.append(v)
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            if not kinds:
                return []
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        if (s := to_epoch(since)) is not None:
            where.append("ts >= ?")
            params.append(s)
        if (u := to_epoch(until)) is not None:
            where.append("ts < ?")
            params.append(u)
        if after_seq is not None:
            where.append("seq > ?")
            params.append(int(after_seq))
        sql = f"SELECT {', '.join(_COLUMNS)} FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0, got {limit}")
            sql += f" LIMIT {int(limit)}"
        return [AuditEntry.from_dict(await self._opened(r)) for r in await self.db.fetchall(sql, params)]

    async def _opened(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row with its sealed payload opened, when this process holds the keys; without
        them the sealed form stands, which still verifies by its digest."""
        raw = row["payload"]
        if self.db.vault is not None and isinstance(raw, str) and raw.startswith('{"' + SEALED + '"'):
            payload = json.loads(raw)
            row["payload"] = await self.db.vault.open(self.db, payload[SEALED])
            if row["payload"] == ERASED_TEXT:  # its call's key was shredded
                row["payload"] = payload
        return row

    async def iter_entries(self, page: int = 1000, **filters: Any) -> AsyncIterator[AuditEntry]:
        """Every matching entry, paged by seq so memory stays flat on large logs."""
        after = filters.pop("after_seq", None)
        filters.pop("limit", None)
        while True:
            batch = await self.query(**filters, after_seq=after, limit=page)
            for e in batch:
                yield e
            if len(batch) < page:
                return
            after = batch[-1].seq

    async def export_jsonl(self, fp: IO[str], **filters: Any) -> int:
        """Write matching entries as one canonical JSON object per line; returns the count.
        An unfiltered export can be checked offline with `verify_entries` / `callcue audit verify --file`."""
        n = 0
        async for e in self.iter_entries(**filters):
            fp.write(canonical_json(e.to_dict()) + "\n")
            n += 1
        return n

    async def head(self) -> tuple[int, str]:
        """(last seq, last hash): publish this elsewhere to anchor the chain."""
        await self.init()
        row = await self.db.fetchone("SELECT seq, hash FROM audit_head WHERE id = 1")
        return (int(row["seq"]), row["hash"]) if row else (0, GENESIS_HASH)

    async def verify(self, page: int = 2000) -> VerifyResult:
        """Walk the whole chain: seq continuity, prev_hash links, content hashes, and the head.

        The head is read first and only entries up to it are walked, so verifying a log that a
        running server keeps appending to does not report a false truncation.
        """
        await self.init()
        head_seq, head_hash = await self.head()
        state = {"n": 0}
        result = VerifyResult(True, 0)
        batch: list[AuditEntry] = []
        async for e in self.iter_entries(page=page):
            if e.seq > head_seq:
                break
            batch.append(e)
            if len(batch) >= page:
                result = self._verify_batch(batch, result, state)
                batch = []
                if not result.ok:
                    return result
        result = self._verify_batch(batch, result, state)
        if not result.ok:
            return result
        if result.last_seq < head_seq:
            return VerifyResult(False, result.checked, result.last_seq + 1,
                                f"head records seq {head_seq} but the log ends at seq {result.last_seq} "
                                "(tail rows deleted)", result.last_seq, result.last_hash)  # fmt: skip
        if head_seq and head_hash != result.last_hash:
            return VerifyResult(False, result.checked, head_seq,
                                f"head hash does not match the hash of seq {head_seq} (head or last row altered)",
                                result.last_seq, result.last_hash)  # fmt: skip
        # rows beyond the head are fine only if a concurrent append moved the head past them
        extra = await self.db.fetchval("SELECT MAX(seq) FROM audit_log")
        if extra is not None and int(extra) > head_seq:
            new_head, _ = await self.head()
            if int(extra) > new_head:
                return VerifyResult(False, result.checked, head_seq + 1,
                                    f"rows after the head (seq {head_seq + 1}..{extra}) were inserted outside append()",
                                    result.last_seq, result.last_hash)  # fmt: skip
        return result

    @staticmethod
    def _verify_batch(batch: list[AuditEntry], prev: VerifyResult, state: dict[str, int]) -> VerifyResult:
        r = verify_entries(batch, start_seq=prev.last_seq + 1, start_hash=prev.last_hash)
        state["n"] += r.checked
        return VerifyResult(r.ok, state["n"], r.first_bad_seq, r.reason, r.last_seq, r.last_hash)


__all__ = [
    "FEEDBACK_ACTIONS",
    "GENESIS_HASH",
    "KNOWN_KINDS",
    "OUTCOMES",
    "AuditEntry",
    "AuditLog",
    "AuditPayloadError",
    "SensitiveDataError",
    "VerifyResult",
    "canonical_json",
    "entry_hash",
    "find_unmasked_digits",
    "to_epoch",
    "verify_entries",
]  # fmt: skip
