"""A scorecard applied to one call: every question answered with its evidence, then scored.

Scoring as the evaluation forms of the market do it: a yes scores 1, a no 0, a choice its
configured score, a number the score of its band; N/A (the question does not apply, or the
call holds no evidence either way and the question says so) is left out of both the sum and
the weights. A section scores the weighted mean of its applicable questions; the card the
weighted mean of its sections (`scoring: section`) or of all applicable questions (`scoring:
question`). An auto-fail answer zeroes its scope: its section, or the whole card.
"""

from __future__ import annotations

import json
from typing import Any

from callcue.qa.card import Question, Scorecard
from callcue.qa.rules import CallFacts, Finding, Segment, Sig, evaluate


def facts_from_record(record: dict[str, Any]) -> CallFacts:
    """CallFacts from a stored call (`CallStore.call_record`): finals and live signals."""
    call = record.get("call") or {}
    segs = [Segment(r["channel"], float(r["start_s"] or 0), float(r["end_s"] or 0), r["text"] or "", int(r["segment_id"] or 0))
            for r in record.get("transcripts", [])]  # fmt: skip
    sigs = []
    for r in record.get("signals", []):
        if r.get("retracted"):
            continue
        ev = json.loads(r["evidence"]) if isinstance(r.get("evidence"), str) else (r.get("evidence") or {})
        ev = ev or {}
        attrs = json.loads(r["attrs"]) if isinstance(r.get("attrs"), str) else (r.get("attrs") or {})
        sigs.append(Sig(r["kind"], r["name"], ev.get("channel"), float(ev.get("start") or 0), float(ev.get("end") or 0),
                        ev.get("text") or "", attrs, r["signal_id"], float(r.get("confidence") or 0)))  # fmt: skip
    sigs.sort(key=lambda s: s.start)
    segs.sort(key=lambda s: s.start)
    duration = max([s.end for s in segs] + [s.end for s in sigs] + [0.0])
    meta = call.get("metadata")
    return CallFacts(str(call.get("call_id") or ""), segs, sigs, duration,
                     json.loads(meta) if isinstance(meta, str) else (meta or {}))  # fmt: skip


def _answer(q: Question, f: Finding) -> tuple[str, float | None, str | None]:
    """(answer, score or None for N/A, band label for numeric)."""
    if q.type == "yes_no":
        if f.value is None:
            return ("na", None, None) if q.when_unknown == "na" else ("no", 0.0, None)
        return ("yes", 1.0, None) if f.value else ("no", 0.0, None)
    if q.type == "choice":
        label = None if f.value is None else str(f.value)
        if label is None or q.choices is None or label not in q.choices:
            return "na", None, None
        return label, float(q.choices[label]), None
    if f.value is None:
        return "na", None, None
    x = float(f.value)
    return (f"{x:g}", *band_of(q, x))


def band_of(q: Question, x: float) -> tuple[float, str]:
    """(score, band label) of a numeric answer: the first band whose `max` holds it."""
    for i, band in enumerate(q.bands or []):
        if band.max is None or x <= band.max:
            return float(band.score), f"band:{i}"
    return 0.0, f"band:{len(q.bands or [])}"


def auto_fails(q: Question, answer: str, band: str | None) -> bool:
    """Whether this answer (or its numeric band) is one the question fails its scope on."""
    return q.auto_fail is not None and (answer in q.auto_fail.answers or (band is not None and band in q.auto_fail.answers))


def _options(q: Question) -> dict[str, Any]:
    """The answers a reviewer may give (numeric: any number)."""
    if q.type == "choice":
        return {"options": [*(q.choices or {}), "na"]}
    return {"options": ["yes", "no", "na"]} if q.type == "yes_no" else {}


def score_call(card: Scorecard, facts: CallFacts) -> dict[str, Any]:
    answers: list[dict[str, Any]] = []
    card_failed: list[str] = []
    failed_sections: set[str] = set()
    for section, q in card.questions():
        gate = evaluate(q.applies_when, facts) if q.applies_when else None
        if gate is not None and not gate.value:
            answers.append({"section_id": section.id, "question_id": q.id, "text": q.text, "type": q.type, "answer": "na",
                            "score": None, "weight": q.weight, "evidence": gate.evidence,
                            "justification": f"not applicable: {gate.why}", **_options(q)})  # fmt: skip
            continue
        f = evaluate(q.answer, facts)
        answer, score, band = _answer(q, f)
        fail = auto_fails(q, answer, band)
        if fail and q.auto_fail is not None:
            (card_failed.append(q.id) if q.auto_fail.scope == "card" else failed_sections.add(section.id))
        answers.append({"section_id": section.id, "question_id": q.id, "text": q.text, "type": q.type, "answer": answer,
                        "score": score, "weight": q.weight, "evidence": (gate.evidence if gate else []) + f.evidence,
                        "justification": f.why, "auto_fail": fail or None, **_options(q)})  # fmt: skip
    return totals(card, answers, card_failed, failed_sections)


def totals(card: Scorecard, answers: list[dict[str, Any]], card_failed: list[str],
            failed_sections: set[str]) -> dict[str, Any]:  # fmt: skip
    sections: list[dict[str, Any]] = []
    for s in card.sections:
        mine = [a for a in answers if a["section_id"] == s.id and a["score"] is not None]
        w = sum(a["weight"] for a in mine)
        raw = sum(a["weight"] * a["score"] for a in mine) / w if w else None
        score = 0.0 if s.id in failed_sections else raw
        sections.append({"id": s.id, "title": s.title, "weight": s.weight,
                         "score": None if score is None else round(100 * score, 1),
                         "auto_failed": s.id in failed_sections})  # fmt: skip
    if card.scoring == "section":
        scored = [(s["weight"], s["score"] / 100) for s in sections if s["score"] is not None]
    else:
        scored = [(a["weight"], 0.0 if a["section_id"] in failed_sections else a["score"]) for a in answers
                  if a["score"] is not None]  # fmt: skip
    w = sum(x for x, _ in scored)
    total = sum(x * y for x, y in scored) / w if w else None
    if card_failed:
        total = 0.0
    return {"card_id": card.id, "card_version": card.version, "card_digest": card.digest,
            "score": None if total is None else round(100 * total, 1),
            "auto_failed": {"scope": "card", "questions": card_failed} if card_failed else None,
            "sections": sections, "answers": answers}  # fmt: skip
