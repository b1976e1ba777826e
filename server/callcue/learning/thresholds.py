"""Confidence-threshold versions per playbook: calibration from feedback, promote, rollback."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from callcue.audit.log import canonical_json, to_epoch
from callcue.learning.base import LearningBase
from callcue.learning.models import (
    BandStat,
    Calibration,
    LearningError,
    ShadowReport,
    ThresholdVersion,
    _band_of,
)


class ThresholdVersions(LearningBase):
    """One row per version in `playbook_thresholds`; the active one is what the engine uses."""

    if TYPE_CHECKING:  # provided by ShadowMode (shadow.py), combined with this in Learning
        async def compare(self, version: int) -> ShadowReport: ...

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

    def forget_thresholds(self) -> None:
        """Another cluster node promoted or rolled back a threshold: read them afresh."""
        self._active_cache.clear()

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

