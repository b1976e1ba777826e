"""Learning from agent feedback, with every change versioned and audited.

Three loops, all driven by the KPI facts that `AuditLog` projects from `hint_shown` and
`feedback` entries (see `callcue.decide.kpis`):

1. Threshold calibration. Per playbook, acceptance rate per confidence band (0.1 wide by
   default). The proposed threshold is the lower edge of the lowest band such that it and
   every better-populated band above it reach the target acceptance rate; bands with too few
   responses neither pass nor fail. The move is bounded (`max_step`) so one bad week cannot
   swing a playbook far, and it is only a *proposal*: a new row in `playbook_thresholds`
   (status proposed -> shadow -> active -> retired, with its parent version).
2. Labelled data. Hints the agent accepted (label = the hint's intent) or corrected (label =
   the correction) become intent examples; each build is a new immutable dataset version.
3. Shadow mode. A candidate threshold is evaluated on live traffic without being shown: the
   engine calls `record_shadow()` with what the candidate would have done, `compare()` reports
   agreement and estimated acceptance against the active version, then a human `promote()`s
   or `rollback()`s. Promotion and rollback are audited (`threshold_changed`).

Versions are global integers (one sequence across playbooks) so `record_shadow(version, ...)`
needs nothing else to identify the candidate.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from callcue.decide.audit import AuditLog, canonical_json, to_epoch
from callcue.store.db import Database

STATUSES = ("proposed", "shadow", "active", "retired")

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("learning_001", [
        """CREATE TABLE playbook_thresholds (
            version {pk},
            playbook_id TEXT NOT NULL,
            threshold {float} NOT NULL,
            status TEXT NOT NULL,
            parent_version {bigint},
            created_at {float} NOT NULL,
            created_by TEXT NOT NULL,
            reason {json} NOT NULL
        )""",
        "CREATE INDEX playbook_thresholds_pb ON playbook_thresholds (playbook_id, status)",
        """CREATE TABLE shadow_decisions (
            id {pk},
            version {bigint} NOT NULL,
            decision_id TEXT NOT NULL,
            hint_id TEXT,
            call_id TEXT,
            confidence {float},
            active_fired INTEGER NOT NULL,
            would_fire INTEGER NOT NULL,
            feedback TEXT,
            ts {float} NOT NULL
        )""",
        "CREATE INDEX shadow_decisions_v ON shadow_decisions (version)",
        """CREATE TABLE intent_datasets (
            version {pk},
            parent_version {bigint},
            created_at {float} NOT NULL,
            created_by TEXT NOT NULL,
            n_examples {bigint} NOT NULL,
            digest TEXT NOT NULL
        )""",
        """CREATE TABLE intent_examples (
            id {pk},
            dataset_version {bigint} NOT NULL,
            text TEXT NOT NULL,
            intent TEXT NOT NULL,
            source TEXT NOT NULL,
            hint_id TEXT,
            call_id TEXT
        )""",
        "CREATE INDEX intent_examples_v ON intent_examples (dataset_version)",
    ]),
    # dataset versions get a review lifecycle like thresholds: proposed -> active -> retired;
    # `replaced_version` is the version that was active before this one, the rollback target
    ("learning_002_dataset_status", [
        "ALTER TABLE intent_datasets ADD COLUMN status TEXT NOT NULL DEFAULT 'proposed'",
        "ALTER TABLE intent_datasets ADD COLUMN replaced_version {bigint}",
    ]),
]  # fmt: skip


class LearningError(ValueError):
    """A versioning request that does not fit the current state (e.g. promoting a retired version)."""


@dataclass(frozen=True, slots=True)
class ThresholdVersion:
    version: int
    playbook_id: str
    threshold: float
    status: str
    parent_version: int | None
    created_at: float
    created_by: str
    reason: dict[str, Any]

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> ThresholdVersion:
        return cls(version=int(r["version"]), playbook_id=r["playbook_id"], threshold=float(r["threshold"]),
                   status=r["status"], parent_version=None if r["parent_version"] is None else int(r["parent_version"]),
                   created_at=float(r["created_at"]), created_by=r["created_by"], reason=json.loads(r["reason"]))  # fmt: skip


@dataclass(frozen=True, slots=True)
class BandStat:
    lo: float
    hi: float
    shown: int
    responded: int
    accepted: int

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.responded if self.responded else None


@dataclass(frozen=True, slots=True)
class Calibration:
    playbook_id: str
    current: float
    proposed: float
    target: float
    bands: list[BandStat] = field(default_factory=list)
    reason: str = ""

    @property
    def changed(self) -> bool:
        return not math.isclose(self.current, self.proposed, abs_tol=1e-9)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for b, src in zip(d["bands"], self.bands):
            b["acceptance_rate"] = None if src.acceptance_rate is None else round(src.acceptance_rate, 4)
        return d


@dataclass(frozen=True, slots=True)
class ShadowReport:
    version: int
    playbook_id: str
    decisions: int
    agreement: float | None  # share of decisions where candidate and active agree on firing
    active_fire_rate: float | None
    candidate_fire_rate: float | None
    active_acceptance: float | None  # accepted / responded among hints the active version showed
    candidate_estimated_acceptance: float | None  # same, restricted to ones the candidate would show
    candidate_unobserved: int  # candidate would fire, active did not: no feedback exists for these
    with_feedback: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    version: int
    parent_version: int | None
    created_at: float
    n_examples: int
    digest: str
    status: str = "proposed"
    created_by: str = ""
    replaced_version: int | None = None

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> DatasetVersion:
        return cls(int(r["version"]), None if r["parent_version"] is None else int(r["parent_version"]),
                   float(r["created_at"]), int(r["n_examples"]), r["digest"], r["status"], r["created_by"],
                   None if r["replaced_version"] is None else int(r["replaced_version"]))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _band_of(conf: float, width: float) -> int:
    # the epsilon keeps 0.3 (stored as 0.29999...) in the 0.3 band
    return min(math.floor(conf / width + 1e-9), round(1 / width) - 1)


def _label_from_correction(raw: str | None) -> str | None:
    """The corrected intent: a JSON string, or an object with an "intent" key."""
    if raw is None:
        return None
    try:
        v = json.loads(raw)
    except ValueError:
        return None
    if isinstance(v, str) and v.strip():
        return v.strip()
    if isinstance(v, dict) and isinstance(v.get("intent"), str) and v["intent"].strip():
        return v["intent"].strip()
    return None


class Learning:
    """Threshold versions, shadow evaluation and intent datasets on one database + audit log."""

    def __init__(self, db: Database, audit: AuditLog, *, clock: Any = time.time) -> None:
        self.db = db
        self.audit = audit
        self.clock = clock
        self._ready = False
        self._active_cache: dict[str, float | None] = {}
        #: awaited after a dataset version is promoted or rolled back: the server retrains
        #: its live intent detector here (understand/suite.py retrain_intents)
        self.on_dataset_change: Any = None

    async def init(self) -> Learning:
        if not self._ready:
            await self.audit.init()
            for name, stmts in MIGRATIONS:
                await self.db.migrate(name, stmts)
            self._ready = True
        return self

    # ---------------------------------------------------------------- threshold versions

    async def version(self, version: int) -> ThresholdVersion:
        await self.init()
        row = await self.db.fetchone("SELECT * FROM playbook_thresholds WHERE version = ?", (int(version),))
        if row is None:
            raise LearningError(f"no threshold version {version}")
        return ThresholdVersion.from_row(row)

    async def versions(self, playbook_id: str) -> list[ThresholdVersion]:
        await self.init()
        rows = await self.db.fetchall("SELECT * FROM playbook_thresholds WHERE playbook_id = ? ORDER BY version",
                                      (playbook_id,))  # fmt: skip
        return [ThresholdVersion.from_row(r) for r in rows]

    async def active(self, playbook_id: str) -> ThresholdVersion | None:
        await self.init()
        row = await self.db.fetchone(
            "SELECT * FROM playbook_thresholds WHERE playbook_id = ? AND status = 'active' ORDER BY version DESC",
            (playbook_id,),
        )
        return ThresholdVersion.from_row(row) if row else None

    async def threshold_for(self, playbook_id: str, default: float) -> float:
        """The confidence threshold the engine should apply now: the active version's, else the
        playbook file's `default`. Cached in memory and refreshed by promote/rollback (of this process)."""
        if playbook_id not in self._active_cache:
            act = await self.active(playbook_id)
            self._active_cache[playbook_id] = act.threshold if act else None
        cached = self._active_cache[playbook_id]
        return default if cached is None else cached

    async def shadow_candidates(self, playbook_id: str | None = None) -> list[ThresholdVersion]:
        """Versions in shadow mode (the engine evaluates these on every matching signal)."""
        await self.init()
        sql, params = "SELECT * FROM playbook_thresholds WHERE status = 'shadow'", []
        if playbook_id is not None:
            sql += " AND playbook_id = ?"
            params.append(playbook_id)
        return [ThresholdVersion.from_row(r) for r in await self.db.fetchall(sql + " ORDER BY version", params)]

    async def add_threshold(self, playbook_id: str, threshold: float, *, status: str = "proposed",
                            parent_version: int | None = None, actor: str = "system",
                            reason: dict[str, Any] | None = None) -> ThresholdVersion:  # fmt: skip
        """Store a new version. `status="active"` (e.g. seeding from the playbook file) retires
        the current active one and takes it as parent."""
        if not playbook_id:
            raise ValueError("playbook_id must be non-empty")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
        if status not in ("proposed", "shadow", "active"):
            raise ValueError(f"a new version's status must be proposed, shadow or active, got {status!r}")
        await self.init()
        async with self.db.transaction():
            current = await self.active(playbook_id)
            if parent_version is None and current is not None:
                parent_version = current.version
            if status == "active" and current is not None:
                await self.db.execute("UPDATE playbook_thresholds SET status = 'retired' WHERE version = ?",
                                      (current.version,))  # fmt: skip
            row = await self.db.fetchone(
                """INSERT INTO playbook_thresholds (playbook_id, threshold, status, parent_version, created_at,
                                                    created_by, reason)
                   VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *""",
                (playbook_id, float(threshold), status, parent_version, float(self.clock()), actor,
                 canonical_json(reason or {})),
            )  # fmt: skip
            assert row is not None
            v = ThresholdVersion.from_row(row)
            await self.audit.append("threshold_changed", playbook_id=playbook_id, actor=actor, payload={
                "change": "created", "version": v.version, "status": status, "threshold": v.threshold,
                "parent_version": parent_version, "previous_active": current.version if current else None,
                "reason": reason or {}})  # fmt: skip
        self._active_cache.pop(playbook_id, None)
        return v

    async def band_stats(self, playbook_id: str, *, band: float = 0.1, since: Any = None,
                         until: Any = None) -> list[BandStat]:  # fmt: skip
        """Hints shown per confidence band with how many got a response and how many were accepted."""
        if not 0.01 <= band <= 0.5:
            raise ValueError(f"band width must be in [0.01, 0.5], got {band}")
        await self.init()
        sql = ("SELECT confidence, feedback FROM hint_facts WHERE playbook_id = ? AND shown_at IS NOT NULL"
               " AND confidence IS NOT NULL")  # fmt: skip
        params: list[Any] = [playbook_id]
        if (s := to_epoch(since)) is not None:
            sql += " AND shown_at >= ?"
            params.append(s)
        if (u := to_epoch(until)) is not None:
            sql += " AND shown_at < ?"
            params.append(u)
        n = round(1 / band)
        shown, responded, accepted = [0] * n, [0] * n, [0] * n
        for r in await self.db.fetchall(sql, params):
            b = _band_of(float(r["confidence"]), band)
            shown[b] += 1
            if r["feedback"] is not None:
                responded[b] += 1
                accepted[b] += r["feedback"] == "accepted"
        return [BandStat(round(i * band, 6), round(min(1.0, (i + 1) * band), 6), shown[i], responded[i], accepted[i])
                for i in range(n) if shown[i]]  # fmt: skip

    async def calibrate(self, playbook_id: str, *, current: float | None = None, target: float = 0.6,
                        band: float = 0.1, min_count: int = 20, max_step: float = 0.1, since: Any = None,
                        until: Any = None) -> Calibration:  # fmt: skip
        """Compute (do not store) the threshold the feedback supports. `current` defaults to the
        active version; pass the playbook's min_confidence when no version exists yet."""
        if not 0 < target <= 1:
            raise ValueError(f"target acceptance must be in (0, 1], got {target}")
        if min_count < 1 or max_step <= 0:
            raise ValueError("min_count must be >= 1 and max_step > 0")
        if current is None:
            act = await self.active(playbook_id)
            if act is None:
                raise LearningError(f"playbook {playbook_id!r} has no active threshold version; pass current=")
            current = act.threshold
        bands = await self.band_stats(playbook_id, band=band, since=since, until=until)
        judged = [b for b in bands if b.responded >= min_count]
        if not judged:
            return Calibration(playbook_id, current, current, target, bands,
                               f"no band has {min_count}+ responses yet")  # fmt: skip
        lowest_ok: float | None = None
        for b in sorted(judged, key=lambda b: b.lo, reverse=True):
            if (b.acceptance_rate or 0.0) >= target:
                lowest_ok = b.lo
            else:
                break
        if lowest_ok is None:
            top = max(judged, key=lambda b: b.lo)
            raw = top.hi  # even the best-populated top band misses the target: raise past it
            why = f"top judged band [{top.lo}, {top.hi}) accepts {top.acceptance_rate:.2f} < {target}"
        else:
            raw = lowest_ok
            why = f"bands from {lowest_ok} up accept >= {target}"
        bounded = min(max(raw, current - max_step), current + max_step)
        bounded = round(min(1.0, max(0.0, bounded)), 6)
        if not math.isclose(bounded, raw, abs_tol=1e-9):
            why += f"; step bounded to {max_step} (wanted {raw})"
        return Calibration(playbook_id, current, bounded, target, bands, why)

    async def propose_threshold(self, playbook_id: str, *, actor: str = "system", **kwargs: Any) -> ThresholdVersion | None:
        """Calibrate and, if the threshold should move, store it as a `proposed` version."""
        cal = await self.calibrate(playbook_id, **kwargs)
        if not cal.changed:
            return None
        return await self.add_threshold(playbook_id, cal.proposed, status="proposed", actor=actor,
                                        reason={"calibration": cal.to_dict()})  # fmt: skip

    async def _set_status(self, v: ThresholdVersion, status: str, actor: str, change: str, **extra: Any) -> None:
        await self.db.execute("UPDATE playbook_thresholds SET status = ? WHERE version = ?", (status, v.version))
        await self.audit.append("threshold_changed", playbook_id=v.playbook_id, actor=actor, payload={
            "change": change, "version": v.version, "from": v.status, "status": status, "threshold": v.threshold,
            **extra})  # fmt: skip

    async def start_shadow(self, version: int, *, actor: str = "system") -> ThresholdVersion:
        """proposed -> shadow: the engine starts evaluating it silently."""
        async with self.db.transaction():
            v = await self.version(version)
            if v.status != "proposed":
                raise LearningError(f"version {version} is {v.status}; only a proposed version can enter shadow mode")
            await self._set_status(v, "shadow", actor, "shadow_started")
        return await self.version(version)

    async def record_shadow(self, version: int, decision: dict[str, Any], would_fire: bool,
                            actual_feedback: str | None = None) -> None:  # fmt: skip
        """What a shadow candidate would have done for one engine decision.

        `decision` needs `decision_id` (e.g. the signal id) and `active_fired` (did the active
        version show a hint); optional `hint_id` (feedback arriving later is joined through it),
        `call_id`, `confidence`. `actual_feedback` is accepted/dismissed/corrected when known now.
        """
        if not isinstance(decision, dict) or not decision.get("decision_id"):
            raise ValueError("decision must be a dict with a non-empty 'decision_id'")
        if not isinstance(decision.get("active_fired"), bool):
            raise ValueError("decision['active_fired'] must be a bool (did the active version show a hint?)")
        if actual_feedback not in (None, "accepted", "dismissed", "corrected"):
            raise ValueError(f"actual_feedback must be accepted, dismissed, corrected or None, got {actual_feedback!r}")
        await self.init()
        conf = decision.get("confidence")
        await self.db.execute(
            """INSERT INTO shadow_decisions (version, decision_id, hint_id, call_id, confidence, active_fired,
                                             would_fire, feedback, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (int(version), str(decision["decision_id"]), decision.get("hint_id"), decision.get("call_id"),
             None if conf is None else float(conf), int(decision["active_fired"]), int(bool(would_fire)),
             actual_feedback, float(self.clock())),
        )  # fmt: skip

    async def compare(self, version: int) -> ShadowReport:
        """Candidate vs active on the decisions recorded for this shadow version."""
        v = await self.version(version)
        rows = await self.db.fetchall(
            """SELECT s.active_fired AS af, s.would_fire AS wf, COALESCE(s.feedback, h.feedback) AS fb
               FROM shadow_decisions s LEFT JOIN hint_facts h ON h.hint_id = s.hint_id
               WHERE s.version = ?""",
            (v.version,),
        )
        n = len(rows)
        agree = sum(1 for r in rows if bool(r["af"]) == bool(r["wf"]))
        act = [r for r in rows if r["af"] and r["fb"] is not None]
        cand = [r for r in act if r["wf"]]

        def rate(rs: list[dict[str, Any]]) -> float | None:
            return round(sum(r["fb"] == "accepted" for r in rs) / len(rs), 4) if rs else None

        return ShadowReport(
            version=v.version, playbook_id=v.playbook_id, decisions=n,
            agreement=round(agree / n, 4) if n else None,
            active_fire_rate=round(sum(bool(r["af"]) for r in rows) / n, 4) if n else None,
            candidate_fire_rate=round(sum(bool(r["wf"]) for r in rows) / n, 4) if n else None,
            active_acceptance=rate(act), candidate_estimated_acceptance=rate(cand),
            candidate_unobserved=sum(1 for r in rows if r["wf"] and not r["af"]), with_feedback=len(act),
        )  # fmt: skip

    async def promote(self, version: int, *, actor: str = "system") -> ThresholdVersion:
        """proposed|shadow -> active; the previous active version is retired (and becomes the
        rollback target). The shadow report at promotion time is kept in the audit entry."""
        async with self.db.transaction():
            v = await self.version(version)
            if v.status not in ("proposed", "shadow"):
                raise LearningError(f"version {version} is {v.status}; only proposed or shadow versions can be promoted")
            current = await self.active(v.playbook_id)
            report = (await self.compare(version)).to_dict() if v.status == "shadow" else None
            if current is not None:
                await self._set_status(current, "retired", actor, "retired", replaced_by=v.version)
                if v.parent_version != current.version:  # rollback must return to what was really active
                    await self.db.execute("UPDATE playbook_thresholds SET parent_version = ? WHERE version = ?",
                                          (current.version, v.version))  # fmt: skip
            await self._set_status(v, "active", actor, "promoted",
                                   previous_active=current.version if current else None, shadow_report=report)  # fmt: skip
        self._active_cache.pop(v.playbook_id, None)
        return await self.version(version)

    async def rollback(self, playbook_id: str, *, actor: str = "system") -> ThresholdVersion:
        """Retire the active version and reactivate its parent; returns the reactivated version."""
        async with self.db.transaction():
            current = await self.active(playbook_id)
            if current is None:
                raise LearningError(f"playbook {playbook_id!r} has no active threshold version to roll back")
            if current.parent_version is None:
                raise LearningError(f"active version {current.version} of {playbook_id!r} has no parent to roll back to")
            parent = await self.version(current.parent_version)
            await self._set_status(current, "retired", actor, "rolled_back", restored=parent.version)
            await self._set_status(parent, "active", actor, "restored", rolled_back=current.version)
        self._active_cache.pop(playbook_id, None)
        return await self.version(parent.version)

    # ---------------------------------------------------------------- intent datasets

    async def confirmed_examples(self, since: Any = None) -> list[dict[str, Any]]:
        """(text, intent) pairs agents confirmed: accepted -> the hint's intent, corrected -> the
        correction. Latest verdict per hint; hints without text or label are skipped."""
        await self.init()
        sql = ("SELECT hint_id, call_id, text, intent, feedback, correction FROM hint_facts"
               " WHERE feedback IN ('accepted', 'corrected') AND text IS NOT NULL")  # fmt: skip
        params: list[Any] = []
        if (s := to_epoch(since)) is not None:
            sql += " AND feedback_at >= ?"
            params.append(s)
        out = []
        for r in await self.db.fetchall(sql + " ORDER BY feedback_seq", params):
            label = r["intent"] if r["feedback"] == "accepted" else _label_from_correction(r["correction"])
            text = (r["text"] or "").strip()
            if label and text:
                out.append({"text": text, "intent": label, "source": r["feedback"], "hint_id": r["hint_id"],
                            "call_id": r["call_id"]})  # fmt: skip
        return out

    async def build_intent_dataset(self, *, actor: str = "system") -> DatasetVersion | None:
        """Snapshot all confirmed examples as a new dataset version (None if nothing changed).
        When the same text was confirmed with different labels, the latest verdict wins."""
        examples = await self.confirmed_examples()
        by_text: dict[str, dict[str, Any]] = {}
        for ex in examples:
            by_text[ex["text"].casefold()] = ex
        final = sorted(by_text.values(), key=lambda e: (e["intent"], e["text"]))
        digest = hashlib.sha256(canonical_json([[e["text"], e["intent"]] for e in final]).encode()).hexdigest()
        async with self.db.transaction():
            parent = await self.db.fetchone("SELECT version, digest FROM intent_datasets ORDER BY version DESC LIMIT 1")
            if parent is not None and parent["digest"] == digest:
                return None
            if not final:
                return None
            row = await self.db.fetchone(
                """INSERT INTO intent_datasets (parent_version, created_at, created_by, n_examples, digest)
                   VALUES (?, ?, ?, ?, ?) RETURNING version, created_at""",
                (parent["version"] if parent else None, float(self.clock()), actor, len(final), digest),
            )  # fmt: skip
            assert row is not None
            ver = int(row["version"])
            await self.db.executemany(
                "INSERT INTO intent_examples (dataset_version, text, intent, source, hint_id, call_id) VALUES (?, ?, ?, ?, ?, ?)",
                [(ver, e["text"], e["intent"], e["source"], e["hint_id"], e["call_id"]) for e in final],
            )
            counts: dict[str, int] = {}
            for e in final:
                counts[e["intent"]] = counts.get(e["intent"], 0) + 1
            await self.audit.append("dataset_version_created", actor=actor, payload={
                "dataset": "intents", "version": ver, "parent_version": parent["version"] if parent else None,
                "n_examples": len(final), "per_intent": counts, "digest": digest})  # fmt: skip
        return DatasetVersion(ver, parent["version"] if parent else None, float(row["created_at"]), len(final), digest,
                              "proposed", actor)  # fmt: skip

    async def dataset_examples(self, version: int | None = None) -> list[dict[str, str]]:
        """Examples of one dataset version (latest when None) as {"text", "intent", "source"}."""
        await self.init()
        if version is None:
            version = await self.db.fetchval("SELECT MAX(version) FROM intent_datasets")
            if version is None:
                return []
        rows = await self.db.fetchall(
            "SELECT text, intent, source FROM intent_examples WHERE dataset_version = ? ORDER BY intent, text",
            (int(version),),
        )
        return rows

    async def dataset_versions(self) -> list[DatasetVersion]:
        await self.init()
        rows = await self.db.fetchall("SELECT * FROM intent_datasets ORDER BY version")
        return [DatasetVersion.from_row(r) for r in rows]

    async def dataset_version(self, version: int) -> DatasetVersion:
        await self.init()
        row = await self.db.fetchone("SELECT * FROM intent_datasets WHERE version = ?", (int(version),))
        if row is None:
            raise LearningError(f"no intent dataset version {version}")
        return DatasetVersion.from_row(row)

    async def active_dataset(self) -> DatasetVersion | None:
        """The version the intent detector should train on (None: config examples only)."""
        await self.init()
        row = await self.db.fetchone("SELECT * FROM intent_datasets WHERE status = 'active' ORDER BY version DESC")
        return DatasetVersion.from_row(row) if row else None

    async def compare_datasets(self, version: int, against: int | None = None) -> dict[str, Any]:
        """What a reviewer needs before promoting: examples added, removed and relabelled
        relative to `against` (default: the active version, else nothing)."""
        v = await self.dataset_version(version)
        base = (await self.dataset_version(against)) if against is not None else await self.active_dataset()
        new = {e["text"].casefold(): e for e in await self.dataset_examples(v.version)}
        old = {e["text"].casefold(): e for e in await self.dataset_examples(base.version)} if base else {}
        per_intent: dict[str, int] = {}
        for e in new.values():
            per_intent[e["intent"]] = per_intent.get(e["intent"], 0) + 1
        return {
            "version": v.version, "against": base.version if base else None,
            "added": [{"text": new[k]["text"], "intent": new[k]["intent"]} for k in sorted(new.keys() - old.keys())],
            "removed": [{"text": old[k]["text"], "intent": old[k]["intent"]} for k in sorted(old.keys() - new.keys())],
            "relabelled": [{"text": new[k]["text"], "from": old[k]["intent"], "to": new[k]["intent"]}
                           for k in sorted(new.keys() & old.keys()) if new[k]["intent"] != old[k]["intent"]],
            "per_intent": per_intent,
        }  # fmt: skip

    async def promote_dataset(self, version: int, *, actor: str = "system") -> DatasetVersion:
        """proposed|retired -> active; the previously active version is retired and recorded as
        the rollback target. Retraining on it is the intent detector's job (see docs/playbooks.md)."""
        async with self.db.transaction():
            v = await self.dataset_version(version)
            if v.status == "active":
                raise LearningError(f"intent dataset version {version} is already active")
            current = await self.active_dataset()
            if current is not None:
                await self.db.execute("UPDATE intent_datasets SET status = 'retired' WHERE version = ?", (current.version,))
            await self.db.execute("UPDATE intent_datasets SET status = 'active', replaced_version = ? WHERE version = ?",
                                  (current.version if current else None, v.version))  # fmt: skip
            await self.audit.append("model_version_promoted", actor=actor, payload={
                "dataset": "intents", "change": "promoted", "version": v.version,
                "previous_active": current.version if current else None, "n_examples": v.n_examples,
                "digest": v.digest})  # fmt: skip
        if self.on_dataset_change is not None:
            await self.on_dataset_change()
        return await self.dataset_version(version)

    async def rollback_dataset(self, *, actor: str = "system") -> DatasetVersion | None:
        """Retire the active version and reactivate the one it replaced (None: back to the
        config's own examples)."""
        async with self.db.transaction():
            current = await self.active_dataset()
            if current is None:
                raise LearningError("nothing to roll back: no intent dataset version is active")
            await self.db.execute("UPDATE intent_datasets SET status = 'retired' WHERE version = ?", (current.version,))
            restored = current.replaced_version
            if restored is not None:
                await self.db.execute("UPDATE intent_datasets SET status = 'active' WHERE version = ?", (restored,))
            await self.audit.append("model_version_promoted", actor=actor, payload={
                "dataset": "intents", "change": "rolled_back", "version": restored,
                "rolled_back": current.version})  # fmt: skip
        if self.on_dataset_change is not None:
            await self.on_dataset_change()
        return await self.dataset_version(restored) if restored is not None else None


__all__ = [
    "STATUSES",
    "BandStat",
    "Calibration",
    "DatasetVersion",
    "Learning",
    "LearningError",
    "ShadowReport",
    "ThresholdVersion",
]  # fmt: skip
