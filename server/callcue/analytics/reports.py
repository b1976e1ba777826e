"""Drivers, friction and KPIs over call facts: pure functions a REST call and a test share.

Definitions (docs/analytics.md):
- driver: the call's first reason for contact (its strongest customer intent);
- repeat contact: the same customer (digest of the call's customer id or number) calls again
  within `repeat_days`; first-contact resolution is the share of calls with no such later call,
  counted only for calls whose window has fully passed, so a recent period is neither
  flattered nor penalised by calls whose repeat could still come;
- satisfaction estimate: 1-5 from the customer's sentiment, the ending weighted higher; an
  untrained proxy, not a survey score;
- playbook impact: outcomes of calls where a hint was accepted, only dismissed, shown with no
  verdict, or none was shown. The groups are not randomised, so they show association only.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np

DAY = 86400.0
GROUPS = ("day", "queue", "agent", "channel")


def day_of(ts: float | None) -> str:
    return datetime.fromtimestamp(float(ts or 0), UTC).strftime("%Y-%m-%d")


def _key(fact: dict[str, Any], by: str) -> str:
    if by == "day":
        return day_of(fact.get("started_at"))
    v = fact.get({"agent": "agent_id"}.get(by, by))
    return str(v) if v not in (None, "") else "(none)"


def _mean(xs: Iterable[float | None]) -> float | None:
    v = [float(x) for x in xs if x is not None]
    return round(sum(v) / len(v), 3) if v else None


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 3) if d else None


def drivers(facts: list[dict[str, Any]], by: str = "day", top: int = 10) -> dict[str, Any]:
    """Intent volumes: totals, and per group (day, queue, agent) the count of each driver.
    `trend` compares each driver's share in the later half of the period with the earlier."""
    if by not in GROUPS:
        raise ValueError(f"by must be one of {', '.join(GROUPS)}")
    totals = Counter(f.get("driver") or "(none)" for f in facts)
    names = [d for d, _ in totals.most_common(top)]
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for f in facts:
        table[_key(f, by)][f.get("driver") or "(none)"] += 1
    half = len(facts) // 2
    early = Counter(f.get("driver") or "(none)" for f in facts[:half])
    late = Counter(f.get("driver") or "(none)" for f in facts[half:])
    trend = {d: round(_rate(late[d], len(facts) - half) - _rate(early[d], half), 3)  # type: ignore[operator]
             for d in names if half and len(facts) - half}  # fmt: skip
    return {"calls": len(facts), "by": by,
            "totals": [{"driver": d, "calls": totals[d], "share": _rate(totals[d], len(facts)), "trend": trend.get(d)}
                       for d in names],
            "groups": [{"key": k, "calls": sum(c.values()), "drivers": {d: c[d] for d in names if c[d]}}
                       for k, c in sorted(table.items())]}  # fmt: skip


def repeat_flags(facts: list[dict[str, Any]], contacts: list[dict[str, Any]], repeat_days: float,
                 now: float | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per call with a customer key: is it a repeat (a contact in the days before), and was it
    resolved first time (no contact in the days after; None until those days have passed)."""
    now = time.time() if now is None else now
    window = repeat_days * DAY
    by_customer: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for c in contacts:
        if c.get("started_at") is not None:
            by_customer[c["customer_key"]].append((float(c["started_at"]), str(c["call_id"])))
    for v in by_customer.values():
        v.sort()
    out: dict[str, dict[str, Any]] = {}
    for f in facts:
        key, t = f.get("customer_key"), f.get("started_at")
        if not key or t is None:
            continue
        others = [(s, cid) for s, cid in by_customer.get(key, []) if cid != f["call_id"]]
        before = any(t - window <= s < t or (s == t and cid < f["call_id"]) for s, cid in others)
        after = any(t < s <= t + window or (s == t and cid > f["call_id"]) for s, cid in others)
        # judged only once the window has passed, whatever happened: judging a call with a
        # repeat at once but one without only later would bias a recent period towards 0
        fcr: bool | None = None if now - t < window else not after
        out[f["call_id"]] = {"repeat": before, "fcr": fcr}
    return out


def friction(facts: list[dict[str, Any]], flags: dict[str, dict[str, Any]], by: str = "driver") -> dict[str, Any]:
    """Per driver (or agent, queue): repeat contacts, transfers, escalations, long holds, dead air
    and negative endings, as counts and rates; the worst groups first."""
    key: Callable[[dict[str, Any]], str] = (lambda f: f.get("driver") or "(none)") if by == "driver" else (
        lambda f: _key(f, by))  # fmt: skip
    if by not in ("driver", *GROUPS):
        raise ValueError(f"by must be driver or one of {', '.join(GROUPS)}")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in facts:
        groups[key(f)].append(f)
    rows = []
    for k, fs in groups.items():
        known = [f for f in fs if f["call_id"] in flags]
        rep = sum(1 for f in known if flags[f["call_id"]]["repeat"])
        row: dict[str, Any] = {"key": k, "calls": len(fs),
               "repeat_contacts": rep, "repeat_rate": _rate(rep, len(known)),
               "transfers": sum(int(f.get("transfers") or 0) for f in fs),
               "escalations": sum(int(f.get("escalated") or 0) for f in fs),
               "long_holds": sum(int(f.get("long_holds") or 0) for f in fs),
               "dead_air": sum(int(f.get("dead_air") or 0) for f in fs),
               "negative_endings": sum(int(f.get("negative_end") or 0) for f in fs)}  # fmt: skip
        events = row["repeat_contacts"] + row["transfers"] + row["escalations"] + row["long_holds"] + row["negative_endings"]
        row["friction_per_call"] = round(events / len(fs), 3)
        rows.append(row)
    rows.sort(key=lambda r: (-r["friction_per_call"], -r["calls"], r["key"]))
    return {"by": by, "calls": len(facts), "groups": rows}


def playbook_impact(facts: list[dict[str, Any]]) -> dict[str, Any]:
    """Outcomes by what happened to the call's hints, overall and per playbook."""

    def summary(fs: list[dict[str, Any]]) -> dict[str, Any]:
        out = Counter(f.get("outcome") or "unknown" for f in fs)
        return {"calls": len(fs), "resolved_rate": _rate(out["resolved"], len(fs)),
                "escalated_rate": _rate(sum(int(f.get("escalated") or 0) for f in fs), len(fs)),
                "churned_rate": _rate(out["churned"], len(fs)),
                "csat_estimate": _mean(f.get("csat_estimate") for f in fs), "qa_score": _mean(f.get("qa_score") for f in fs),
                "handle_s": _mean(f.get("handle_s") for f in fs)}  # fmt: skip

    groups = {g: summary([f for f in facts if f.get("hint_group") == g])
              for g in ("accepted", "dismissed", "no_verdict", "none_shown")}  # fmt: skip
    per_pb: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in facts:
        for pb in f.get("playbooks") or []:
            per_pb[pb].append(f)
    return {"groups": groups,
            "playbooks": [{"playbook_id": pb, **{g: summary([f for f in fs if f.get("hint_group") == g])
                                                  for g in ("accepted", "dismissed", "no_verdict")}}
                          for pb, fs in sorted(per_pb.items())]}  # fmt: skip


def kpis(facts: list[dict[str, Any]], flags: dict[str, dict[str, Any]], by: str = "day") -> dict[str, Any]:
    """Handle time, first-contact resolution, satisfaction estimate and QA score: for the
    period, and per group (day by default: the trend)."""
    if by not in GROUPS:
        raise ValueError(f"by must be one of {', '.join(GROUPS)}")

    def block(fs: list[dict[str, Any]]) -> dict[str, Any]:
        ht = [float(f["handle_s"]) for f in fs if f.get("handle_s") is not None]
        judged = [flags[f["call_id"]]["fcr"] for f in fs if f["call_id"] in flags and flags[f["call_id"]]["fcr"] is not None]
        out = Counter(f.get("outcome") or "unknown" for f in fs)
        return {"calls": len(fs), "handle_s_mean": _mean(ht), "handle_s_p50": _pct(ht, 50), "handle_s_p90": _pct(ht, 90),
                "fcr_rate": _rate(sum(1 for x in judged if x), len(judged)), "fcr_judged": len(judged),
                "csat_estimate": _mean(f.get("csat_estimate") for f in fs),
                "qa_score": _mean(f.get("qa_score") for f in fs),
                "resolved_rate": _rate(out["resolved"], len(fs)), "escalated_rate": _rate(out["escalated"], len(fs))}  # fmt: skip

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in facts:
        groups[_key(f, by)].append(f)
    return {"by": by, "overall": block(facts), "groups": [{"key": k, **block(fs)} for k, fs in sorted(groups.items())],
            "playbook_impact": playbook_impact(facts)}  # fmt: skip
