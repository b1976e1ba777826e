"""Durable record of calls: final transcript segments, signals, hints, feedback, rejections.

Why a write-behind queue: a busy server produces hundreds of rows a second and the pipeline
must never wait on disk. Rows are batched into one transaction every few milliseconds. What
the server *acknowledges* to a person (feedback) is written synchronously before the ack, and
`close()` drains the queue, so a clean shutdown loses nothing that was acknowledged or queued.
Only already-masked data reaches this module (redaction runs first in the pipeline). What a
person said, and whom the call was with, is passed `Sealed` (encrypted at rest, privacy/vault.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from callcue.events import Hint, Signal, Transcript
from callcue.privacy.customers import identifiers
from callcue.privacy.vault import Sealed
from callcue.store.db import Database

log = logging.getLogger(__name__)


def _schema(db: Database) -> list[str]:
    pk = "BIGSERIAL PRIMARY KEY" if db.dialect == "postgresql" else "INTEGER PRIMARY KEY AUTOINCREMENT"
    real = "DOUBLE PRECISION" if db.dialect == "postgresql" else "REAL"
    return [
        f"""CREATE TABLE IF NOT EXISTS calls (
            call_id TEXT PRIMARY KEY, agent_id TEXT, platform TEXT, encoding TEXT, sample_rate INTEGER,
            channels TEXT, metadata TEXT, started_at {real}, ended_at {real}, end_reason TEXT,
            storage_paused INTEGER DEFAULT 0)""",
        f"""CREATE TABLE IF NOT EXISTS transcripts (
            id {pk}, call_id TEXT NOT NULL, channel TEXT NOT NULL, segment_id INTEGER, start_s {real}, end_s {real},
            text TEXT, words TEXT, confidence {real}, engine TEXT, created_at {real})""",
        "CREATE INDEX IF NOT EXISTS transcripts_call ON transcripts(call_id, start_s)",
        f"""CREATE TABLE IF NOT EXISTS signals (
            signal_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, kind TEXT, name TEXT, confidence {real},
            detector TEXT, detector_version TEXT, evidence TEXT, attrs TEXT, retracted INTEGER, created_at {real})""",
        "CREATE INDEX IF NOT EXISTS signals_call ON signals(call_id)",
        f"""CREATE TABLE IF NOT EXISTS hints (
            hint_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, title TEXT, body TEXT, suggested_reply TEXT,
            severity TEXT, source TEXT, signal_ids TEXT, attrs TEXT, created_at {real})""",
        "CREATE INDEX IF NOT EXISTS hints_call ON hints(call_id)",
        f"""CREATE TABLE IF NOT EXISTS feedback (
            id {pk}, hint_id TEXT NOT NULL, call_id TEXT, user_id TEXT, action TEXT, reason TEXT,
            correction TEXT, created_at {real})""",
        f"""CREATE TABLE IF NOT EXISTS ingress_rejections (
            id {pk}, platform TEXT, call_id TEXT, close_code INTEGER, reason TEXT, created_at {real})""",
    ]


class CallStore:
    def __init__(self, db: Database, flush_interval: float = 0.0, max_batch: int = 500) -> None:
        self.db = db
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[str, tuple[Any, ...]] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._paused: set[str] = set()

    async def open(self) -> None:
        await self.db.migrate("calls_v1", _schema(self.db))
        real = "DOUBLE PRECISION" if self.db.dialect == "postgresql" else "REAL"
        await self.db.migrate("call_events_v1", [
            # what each watcher of a call was sent, in order: late joiners and reconnecting
            # clients are replayed from here (seq is per call, gaps allowed)
            f"""CREATE TABLE IF NOT EXISTS call_events (
                call_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, audience TEXT NOT NULL,
                body TEXT NOT NULL, created_at {real}, PRIMARY KEY (call_id, seq))""",
            "CREATE INDEX IF NOT EXISTS calls_ended ON calls(ended_at)",
        ])  # fmt: skip
        pk = "BIGSERIAL PRIMARY KEY" if self.db.dialect == "postgresql" else "INTEGER PRIMARY KEY AUTOINCREMENT"
        await self.db.migrate("qa_v1", [
            # one row per scorecard applied to a call: the score and every answer with its evidence
            f"""CREATE TABLE IF NOT EXISTS qa_evaluations (
                id {pk}, call_id TEXT NOT NULL, card_id TEXT NOT NULL, card_version INTEGER NOT NULL,
                card_digest TEXT, score {real}, source TEXT NOT NULL, result TEXT NOT NULL, created_at {real})""",
            "CREATE INDEX IF NOT EXISTS qa_evaluations_call ON qa_evaluations(call_id)",
        ])  # fmt: skip
        await self.db.migrate("calls_customer_index_v1", [
            "ALTER TABLE calls ADD COLUMN customer_index TEXT",
        ])
        await self.db.migrate("summaries_v1", [
            f"CREATE TABLE IF NOT EXISTS call_summaries (call_id TEXT PRIMARY KEY, result TEXT NOT NULL, created_at {real})",
        ])
        closed = await self.close_abandoned()
        if closed:
            log.warning("closed %d call(s) a previous run left open", closed)
        self._writer = asyncio.create_task(self._write_loop(), name="store-writer")

    async def close(self) -> None:
        if self._writer is not None:
            await self._queue.put(None)
            await self._writer
            self._writer = None

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        done = asyncio.get_running_loop().create_future()
        await self._queue.put(("__flush__", (done,)))
        await done

    # -- group commit ------------------------------------------------------------------
    def _put(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[None]:
        """Queue a row; the future resolves once the row is committed (or fails with why).

        Group commit instead of a timed write-behind: the writer takes whatever is queued the
        moment it is free and commits it in one transaction, so a row waits for at most one
        commit in flight, and a caller that must not show what was not stored (the Sink)
        awaits the future before it publishes.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # a row nobody waits for still logs its failure (in _commit), never "never retrieved"
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.put_nowait((sql, (params, fut)))
        return fut

    async def _write_loop(self) -> None:
        stop = False
        while not stop:
            item = await self._queue.get()
            batch = [item]
            if self.flush_interval:
                await asyncio.sleep(self.flush_interval)
            while not self._queue.empty() and len(batch) < self.max_batch:
                batch.append(self._queue.get_nowait())
            waiters = []
            rows: list[tuple[str, tuple[Any, ...], asyncio.Future[None]]] = []
            for it in batch:
                if it is None:
                    stop = True
                elif it[0] == "__flush__":
                    waiters.append(it[1][0])
                else:
                    rows.append((it[0], it[1][0], it[1][1]))
            if rows:
                await self._commit(rows)
            for w in waiters:
                if not w.done():
                    w.set_result(None)
            if stop:
                # anything that raced in after the sentinel
                rest = []
                while not self._queue.empty():
                    it = self._queue.get_nowait()
                    if it is not None and it[0] != "__flush__":
                        rest.append((it[0], it[1][0], it[1][1]))
                    elif it is not None:
                        it[1][0].set_result(None)
                if rest:
                    await self._commit(rest)

    async def _commit(self, rows: list[tuple[str, tuple[Any, ...], asyncio.Future[None]]]) -> None:
        try:
            async with self.db.transaction():
                for sql, params, _ in rows:
                    await self.db.execute(sql, params)
        except Exception:
            log.exception("store batch of %d rows failed; retrying row by row", len(rows))
            for sql, params, fut in rows:
                try:
                    await self.db.execute(sql, params)
                except Exception as e:
                    log.exception("store row failed: %s", sql.split("(")[0])
                    if not fut.done():
                        fut.set_exception(e)
                else:
                    if not fut.done():
                        fut.set_result(None)
            return
        for _, _, fut in rows:
            if not fut.done():
                fut.set_result(None)

    # -- calls ---------------------------------------------------------------------------
    def call_started(self, call_id: str, agent_id: str | None, platform: str, encoding: str, sample_rate: int,
                     channels: list[str], metadata: dict[str, Any]) -> None:
        # whom the call was with, as keyed hashes: an erasure request finds it without
        # decrypting every call's metadata (privacy/customers.py)
        vault = self.db.vault
        index = " ".join(sorted(vault.blind(f) for f in identifiers(metadata))) if vault is not None else None
        self._put(
            "INSERT INTO calls (call_id, agent_id, platform, encoding, sample_rate, channels, metadata, started_at, "
            "customer_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (call_id, agent_id, platform, encoding, sample_rate, json.dumps(channels), Sealed(call_id, json.dumps(metadata)),
             time.time(), index),
        )

    def call_assigned(self, call_id: str, agent_id: str) -> None:
        """A call handed to a human agent mid-call (the virtual agent's handoff)."""
        self._put("UPDATE calls SET agent_id = ? WHERE call_id = ?", (agent_id, call_id))

    def call_reopened(self, call_id: str) -> None:
        """A known call streams again (a platform reconnected): one calls row, open again."""
        self._put("UPDATE calls SET ended_at = NULL, end_reason = NULL WHERE call_id = ?", (call_id,))

    async def resume_point(self, call_id: str) -> dict[str, Any] | None:
        """Where a stored call left off: its agent, and per channel the last audio time and
        segment id it stored; None for a call never seen."""
        await self.flush()
        call = await self.db.fetchone("SELECT agent_id, ended_at FROM calls WHERE call_id = ?", (call_id,))
        if call is None:
            return None
        rows = await self.db.fetchall(
            "SELECT channel, MAX(end_s) AS end_s, MAX(segment_id) AS seg FROM transcripts WHERE call_id = ? GROUP BY channel",
            (call_id,))
        seq = await self.db.fetchone("SELECT MAX(seq) AS seq FROM call_events WHERE call_id = ?", (call_id,))
        return {"agent_id": call["agent_id"], "ended": call["ended_at"] is not None,
                "last_seq": int((seq or {}).get("seq") or 0),
                "channels": {r["channel"]: (float(r["end_s"] or 0.0), int(r["seg"] or 0)) for r in rows}}

    async def close_abandoned(self, reason: str = "server_restart") -> int:
        """Calls a killed server left open end where their last stored row says they did."""
        open_calls = await self.db.fetchall("SELECT call_id, started_at FROM calls WHERE ended_at IS NULL")
        for c in open_calls:
            last = await self.db.fetchone(
                "SELECT MAX(t) AS t FROM (SELECT MAX(created_at) AS t FROM transcripts WHERE call_id = ? "
                "UNION ALL SELECT MAX(created_at) AS t FROM signals WHERE call_id = ? "
                "UNION ALL SELECT MAX(created_at) AS t FROM hints WHERE call_id = ?) AS x",
                (c["call_id"], c["call_id"], c["call_id"]))
            end = (last or {}).get("t") or c["started_at"]
            await self.db.execute("UPDATE calls SET ended_at = ?, end_reason = ? WHERE call_id = ? AND ended_at IS NULL",
                                  (end, reason, c["call_id"]))
        return len(open_calls)

    def call_ended(self, call_id: str, reason: str) -> None:
        self._put("UPDATE calls SET ended_at = ?, end_reason = ? WHERE call_id = ?", (time.time(), reason, call_id))

    def pause_storage(self, call_id: str, paused: bool = True) -> None:
        """Call-level control: stop (or resume) storing this call's transcript text."""
        (self._paused.add if paused else self._paused.discard)(call_id)
        self._put("UPDATE calls SET storage_paused = ? WHERE call_id = ?", (1 if paused else 0, call_id))

    def transcript(self, t: Transcript) -> asyncio.Future[None] | None:
        """Finals are stored (None for partials and paused calls); await the result to know
        the row is committed."""
        if not t.is_final or t.call_id in self._paused:
            return None
        words = [[w.text, round(w.start, 3), round(w.end, 3), round(w.conf, 3)] for w in t.words]
        return self._put(
            "INSERT INTO transcripts (call_id, channel, segment_id, start_s, end_s, text, words, confidence, engine, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (t.call_id, t.channel, t.segment_id, t.start, t.end, Sealed(t.call_id, t.text), Sealed(t.call_id, json.dumps(words)),
             t.confidence, t.engine, t.emitted_at),
        )

    def signal(self, s: Signal) -> asyncio.Future[None]:
        d = s.to_dict()
        return self._put(
            # a retraction re-sends a signal already stored: it updates that row (both dialects
            # speak ON CONFLICT ... DO UPDATE), so the store says what the agent was last told
            "INSERT INTO signals (signal_id, call_id, kind, name, confidence, detector, detector_version, evidence, attrs, retracted, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (signal_id) DO UPDATE SET retracted = excluded.retracted, confidence = excluded.confidence, "
            "evidence = excluded.evidence, attrs = excluded.attrs",
            (s.signal_id, s.call_id, s.kind, s.name, s.confidence, s.detector, s.detector_version,
             Sealed(s.call_id, json.dumps(d["evidence"], default=str)), Sealed(s.call_id, json.dumps(s.attrs, default=str)),
             int(s.retracted), s.emitted_at),
        )

    def hint(self, h: Hint) -> asyncio.Future[None]:
        return self._put(
            "INSERT INTO hints (hint_id, call_id, title, body, suggested_reply, severity, source, signal_ids, attrs, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (h.hint_id, h.call_id, Sealed(h.call_id, h.title), Sealed(h.call_id, h.body), Sealed(h.call_id, h.suggested_reply), h.severity,
             h.source, json.dumps(h.signal_ids), Sealed(h.call_id, json.dumps(h.attrs, default=str)), h.emitted_at),
        )

    def event(self, call_id: str, seq: int, kind: str, audience: str, body: dict[str, Any]) -> asyncio.Future[None]:
        """One event as its watchers were sent it; await the result before sending it."""
        return self._put(
            "INSERT INTO call_events (call_id, seq, kind, audience, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (call_id, seq, kind, audience, Sealed(call_id, json.dumps(body, default=str)), time.time()),
        )

    def summary(self, call_id: str, result: dict[str, Any]) -> asyncio.Future[None]:
        """The call's post-call summary; a later one (the call re-scored) replaces it."""
        return self._put(
            "INSERT INTO call_summaries (call_id, result, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (call_id) DO UPDATE SET result = excluded.result, created_at = excluded.created_at",
            (call_id, Sealed(call_id, json.dumps(result, default=str)), time.time()),
        )

    def qa_evaluation(self, call_id: str, result: dict[str, Any], source: str = "auto") -> asyncio.Future[None]:
        return self._put(
            "INSERT INTO qa_evaluations (call_id, card_id, card_version, card_digest, score, source, result, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (call_id, result["card_id"], result["card_version"], result.get("card_digest"), result.get("score"), source,
             Sealed(call_id, json.dumps(result, default=str)), time.time()),
        )  # fmt: skip

    def rejection(self, platform: str, call_id: str | None, code: int, reason: str) -> None:
        self._put(
            "INSERT INTO ingress_rejections (platform, call_id, close_code, reason, created_at) VALUES (?, ?, ?, ?, ?)",
            (platform, call_id, code, reason, time.time()),
        )

    # -- acknowledged writes ---------------------------------------------------------------
    async def feedback(self, hint_id: str, call_id: str, user_id: str, action: str, reason: str | None,
                       correction: str | None) -> None:
        await self.db.execute(
            "INSERT INTO feedback (hint_id, call_id, user_id, action, reason, correction, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (hint_id, call_id, user_id, action, Sealed(call_id, reason), Sealed(call_id, correction), time.time()),
        )

    # -- reads -----------------------------------------------------------------------------
    async def hint_call(self, hint_id: str) -> tuple[str, str | None] | None:
        await self.flush()
        row = await self.db.fetchone(
            "SELECT h.call_id AS call_id, c.agent_id AS agent_id FROM hints h LEFT JOIN calls c ON c.call_id = h.call_id "
            "WHERE h.hint_id = ?", (hint_id,))
        return (row["call_id"], row["agent_id"]) if row else None

    async def call_agent(self, call_id: str) -> str | bool | None:
        """The call's agent id, None when it has none, False when there is no such call."""
        row = await self.db.fetchone("SELECT agent_id FROM calls WHERE call_id = ?", (call_id,))
        return False if row is None else row["agent_id"]

    async def events_after(self, call_id: str, after: int, audiences: tuple[str, ...], limit: int = 1000) -> list[dict[str, Any]]:
        """The call's stored events with seq above `after`, oldest first, for these audiences."""
        await self.flush()
        marks = ", ".join("?" for _ in audiences)
        rows = await self.db.fetchall(
            f"SELECT body FROM call_events WHERE call_id = ? AND seq > ? AND audience IN ({marks}) ORDER BY seq LIMIT ?",
            (call_id, after, *audiences, limit))
        return [json.loads(r["body"]) for r in rows]

    async def ended_calls(self, since: float) -> list[dict[str, Any]]:
        """Calls that ended at or after `since`, newest first: what a desk still lists."""
        rows = await self.db.fetchall(
            "SELECT call_id, agent_id, platform, channels, metadata, started_at, ended_at, end_reason FROM calls "
            "WHERE ended_at IS NOT NULL AND ended_at >= ? ORDER BY ended_at DESC LIMIT 500", (since,))
        return [{**r, "channels": json.loads(r["channels"] or "[]"), "metadata": json.loads(r["metadata"] or "{}")}
                for r in rows]  # fmt: skip

    async def call_ended_at(self, call_id: str) -> float | None:
        row = await self.db.fetchone("SELECT ended_at FROM calls WHERE call_id = ?", (call_id,))
        return None if row is None or row["ended_at"] is None else float(row["ended_at"])

    async def call_record(self, call_id: str) -> dict[str, Any]:
        await self.flush()
        out: dict[str, Any] = {"call": await self.db.fetchone("SELECT * FROM calls WHERE call_id = ?", (call_id,))}
        for table, order in (("transcripts", "start_s"), ("signals", "created_at"), ("hints", "created_at"),
                             ("feedback", "created_at")):
            out[table] = await self.db.fetchall(f"SELECT * FROM {table} WHERE call_id = ? ORDER BY {order}", (call_id,))
        out["qa"] = await self.qa_evaluations(call_id=call_id)
        row = await self.db.fetchone("SELECT result FROM call_summaries WHERE call_id = ?", (call_id,))
        out["summary"] = json.loads(row["result"]) if row else None
        return out

    async def qa_evaluations(self, call_id: str | None = None, card_id: str | None = None,
                             card_version: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Stored evaluations, oldest first, each with its source (auto, human:<user>)."""
        await self.flush()
        where, params = [], []
        for col, v in (("call_id", call_id), ("card_id", card_id), ("card_version", card_version)):
            if v is not None:
                where.append(f"{col} = ?")
                params.append(v)
        rows = await self.db.fetchall(
            "SELECT call_id, result, source, created_at FROM qa_evaluations"
            + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id", tuple(params))
        return [{**json.loads(r["result"]), "call_id": r["call_id"], "source": r["source"], "created_at": r["created_at"]}
                for r in rows]  # fmt: skip
