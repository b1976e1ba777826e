"""The analytics tables: call facts and uncovered utterances (with their embeddings).

Why embeddings are stored: clustering a month of utterances must not re-embed them on each
page load (3 ms each on one core). They are kept as float16 (768 bytes, base64 in a TEXT
column, the same in SQLite and PostgreSQL); the cosine geometry HDBSCAN works on survives
float16 to the third decimal.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import numpy as np

from callcue.privacy.vault import Sealed
from callcue.store.db import Database

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("analytics_001", [
        """CREATE TABLE call_facts (
            call_id TEXT PRIMARY KEY, agent_id TEXT, queue TEXT, customer_key TEXT, channel TEXT,
            started_at {float}, handle_s {float}, driver TEXT, outcome TEXT, qa_score {float},
            csat_estimate {float}, fact {json} NOT NULL, created_at {float} NOT NULL)""",
        "CREATE INDEX call_facts_started ON call_facts (started_at)",
        "CREATE INDEX call_facts_customer ON call_facts (customer_key, started_at)",
        """CREATE TABLE topic_utterances (
            id {pk}, call_id TEXT NOT NULL, segment_id {bigint}, ts {float}, text TEXT NOT NULL,
            embedding TEXT NOT NULL, adopted_intent TEXT, created_at {float} NOT NULL)""",
        "CREATE INDEX topic_utterances_ts ON topic_utterances (ts)",
        "CREATE INDEX topic_utterances_call ON topic_utterances (call_id)",
    ]),
]  # fmt: skip


def pack(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype=np.float16).tobytes()).decode()


def unpack(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.float16).astype(np.float32)


def _window(column: str, since: float | None, until: float | None) -> tuple[str, tuple[float, ...]]:
    """` AND column >= ? AND column < ?` for the bounds given: the period every query takes."""
    cond, params = "", []
    if since is not None:
        cond += f" AND {column} >= ?"
        params.append(float(since))
    if until is not None:
        cond += f" AND {column} < ?"
        params.append(float(until))
    return cond, tuple(params)


def parse_facts(raw: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(f) if isinstance(f, str) else f for f in raw]


class AnalyticsStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._ready = False

    async def init(self) -> None:
        if not self._ready:
            for name, stmts in MIGRATIONS:
                await self.db.migrate(name, stmts)
            self._ready = True

    async def put_call(self, fact: dict[str, Any], utterances: list[dict[str, Any]], embeddings: np.ndarray) -> None:
        """One call's row and its uncovered utterances; a call scored again replaces both."""
        await self.init()
        now = time.time()
        if self.db.vault is not None and fact.get("customer_key"):
            # a keyed hash: equal for one customer's calls, not reversible by trying every number
            fact = {**fact, "customer_key": self.db.vault.blind(str(fact["customer_key"]))}
        async with self.db.transaction():
            await self.db.execute(
                "INSERT INTO call_facts (call_id, agent_id, queue, customer_key, channel, started_at, handle_s, driver, outcome,"
                " qa_score, csat_estimate, fact, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (call_id) DO UPDATE SET agent_id = excluded.agent_id, queue = excluded.queue,"
                " customer_key = excluded.customer_key, channel = excluded.channel, started_at = excluded.started_at,"
                " handle_s = excluded.handle_s, driver = excluded.driver, outcome = excluded.outcome,"
                " qa_score = excluded.qa_score, csat_estimate = excluded.csat_estimate, fact = excluded.fact,"
                " created_at = excluded.created_at",
                (fact["call_id"], fact.get("agent_id"), fact.get("queue"), fact.get("customer_key"), fact.get("channel"),
                 fact.get("started_at"), fact.get("handle_s"), fact.get("driver"), fact.get("outcome"), fact.get("qa_score"),
                 fact.get("csat_estimate"), json.dumps(fact, default=str), now))  # fmt: skip
            adopted = {r["segment_id"]: r["adopted_intent"] for r in await self.db.fetchall(
                "SELECT segment_id, adopted_intent FROM topic_utterances WHERE call_id = ? AND adopted_intent IS NOT NULL",
                (fact["call_id"],))}  # fmt: skip
            await self.db.execute("DELETE FROM topic_utterances WHERE call_id = ?", (fact["call_id"],))
            if utterances:
                await self.db.executemany(
                    "INSERT INTO topic_utterances (call_id, segment_id, ts, text, embedding, adopted_intent, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(u["call_id"], u.get("segment_id"), u.get("ts"), Sealed(u["call_id"], u["text"]), pack(e), adopted.get(u.get("segment_id")), now)
                     for u, e in zip(utterances, embeddings, strict=True)])  # fmt: skip

    async def facts(self, since: float | None = None, until: float | None = None) -> list[Any]:
        """Fact rows of calls that started in [since, until), oldest first, still encoded:
        decoding 20 000 of them takes a tenth of a second, so `parse_facts` runs off the loop."""
        await self.init()
        cond, params = _window("started_at", since, until)
        rows = await self.db.fetchall(f"SELECT fact FROM call_facts WHERE 1 = 1{cond} ORDER BY started_at, call_id", params)
        return [r["fact"] for r in rows]

    async def customer_calls(self, keys: list[str], since: float | None, until: float | None) -> list[dict[str, Any]]:
        """(customer_key, call_id, started_at) of these customers' calls in a window: repeat
        contacts look past the period's edges."""
        if not keys:
            return []
        out: list[dict[str, Any]] = []
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            sql = (f"SELECT customer_key, call_id, started_at FROM call_facts WHERE customer_key IN "
                   f"({', '.join('?' for _ in chunk)})")  # fmt: skip
            cond, params = _window("started_at", since, until)
            out += await self.db.fetchall(sql + cond, (*chunk, *params))
        return out

    async def utterances(self, since: float | None = None, until: float | None = None,
                         limit: int = 5000) -> tuple[list[dict[str, Any]], np.ndarray]:  # fmt: skip
        """The newest uncovered utterances not yet made into an intent, with their vectors."""
        await self.init()
        cond, params = _window("ts", since, until)
        rows = await self.db.fetchall("SELECT id, call_id, segment_id, ts, text, embedding FROM topic_utterances"
                                      f" WHERE adopted_intent IS NULL{cond} ORDER BY id DESC LIMIT ?", (*params, int(limit)))
        rows.reverse()
        emb = np.stack([unpack(r.pop("embedding")) for r in rows]) if rows else np.zeros((0, 384), np.float32)
        return rows, emb

    async def utterance_texts(self, ids: list[int]) -> list[dict[str, Any]]:
        await self.init()
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        return await self.db.fetchall(
            f"SELECT id, call_id, text, adopted_intent FROM topic_utterances WHERE id IN ({marks}) ORDER BY id",
            tuple(int(i) for i in ids))

    async def adopt(self, ids: list[int], intent: str) -> None:
        marks = ", ".join("?" for _ in ids)
        await self.db.execute(f"UPDATE topic_utterances SET adopted_intent = ? WHERE id IN ({marks})",
                              (intent, *[int(i) for i in ids]))  # fmt: skip
