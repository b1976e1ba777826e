"""Human QA in the loop: a reviewer's answers over an automatic evaluation, and how far the
automatic answers can be trusted, question by question.

A lead opens a call's scorecard and changes answers with a reason; the review is a new
evaluation (the automatic one stays) scored by the same rules, and every reviewed call is a
labelled example for the agreement table: per question, how often the automatic answer was
the human one (accuracy) and Cohen's kappa (agreement beyond chance, from scikit-learn), so a
lead can see which questions to trust and which need a better rule.
"""

from __future__ import annotations

import copy
from typing import Any

from callcue.qa.card import Question, Scorecard
from callcue.qa.scoring import auto_fails, band_of, totals


class ReviewError(ValueError):
    pass


def _score_of(q: Question, answer: str) -> tuple[float | None, str | None]:
    """(score, band) of a human answer, checked against the question's type."""
    if answer == "na":
        return None, None
    if q.type == "yes_no":
        if answer not in ("yes", "no"):
            raise ReviewError(f"{q.id}: answer yes, no or na")
        return (1.0 if answer == "yes" else 0.0), None
    if q.type == "choice":
        if not q.choices or answer not in q.choices:
            raise ReviewError(f"{q.id}: answer one of {', '.join(q.choices or {})} or na")
        return float(q.choices[answer]), None
    try:
        x = float(answer)
    except ValueError:
        raise ReviewError(f"{q.id}: answer a number or na") from None
    return band_of(q, x)


def apply_review(card: Scorecard, auto: dict[str, Any], changes: dict[str, str], reviewer: str,
                 reason: str) -> dict[str, Any]:  # fmt: skip
    """The automatic evaluation with `changes` (question id -> answer) applied and re-scored."""
    if auto.get("card_id") != card.id or auto.get("card_version") != card.version:
        raise ReviewError(f"the evaluation is of {auto.get('card_id')} v{auto.get('card_version')}, not {card.id} v{card.version}")
    questions = {q.id: (s, q) for s, q in card.questions()}
    unknown = sorted(set(changes) - set(questions))
    if unknown:
        raise ReviewError(f"no question {unknown[0]!r} on {card.id} v{card.version}")
    answers = copy.deepcopy(auto["answers"])
    card_failed: list[str] = []
    failed_sections: set[str] = set()
    for a in answers:
        _s, q = questions[a["question_id"]]
        if a["question_id"] in changes:
            new = str(changes[a["question_id"]])
            score, band = _score_of(q, new)
            a.update(auto_answer=a["answer"], answer=new, score=score, reviewed_by=reviewer,
                     justification=f"changed by {reviewer}: {reason}")
        else:
            band = None
            if q.type == "numeric" and a["answer"] != "na":
                _score, band = _score_of(q, a["answer"])
        fail = auto_fails(q, a["answer"], band)
        a["auto_fail"] = fail or None
        if fail and q.auto_fail is not None:
            (card_failed.append(q.id) if q.auto_fail.scope == "card" else failed_sections.add(a["section_id"]))
    out = totals(card, answers, card_failed, failed_sections)
    out["review"] = {"reviewer": reviewer, "reason": reason, "changed": sorted(changes),
                     "auto_score": auto.get("score")}  # fmt: skip
    return out


def agreement(card: Scorecard, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per question: n reviewed, accuracy and Cohen's kappa of automatic vs human answers."""
    from sklearn.metrics import cohen_kappa_score

    rows = []
    for _s, q in card.questions():
        auto_l, human_l = [], []
        for auto, human in pairs:
            a = next((x for x in auto["answers"] if x["question_id"] == q.id), None)
            h = next((x for x in human["answers"] if x["question_id"] == q.id), None)
            if a is not None and h is not None:
                auto_l.append(str(a["answer"]))
                human_l.append(str(h["answer"]))
        n = len(auto_l)
        acc = sum(x == y for x, y in zip(auto_l, human_l)) / n if n else None
        labels = set(auto_l) | set(human_l)
        # one label everywhere: kappa is undefined (no chance to disagree about)
        kappa = float(cohen_kappa_score(auto_l, human_l)) if n and len(labels) > 1 else None
        rows.append({"question_id": q.id, "text": q.text, "n": n, "accuracy": None if acc is None else round(acc, 3),
                     "kappa": None if kappa is None else round(kappa, 3),
                     "disagreements": sum(x != y for x, y in zip(auto_l, human_l))})  # fmt: skip
    return rows
