"""The learning store's tables, versions and reports: plain data, no database calls."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

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
    # examples a supervisor labelled outside hint feedback (analytics: "make this an intent");
    # every later dataset build carries them, as it carries agents' verdicts
    ("learning_003_added_examples", [
        """CREATE TABLE intent_added_examples (
            id {pk},
            text TEXT NOT NULL,
            intent TEXT NOT NULL,
            source TEXT NOT NULL,
            call_id TEXT,
            added_by TEXT NOT NULL,
            added_at {float} NOT NULL
        )""",
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
