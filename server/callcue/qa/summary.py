"""The post-call summary: what the call was about, what the agent did, how it ended, what is
owed, how it felt, and how the talking went, every statement linked to its transcript.

Built without sending the call anywhere: from the stored finals and signals (intents, risks,
entities, sentiment, acoustic events) and the call's audit entries (actions that ran,
dispositions, hint feedback). A statement carries `evidence`: the segments or signals, with
channel and call-clock times, that a desk can jump to.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from callcue.qa.rules import CallFacts, Segment, Sig

_TRANSFER = re.compile(r"\b(transfer\w*|put you through|connect you (to|with)|escalat\w*)\b", re.IGNORECASE)
_HOLD = re.compile(r"\b(put you on (a brief |a short )?hold|hold (on|the line)|bear with me|one moment)\b", re.IGNORECASE)
_RESOLVED = re.compile(r"\b(i(')?ve (now )?(processed|refunded|cancell?ed|waived|credited|updated|reset|fixed|resolved|sent)|"
                       r"(that|it) (is|has been) (done|processed|fixed|resolved|cancell?ed|refunded))\b", re.IGNORECASE)  # fmt: skip
_FOLLOW = re.compile(r"\b(call you back|follow up|get back to you|within \d+ (business |working )?days|by (monday|tuesday|"
                     r"wednesday|thursday|friday|tomorrow|next week))\b", re.IGNORECASE)  # fmt: skip
_WORD = re.compile(r"[A-Za-z']+")


def _ev_seg(s: Segment) -> dict[str, Any]:
    return {"type": "transcript", "channel": s.channel, "segment_id": s.segment_id, "start": round(s.start, 2),
            "end": round(s.end, 2), "text": s.text}  # fmt: skip


def _ev_sig(s: Sig) -> dict[str, Any]:
    return {"type": "signal", "signal_id": s.signal_id, "kind": s.kind, "name": s.name, "channel": s.channel,
            "start": round(s.start, 2), "end": round(s.end, 2), "text": s.text}  # fmt: skip


def _union(intervals: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s  # type: ignore[operator]
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s  # type: ignore[operator]
    return total


def summarize(f: CallFacts, audit: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    audit = audit or []
    agent = [s for s in f.segments if s.channel == "agent"]

    # reason for contact: the customer's intents, strongest first, each with its evidence
    by_intent: dict[str, list[Sig]] = defaultdict(list)
    for s in f.signals:
        if s.kind == "intent" and s.channel in (None, "customer"):
            by_intent[s.name].append(s)
    found: list[dict[str, Any]] = [{"intent": name, "confidence": round(max(x.confidence for x in xs), 3),
                                    "mentions": len(xs), "first_at": round(xs[0].start, 2), "evidence": [_ev_sig(xs[0])]}
                                   for name, xs in by_intent.items()]  # fmt: skip
    reasons = sorted(found, key=lambda r: (-r["mentions"], r["first_at"]))[:3]

    # what the agent did
    did: list[dict[str, Any]] = []
    for seg in agent:
        for what, rx in (("transfer", _TRANSFER), ("hold", _HOLD), ("resolution", _RESOLVED), ("follow_up", _FOLLOW)):
            if rx.search(seg.text):
                did.append({"what": what, "at": round(seg.start, 2), "text": seg.text, "evidence": [_ev_seg(seg)]})
    for s in f.signals:
        if s.name == "long_hold":
            did.append({"what": "long_hold", "at": round(s.start, 2), "text": f"on hold {s.end - s.start:.0f} s",
                        "evidence": [_ev_sig(s)]})  # fmt: skip
    for e in audit:
        if e.get("kind") == "action_succeeded":
            p = e.get("payload") or {}
            did.append({"what": f"playbook_action:{p.get('kind') or p.get('action_kind') or 'action'}", "at": None,
                        "text": f"{e.get('playbook_id')} v{e.get('playbook_version')} ran {p.get('kind', 'an action')}",
                        "evidence": [{"type": "audit", "seq": e.get("seq")}]})  # fmt: skip
        elif e.get("kind") == "feedback":
            p = e.get("payload") or {}
            did.append({"what": f"hint_{p.get('action')}", "at": None, "text": f"hint {p.get('hint_id')} {p.get('action')}",
                        "evidence": [{"type": "audit", "seq": e.get("seq")}]})  # fmt: skip
    did.sort(key=lambda d: (d["at"] is None, d["at"] or 0))

    # outcome: the disposition if one was recorded, else what the call shows
    disp = [e for e in audit if e.get("kind") == "disposition"]
    if disp:
        outcome = {"outcome": (disp[-1].get("payload") or {}).get("outcome"), "source": "disposition",
                   "evidence": [{"type": "audit", "seq": disp[-1].get("seq")}]}  # fmt: skip
    else:
        first = lambda what: next((d for d in did if d["what"] == what), None)
        esc = next((s for s in f.signals if s.name in ("escalation_request",)), None)
        churn = next((s for s in f.signals if s.name == "churn_risk" and (s.attrs.get("score") or 0) >= 0.7), None)
        if first("transfer") or esc:
            ev = first("transfer")["evidence"] if first("transfer") else [_ev_sig(esc)]  # type: ignore[index,arg-type]
            outcome = {"outcome": "escalated", "source": "inferred", "evidence": ev}
        elif first("resolution"):
            outcome = {"outcome": "resolved", "source": "inferred", "evidence": first("resolution")["evidence"]}  # type: ignore[index]
        elif first("follow_up"):
            outcome = {"outcome": "follow_up", "source": "inferred", "evidence": first("follow_up")["evidence"]}  # type: ignore[index]
        elif churn:
            outcome = {"outcome": "churned", "source": "inferred", "evidence": [_ev_sig(churn)]}
        else:
            outcome = {"outcome": "unknown", "source": "inferred", "evidence": []}

    # what is owed: dates and amounts said on the call
    follow_ups = [{"kind": s.name, "value": s.attrs.get("normalized") or s.attrs.get("value"), "said_by": s.channel,
                   "at": round(s.start, 2), "evidence": [_ev_sig(s)]}
                  for s in f.signals if s.kind == "entity" and s.name in ("date", "money")]  # fmt: skip

    # how it felt: the customer's sentiment per quarter of the call
    quarters = []
    q_len = f.duration / 4 if f.duration else 0
    senti = [s for s in f.signals if s.kind == "sentiment" and s.channel in (None, "customer")
             and s.name in ("positive", "neutral", "negative")]  # fmt: skip
    for i in range(4):
        lo, hi = i * q_len, (i + 1) * q_len
        xs = [s for s in senti if lo <= s.start < hi or (i == 3 and s.start >= hi)]
        scores = [float(s.attrs.get("score", 0) or 0) for s in xs]
        mean = sum(scores) / len(scores) if scores else None
        label = None if mean is None else ("negative" if mean <= -0.3 else "positive" if mean >= 0.3 else "neutral")
        quarters.append({"quarter": i + 1, "from": round(lo, 1), "to": round(hi, 1), "mean_score": None if mean is None else round(mean, 3),
                         "label": label, "evidence": [_ev_sig(s) for s in xs[:3]]})  # fmt: skip

    # how the talking went
    talk: dict[str, Any] = {}
    for ch in sorted({s.channel for s in f.segments}):
        segs = [s for s in f.segments if s.channel == ch]
        secs = _union([(s.start, s.end) for s in segs])
        words = sum(len(_WORD.findall(s.text)) for s in segs)
        talk[ch] = {"talk_s": round(secs, 1), "share": round(secs / f.duration, 3) if f.duration else None,
                    "words": words, "words_per_minute": round(60 * words / secs) if secs > 1 else None,
                    "interruptions": sum(1 for s in f.signals if s.name == "talk_over" and s.channel == ch)}  # fmt: skip
    speech = _union([(s.start, s.end) for s in f.segments])
    return {"call_id": f.call_id, "duration_s": round(f.duration, 1), "reason_for_contact": reasons, "agent_actions": did,
            "outcome": outcome, "follow_ups": follow_ups, "sentiment_by_quarter": quarters, "talk": talk,
            "non_talk_s": round(max(0.0, f.duration - speech), 1),
            "dead_air": sum(1 for s in f.signals if s.name == "dead_air")}  # fmt: skip
