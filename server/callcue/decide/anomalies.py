"""Is a playbook misbehaving? Rolling dismissal, override and firing rates against its bounds.

A playbook that agents dismiss 9 times out of 10, or that supervisors keep overriding, or
that suddenly fires thousands of times an hour (a detector regression, a changed prompt) is
doing harm while looking "up". We alert on the transition into breach, not on every event,
so supervisors get one message per incident, and we can pause the playbook automatically.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from callcue.decide.playbooks import AnomalyBounds

Outcome = Literal["accepted", "dismissed", "corrected"]


@dataclass
class Anomaly:
    playbook_id: str
    metric: Literal["dismissal_rate", "override_rate", "fires_per_hour"]
    value: float
    bound: float
    samples: int
    auto_pause: bool

    def to_dict(self) -> dict[str, object]:
        return {"playbook_id": self.playbook_id, "metric": self.metric, "value": round(self.value, 4),
                "bound": self.bound, "samples": self.samples, "auto_pause": self.auto_pause}  # fmt: skip


@dataclass
class _Stats:
    outcomes: deque[str]  # feedback outcomes, newest last
    decisions: deque[bool]  # per executed/decided firing: was it overridden?
    fires: deque[float] = field(default_factory=deque)  # wall times of firings in the last hour
    breached: set[str] = field(default_factory=set)
    totals: dict[str, int] = field(default_factory=lambda: {"fired": 0, "accepted": 0, "dismissed": 0,
                                                            "corrected": 0, "overridden": 0})  # fmt: skip


class AnomalyMonitor:
    """Per-playbook counters; `record_*` return the anomalies that *newly* started."""

    HOUR = 3600.0

    def __init__(self, bounds: dict[str, AnomalyBounds], clock: Callable[[], float] = time.monotonic) -> None:
        self._bounds = dict(bounds)
        self._clock = clock
        self._stats: dict[str, _Stats] = {}

    def _s(self, pid: str) -> _Stats:
        st = self._stats.get(pid)
        if st is None:
            w = self._bounds.get(pid, AnomalyBounds()).window
            st = self._stats[pid] = _Stats(deque(maxlen=w), deque(maxlen=w))
        return st

    def record_fire(self, pid: str) -> list[Anomaly]:
        st = self._s(pid)
        now = self._clock()
        st.fires.append(now)
        st.decisions.append(False)
        st.totals["fired"] += 1
        return self._check(pid)

    def record_feedback(self, pid: str, outcome: Outcome) -> list[Anomaly]:
        st = self._s(pid)
        st.outcomes.append(outcome)
        st.totals[outcome] += 1
        return self._check(pid)

    def record_override(self, pid: str) -> list[Anomaly]:
        st = self._s(pid)
        # the override replaces the most recent not-yet-overridden firing
        for i in range(len(st.decisions) - 1, -1, -1):
            if not st.decisions[i]:
                st.decisions[i] = True
                break
        else:
            st.decisions.append(True)
        st.totals["overridden"] += 1
        return self._check(pid)

    def rates(self, pid: str) -> dict[str, float | int | None]:
        st = self._s(pid)
        now = self._clock()
        while st.fires and now - st.fires[0] > self.HOUR:
            st.fires.popleft()
        n_out = len(st.outcomes)
        n_dec = len(st.decisions)
        return {
            "dismissal_rate": (sum(o == "dismissed" for o in st.outcomes) / n_out) if n_out else None,
            "override_rate": (sum(st.decisions) / n_dec) if n_dec else None,
            "fires_last_hour": len(st.fires),
            "feedback_samples": n_out,
            "decision_samples": n_dec,
            **{f"total_{k}": v for k, v in st.totals.items()},
        }

    def _check(self, pid: str) -> list[Anomaly]:
        b = self._bounds.get(pid)
        if b is None:
            return []
        st = self._s(pid)
        r = self.rates(pid)
        current: dict[str, Anomaly] = {}
        if b.max_dismissal_rate is not None and r["feedback_samples"] >= b.min_samples:  # type: ignore[operator]
            v = float(r["dismissal_rate"] or 0.0)
            if v > b.max_dismissal_rate:
                current["dismissal_rate"] = Anomaly(pid, "dismissal_rate", v, b.max_dismissal_rate,
                                                    int(r["feedback_samples"] or 0), b.auto_pause)  # fmt: skip
        if b.max_override_rate is not None and r["decision_samples"] >= b.min_samples:  # type: ignore[operator]
            v = float(r["override_rate"] or 0.0)
            if v > b.max_override_rate:
                current["override_rate"] = Anomaly(pid, "override_rate", v, b.max_override_rate,
                                                   int(r["decision_samples"] or 0), b.auto_pause)  # fmt: skip
        if b.max_fires_per_hour is not None:
            v = float(r["fires_last_hour"] or 0)
            if v > b.max_fires_per_hour:
                current["fires_per_hour"] = Anomaly(pid, "fires_per_hour", v, b.max_fires_per_hour, int(v), b.auto_pause)
        new = [a for m, a in current.items() if m not in st.breached]
        st.breached = set(current)
        return new

    def reset(self, pid: str) -> None:
        """Forget the window (after a supervisor fixed and resumed the playbook)."""
        self._stats.pop(pid, None)
