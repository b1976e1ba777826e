"""One row of facts per ended call, and the customer utterances no intent covered.

Why a fact row per call: drivers, friction and KPIs are questions across thousands of calls
("which reasons for contact come back within 7 days?"), and answering them from each call's
transcripts, signals and audit entries at query time would read the whole store. The
post-call step already has all of it in hand (the record, the summary, the scorecards, the
audit entries), so it projects the few columns analytics groups by, once, when the call ends.

Everything here is pure: dicts in, dicts out, no database and no model.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

CUSTOMER_KEYS = ("customer_id", "customer", "account_id", "caller", "from", "ani", "email")
QUEUE_KEYS = ("queue", "queue_name", "skill")
_WORD = re.compile(r"[A-Za-z']+")
_COURTESY = frozenset(["hi", "hello", "hey", "yes", "yeah", "yep", "okay", "ok", "alright", "right", "sure", "please", "thanks", "thank", "cheers", "bye", "goodbye", "great", "perfect", "lovely", "brilliant", "awesome", "good", "fine", "wonderful", "lot", "just", "really", "sorry"])  # fmt: skip


def _meta(record: dict[str, Any]) -> dict[str, Any]:
    m = (record.get("call") or {}).get("metadata")
    m = json.loads(m) if isinstance(m, str) else (m or {})
    return m if isinstance(m, dict) else {}


def customer_key(meta: dict[str, Any]) -> str | None:
    """Who called, as a digest: repeat contacts need the same key per customer, and the number
    or address itself is personal data analytics has no need to keep."""
    for k in CUSTOMER_KEYS:
        v = meta.get(k)
        if isinstance(v, (str, int)) and str(v).strip():
            norm = re.sub(r"[\s().-]", "", str(v).strip().lower())
            return hashlib.sha256(norm.encode()).hexdigest()[:20]
    return None


def _csat_estimate(overall: float | None, end: float | None) -> float | None:
    """1-5 from the customer's sentiment (-1..1), the ending weighted higher: an untrained
    proxy, labelled as an estimate wherever it is shown (docs/analytics.md)."""
    if overall is None and end is None:
        return None
    o = overall if overall is not None else end
    e = end if end is not None else overall
    x = 0.4 * float(o) + 0.6 * float(e)  # type: ignore[arg-type]
    return round(min(5.0, max(1.0, 3.0 + 2.0 * x)), 2)


def hint_verdicts(audit: list[dict[str, Any]]) -> dict[str, Any]:
    """Per call: hints shown, each one's latest verdict, and the playbooks that showed them."""
    shown: dict[str, str | None] = {}
    verdict: dict[str, str] = {}
    for e in audit:
        p = e.get("payload") or {}
        hid = p.get("hint_id")
        if not hid:
            continue
        if e.get("kind") == "hint_shown":
            shown[hid] = e.get("playbook_id")
        elif e.get("kind") == "feedback" and p.get("action"):
            verdict[hid] = p["action"]
    accepted = sum(1 for h in shown if verdict.get(h) in ("accepted", "corrected"))
    dismissed = sum(1 for h in shown if verdict.get(h) == "dismissed")
    group = "none_shown" if not shown else "accepted" if accepted else "dismissed" if dismissed else "no_verdict"
    return {"hints_shown": len(shown), "hints_accepted": accepted, "hints_dismissed": dismissed, "hint_group": group,
            "playbooks": sorted({p for p in shown.values() if p})}  # fmt: skip


def call_fact(record: dict[str, Any], summary: dict[str, Any], evaluations: list[dict[str, Any]],
              audit: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """The analytics row of one ended call."""
    call = record.get("call") or {}
    meta = _meta(record)
    reasons = summary.get("reason_for_contact") or []
    actions = summary.get("agent_actions") or []
    signals = [s for s in record.get("signals", []) if not s.get("retracted")]
    names = [s.get("name") for s in signals]
    quarters = [q for q in summary.get("sentiment_by_quarter") or [] if q.get("mean_score") is not None]
    overall = sum(q["mean_score"] for q in quarters) / len(quarters) if quarters else None
    end = quarters[-1]["mean_score"] if quarters else None
    end_label = quarters[-1]["label"] if quarters else None
    outcome = (summary.get("outcome") or {}).get("outcome") or "unknown"
    escalated = outcome == "escalated" or "escalation_request" in names or any(
        e.get("kind") == "action_succeeded" and (e.get("payload") or {}).get("kind") == "escalate" for e in audit)
    started, ended = call.get("started_at"), call.get("ended_at")
    talk = summary.get("duration_s")
    handle = (float(ended) - float(started)) if started is not None and ended is not None else None
    if handle is None or handle <= 0 or meta.get("channel") in ("chat", "email") or "started_at" in meta:
        handle = float(talk) if talk is not None else handle  # a thread or a recording: its own clock
    if isinstance(meta.get("started_at"), (int, float)) and not isinstance(meta["started_at"], bool):
        started = float(meta["started_at"])  # an interaction from the past says when it happened
    auto = [e for e in evaluations if e.get("source", "auto") == "auto"]
    holds = [a for a in actions if a.get("what") == "long_hold"]
    return {
        "call_id": call.get("call_id") or summary.get("call_id"),
        "agent_id": call.get("agent_id"),
        "queue": next((str(meta[k]) for k in QUEUE_KEYS if meta.get(k)), None),
        "customer_key": customer_key(meta),
        "channel": meta.get("channel") if meta.get("channel") in ("chat", "email") else "voice",
        "started_at": float(started) if started is not None else None,
        "handle_s": round(handle, 1) if handle is not None else None,
        "driver": reasons[0]["intent"] if reasons else None,
        "intents": [r["intent"] for r in reasons],
        "outcome": outcome,
        "transfers": sum(1 for a in actions if a.get("what") == "transfer"),
        "escalated": int(bool(escalated)),
        "long_holds": len(holds),
        "dead_air": int(summary.get("dead_air") or 0),
        "non_talk_s": summary.get("non_talk_s"),
        "sentiment": round(overall, 3) if overall is not None else None,
        "end_sentiment": end,
        "negative_end": int(end_label == "negative"),
        "csat_estimate": _csat_estimate(overall, end),
        "qa_score": auto[-1].get("score") if auto else None,
        "qa_card": f"{auto[-1]['card_id']}@{auto[-1]['card_version']}" if auto else None,
        **hint_verdicts(audit),
    }  # fmt: skip


def content_words(text: str) -> int:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return sum(1 for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS and w not in _COURTESY)


def uncovered_utterances(record: dict[str, Any], *, min_words: int = 3) -> list[dict[str, Any]]:
    """The customer's finals that no intent signal points at: what emerging topics cluster.

    A final counts as covered when an intent signal's evidence overlaps it in time on the same
    channel. One with fewer than `min_words` content words (a "yes", a name, "perfect, thanks
    a lot") carries no topic: left in, courtesies would be the largest "emerging topic"."""
    call = record.get("call") or {}
    spans = []
    for s in record.get("signals", []):
        if s.get("kind") != "intent" or s.get("retracted"):
            continue
        ev = json.loads(s["evidence"]) if isinstance(s.get("evidence"), str) else (s.get("evidence") or {})
        spans.append((ev.get("channel"), float(ev.get("start") or 0), float(ev.get("end") or 0)))
    out = []
    for t in record.get("transcripts", []):
        if t.get("channel") != "customer":
            continue
        text = (t.get("text") or "").strip()
        if content_words(text) < min_words:
            continue
        a, b = float(t.get("start_s") or 0), float(t.get("end_s") or 0)
        if any(ch in (None, "customer") and lo < b + 0.05 and hi > a - 0.05 for ch, lo, hi in spans):
            continue
        out.append({"call_id": call.get("call_id"), "segment_id": t.get("segment_id"), "start_s": a, "text": text,
                    "ts": (float(call["started_at"]) + a) if call.get("started_at") is not None else None})  # fmt: skip
    return out
