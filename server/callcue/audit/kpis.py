"""Hint KPIs per playbook and per agent, from the audit trail.

Why fact tables next to the log: "time to accept" needs the `hint_shown` and `feedback`
entries of the same hint joined on `hint_id`, which lives inside JSON payloads, and JSON
operators differ between SQLite and PostgreSQL. So `AuditLog.append` projects those entries,
in the same transaction, into two small tables this module owns:

- `hint_facts`: one row per hint (who/which playbook, confidence, intent and masked text when
  shown, and the agent's latest verdict with its time);
- `call_outcomes`: one row per call with its disposition (resolved/escalated/churned).

They are an index over the log, never the source of truth: `rebuild()` replays the log.
Aggregation is portable SQL (COUNT/SUM/CASE/GROUP BY); percentiles are computed in Python
because neither dialect shares a percentile function.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from callcue.privacy.vault import Sealed
from callcue.store.db import Database

if TYPE_CHECKING:
    from callcue.audit.entries import AuditEntry
    from callcue.audit.log import AuditLog

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("kpis_001_facts", [
        """CREATE TABLE hint_facts (
            hint_id TEXT PRIMARY KEY,
            call_id TEXT,
            agent_id TEXT,
            playbook_id TEXT,
            playbook_version TEXT,
            confidence {float},
            intent TEXT,
            text TEXT,
            shown_at {float},
            shown_seq {bigint},
            feedback TEXT,
            feedback_at {float},
            feedback_seq {bigint},
            correction {json}
        )""",
        "CREATE INDEX hint_facts_playbook ON hint_facts (playbook_id, shown_at)",
        "CREATE INDEX hint_facts_agent ON hint_facts (agent_id, shown_at)",
        "CREATE INDEX hint_facts_call ON hint_facts (call_id)",
        """CREATE TABLE call_outcomes (
            call_id TEXT PRIMARY KEY,
            agent_id TEXT,
            outcome TEXT NOT NULL,
            ts {float} NOT NULL,
            seq {bigint} NOT NULL
        )""",
    ]),
]  # fmt: skip


async def migrate(db: Database) -> None:
    for name, stmts in MIGRATIONS:
        await db.migrate(name, stmts)


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


async def project(db: Database, e: AuditEntry) -> None:
    """Fold one audit entry into the fact tables (called inside the append transaction)."""
    p = e.payload
    if e.kind == "hint_shown":
        conf = p.get("confidence")
        await db.execute(
            """INSERT INTO hint_facts (hint_id, call_id, agent_id, playbook_id, playbook_version, confidence,
                                       intent, text, shown_at, shown_seq)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (hint_id) DO UPDATE SET
                 call_id = excluded.call_id, agent_id = excluded.agent_id, playbook_id = excluded.playbook_id,
                 playbook_version = excluded.playbook_version, confidence = excluded.confidence,
                 intent = excluded.intent, text = excluded.text, shown_at = excluded.shown_at,
                 shown_seq = excluded.shown_seq""",
            (p["hint_id"], e.call_id, e.agent_id, e.playbook_id, e.playbook_version,
             None if conf is None else float(conf), _str_or_none(p.get("intent")), Sealed(e.call_id, _str_or_none(p.get("text"))),
             e.ts, e.seq),
        )  # fmt: skip
    elif e.kind == "feedback":
        corr = p.get("correction")
        await db.execute(
            """INSERT INTO hint_facts (hint_id, call_id, agent_id, playbook_id, playbook_version,
                                       feedback, feedback_at, feedback_seq, correction)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (hint_id) DO UPDATE SET
                 feedback = excluded.feedback, feedback_at = excluded.feedback_at,
                 feedback_seq = excluded.feedback_seq, correction = excluded.correction,
                 call_id = COALESCE(hint_facts.call_id, excluded.call_id),
                 agent_id = COALESCE(hint_facts.agent_id, excluded.agent_id),
                 playbook_id = COALESCE(hint_facts.playbook_id, excluded.playbook_id),
                 playbook_version = COALESCE(hint_facts.playbook_version, excluded.playbook_version)""",
            (p["hint_id"], e.call_id, e.agent_id, e.playbook_id, e.playbook_version, p["action"], e.ts, e.seq,
             Sealed(e.call_id, None if corr in (None, "") else json.dumps(corr, sort_keys=True))),
        )  # fmt: skip
    elif e.kind == "disposition":
        await db.execute(
            """INSERT INTO call_outcomes (call_id, agent_id, outcome, ts, seq) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (call_id) DO UPDATE SET agent_id = COALESCE(excluded.agent_id, call_outcomes.agent_id),
                 outcome = excluded.outcome, ts = excluded.ts, seq = excluded.seq""",
            (e.call_id, e.agent_id, p["outcome"], e.ts, e.seq),
        )


async def rebuild(audit: AuditLog) -> int:
    """Recompute the fact tables from the audit log (after a restore, or a projection change)."""
    await audit.init()
    db = audit.db
    n = 0
    async with db.transaction():
        await db.execute("DELETE FROM hint_facts")
        await db.execute("DELETE FROM call_outcomes")
        async for e in audit.iter_entries(kind=["hint_shown", "feedback", "disposition"]):
            await project(db, e)
            n += 1
    return n


def _window(col: str, since: float | None, until: float | None) -> tuple[str, list[Any]]:
    sql, params = "", []
    if since is not None:
        sql += f" AND {col} >= ?"
        params.append(since)
    if until is not None:
        sql += f" AND {col} < ?"
        params.append(until)
    return sql, params


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


async def kpis(db: Database, by: Literal["playbook", "agent"] = "playbook", since: Any = None,
               until: Any = None) -> list[dict[str, Any]]:  # fmt: skip
    """One dict per playbook (or agent) with hints shown in [since, until).

    Keys: `playbook_id`/`agent_id`, shown, accepted, dismissed, corrected, responded,
    acceptance_rate (accepted / responded, None without responses), response_rate
    (responded / shown), time_to_accept_p50_s / _p95_s (feedback time - shown time of
    accepted hints), calls (distinct calls with a shown hint) and resolved / escalated /
    churned (dispositions of those calls; per agent also calls with no hint).
    """
    from callcue.audit.entries import to_epoch

    if by not in ("playbook", "agent"):
        raise ValueError(f"by must be 'playbook' or 'agent', got {by!r}")
    await migrate(db)
    col = f"{by}_id"
    s, u = to_epoch(since), to_epoch(until)
    win, wparams = _window("shown_at", s, u)
    rows = await db.fetchall(
        f"""SELECT {col} AS k, COUNT(*) AS shown,
                   SUM(CASE WHEN feedback = 'accepted' THEN 1 ELSE 0 END) AS accepted,
                   SUM(CASE WHEN feedback = 'dismissed' THEN 1 ELSE 0 END) AS dismissed,
                   SUM(CASE WHEN feedback = 'corrected' THEN 1 ELSE 0 END) AS corrected,
                   COUNT(DISTINCT call_id) AS calls
            FROM hint_facts WHERE shown_at IS NOT NULL{win} GROUP BY {col}""",
        wparams,
    )
    lat_rows = await db.fetchall(
        f"""SELECT {col} AS k, feedback_at - shown_at AS dt FROM hint_facts
            WHERE shown_at IS NOT NULL AND feedback = 'accepted' AND feedback_at IS NOT NULL{win}""",
        wparams,
    )
    owin, oparams = _window("ts", s, u)
    extra = ""
    if by == "agent":
        extra = f" UNION SELECT agent_id AS k, call_id FROM call_outcomes WHERE agent_id IS NOT NULL{owin}"
    out_rows = await db.fetchall(
        f"""SELECT h.k AS k, o.outcome AS outcome, COUNT(*) AS n
            FROM (SELECT DISTINCT {col} AS k, call_id FROM hint_facts
                  WHERE shown_at IS NOT NULL AND call_id IS NOT NULL{win}{extra}) h
            JOIN call_outcomes o ON o.call_id = h.call_id
            GROUP BY h.k, o.outcome""",
        wparams + (oparams if by == "agent" else []),
    )
    lat: dict[Any, list[float]] = defaultdict(list)
    for r in lat_rows:
        lat[r["k"]].append(max(0.0, float(r["dt"])))
    outcomes: dict[Any, dict[str, int]] = defaultdict(dict)
    for r in out_rows:
        outcomes[r["k"]][r["outcome"]] = int(r["n"])
    keys = {r["k"] for r in rows} | set(outcomes)
    by_key = {r["k"]: r for r in rows}
    result = []
    for k in sorted(keys, key=lambda x: (x is None, x or "")):
        r = by_key.get(k, {})
        shown = int(r.get("shown") or 0)
        acc, dis, cor = (int(r.get(c) or 0) for c in ("accepted", "dismissed", "corrected"))
        responded = acc + dis + cor
        oc = outcomes.get(k, {})
        result.append({
            col: k, "shown": shown, "accepted": acc, "dismissed": dis, "corrected": cor, "responded": responded,
            "acceptance_rate": round(acc / responded, 4) if responded else None,
            "response_rate": round(responded / shown, 4) if shown else None,
            "time_to_accept_p50_s": _pct(lat.get(k, []), 50), "time_to_accept_p95_s": _pct(lat.get(k, []), 95),
            "calls": int(r.get("calls") or 0),
            "resolved": oc.get("resolved", 0), "escalated": oc.get("escalated", 0), "churned": oc.get("churned", 0),
        })  # fmt: skip
    return result
