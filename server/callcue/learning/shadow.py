"""Shadow evaluation: what a candidate threshold would have done on live traffic, never shown."""

from __future__ import annotations

from typing import Any

from callcue.learning.models import (
    LearningError,
    ShadowReport,
    ThresholdVersion,
)
from callcue.learning.thresholds import ThresholdVersions


class ShadowEvaluation(ThresholdVersions):
    """Candidates are threshold versions in status `shadow`; this part records and compares them."""

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

