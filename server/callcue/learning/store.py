"""Learning from agent feedback, with every change versioned and audited.

Three loops, all driven by the KPI facts that `AuditLog` projects from `hint_shown` and
`feedback` entries (see `callcue.audit.kpis`):

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

from callcue.learning.datasets import IntentDatasets
from callcue.learning.models import (
    STATUSES,
    BandStat,
    Calibration,
    DatasetVersion,
    LearningError,
    ShadowReport,
    ThresholdVersion,
)
from callcue.learning.shadow import ShadowEvaluation

__all__ = ["STATUSES", "BandStat", "Calibration", "DatasetVersion", "Learning", "LearningError", "ShadowReport",
           "ThresholdVersion"]


class Learning(ShadowEvaluation, IntentDatasets):
    """Threshold versions, shadow evaluation and intent datasets on one database + audit log."""
