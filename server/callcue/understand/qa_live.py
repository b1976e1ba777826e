"""Live QA: scorecard questions that are going wrong while the call can still be saved.

Why from the cards themselves: the scorecard is the one statement of what a good call is; a
second, hand-kept list of "live checks" would drift from it. A question qualifies when its
answer is a `before` rule whose both sides are `said` rules (or `any` of them): the order of
two things the agent says ("verify, then give account details"). When the `then` side is
heard on a final before the `first` side ever was, the call raises
`qa/qa_at_risk` once per question, so a playbook can tell the agent to verify now, before
more details follow. Disclosures not yet read are the compliance detector's
(`disclosure_missing` on its deadline); this detector adds the ordering questions.

Signals: kind="qa", name "qa_at_risk", attrs card_id, card_version, question_id, question and
hint (the question's `live_hint`: what to tell the agent).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callcue.events import Signal, Transcript
from callcue.qa.rules import Said
from callcue.understand.base import CallContext, Detector
from callcue.understand.common import evidence_from

log = logging.getLogger(__name__)

Match = Callable[[Transcript], "re.Match[str] | None"]


@dataclass(frozen=True)
class Watch:
    card_id: str
    card_version: int
    question_id: str
    question: str
    hint: str
    first: Match
    then: Match


def _matcher(rule: dict[str, Any]) -> Match | None:
    """A final-by-final test for a `said` rule (or `any` of them); None for anything else,
    which only the post-call scoring can judge."""
    ((kind, arg),) = rule.items()
    if kind == "said" and not arg.get("last_s"):  # "the last N s" needs the call's end
        said_rule = Said.of(arg)

        def said(t: Transcript) -> re.Match[str] | None:
            return said_rule.search(t.channel, t.start, t.text)

        return said
    if kind == "any":
        parts = [_matcher(r) for r in arg]
        if any(p is None for p in parts):
            return None

        def either(t: Transcript) -> re.Match[str] | None:
            return next((m for p in parts if (m := p(t))), None)  # type: ignore[misc]

        return either
    return None


def watches_from_cards(cards: list[Any]) -> list[Watch]:
    out = []
    for card in cards:
        if card.draft:
            continue
        for section in card.sections:
            for q in section.questions:
                if q.type != "yes_no" or set(q.answer) != {"before"}:
                    continue
                first, then = _matcher(q.answer["before"]["first"]), _matcher(q.answer["before"]["then"])
                if first is not None and then is not None:
                    out.append(Watch(card.id, card.version, q.id, q.text, q.live_hint or f"Scorecard: {q.text}", first, then))
    return out


class QaLiveDetector(Detector):
    name = "qa_live"
    version = "1"
    inputs = frozenset({"text"})
    produces = frozenset({"signal:qa"})

    def __init__(self, watches: list[Watch]) -> None:
        self.watches = watches

    @classmethod
    def from_dir(cls, scorecards_dir: Path) -> QaLiveDetector | None:
        from callcue.qa.card import load_cards

        watches = watches_from_cards(load_cards(scorecards_dir)) if scorecards_dir.is_dir() else []
        return cls(watches) if watches else None

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        if not t.is_final or not t.text.strip():
            return []
        st: dict[str, set[str]] = ctx.state.setdefault(self.name, {"first": set(), "flagged": set()})
        out = []
        for w in self.watches:
            key = f"{w.card_id}:{w.question_id}"
            if key in st["first"] or key in st["flagged"]:
                continue
            first, m = w.first(t), w.then(t)
            # one final may hold both sentences: their order in its text decides
            if first is not None and (m is None or first.start() <= m.start()):
                st["first"].add(key)  # the required step, in time: nothing to flag any more
                continue
            if m is None:
                continue
            st["flagged"].add(key)
            out.append(Signal(call_id=t.call_id, kind="qa", name="qa_at_risk", confidence=0.9, detector=self.name,
                              detector_version=self.version, evidence=evidence_from(t, m.start(), m.end()),
                              attrs={"card_id": w.card_id, "card_version": w.card_version, "question_id": w.question_id,
                                     "question": w.question, "hint": w.hint}))  # fmt: skip
        return out
