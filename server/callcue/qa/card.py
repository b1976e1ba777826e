"""QA scorecards as versioned data (`config/scorecards/*.yaml`), validated like playbooks.

The shape is the one the market settled on (Amazon Connect evaluation forms, Genesys and
Google CCAI Insights QA): sections and questions with weights; answers yes / no / N/A, a
choice with scores, or a number scored by bands; a condition that makes a question
applicable; answers that fail the whole card or one section; scoring by question weight or by
section weight, N/A left out. What is new here is `answer`: every question says how it is
answered from what the pipeline already knows (rules.py), so every call can be scored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class CardError(ValueError):
    """A scorecard file that cannot be used, with the file and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Band(_Strict):
    """A numeric answer up to `max` (inclusive; none = any) scores `score` (0..1)."""

    max: float | None = None
    score: float = Field(ge=0, le=1)


class AutoFail(_Strict):
    answers: list[str] = Field(min_length=1)  # answers that fail ("no", a choice label, "band:2")
    scope: Literal["card", "section"] = "card"


class Question(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    text: str
    type: Literal["yes_no", "choice", "numeric"] = "yes_no"
    weight: float = Field(1.0, gt=0)
    #: a rule (rules.py); when given and false the question is N/A
    applies_when: dict[str, Any] | None = None
    #: the rule that answers it: yes_no -> true/false; choice -> a label; numeric -> a number
    answer: dict[str, Any]
    #: choice: label -> score 0..1
    choices: dict[str, float] | None = None
    #: numeric: bands in increasing `max`, the last one open
    bands: list[Band] | None = None
    auto_fail: AutoFail | None = None
    #: what the score means when the rule cannot decide (no evidence either way)
    when_unknown: Literal["na", "no"] = "na"
    #: what the agent is told when this question goes wrong during the call (understand/qa_live.py)
    live_hint: str | None = Field(None, max_length=300)

    @model_validator(mode="after")
    def _shape(self) -> Question:
        if self.type == "choice" and not self.choices:
            raise ValueError(f"question {self.id}: a choice question needs choices")
        if self.type == "numeric" and not self.bands:
            raise ValueError(f"question {self.id}: a numeric question needs bands")
        if self.choices and any(not 0 <= v <= 1 for v in self.choices.values()):
            raise ValueError(f"question {self.id}: choice scores must be 0..1")
        return self


class Section(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    weight: float = Field(1.0, gt=0)
    questions: list[Question] = Field(min_length=1)


class Scorecard(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    version: int = Field(ge=1)
    title: str
    description: str = ""
    scoring: Literal["section", "question"] = "section"
    #: a draft is compared on stored calls (`qa/compare`) but scores no live call; promoting
    #: a version is dropping its draft flag (and retiring the old file) in the config
    draft: bool = False
    sections: list[Section] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Scorecard:
        seen: set[str] = set()
        for s in self.sections:
            for q in s.questions:
                if q.id in seen:
                    raise ValueError(f"question id {q.id!r} appears twice")
                seen.add(q.id)
        return self

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()

    def questions(self) -> list[tuple[Section, Question]]:
        return [(s, q) for s in self.sections for q in s.questions]


def load_card(path: str | Path) -> Scorecard:
    from callcue.qa.rules import check_rule

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        card = Scorecard.model_validate(data)
    except (OSError, yaml.YAMLError) as e:
        raise CardError(f"{p.name}: {e}") from None
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors())
        raise CardError(f"{p.name}: {msgs}") from None
    for _s, q in card.questions():
        for what, rule in (("answer", q.answer), ("applies_when", q.applies_when)):
            if rule is None:
                continue
            problem = check_rule(rule)
            if problem:
                raise CardError(f"{p.name}: question {q.id} {what}: {problem}")
    return card


def load_cards(folder: str | Path) -> list[Scorecard]:
    """Every card in `folder`; two files with one id and version is an error."""
    d = Path(folder)
    cards = [load_card(f) for f in sorted(d.glob("*.yaml"))] if d.is_dir() else []
    keys = [(c.id, c.version) for c in cards]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise CardError(f"{d}: scorecard {sorted(dup)[0]} defined twice")
    live = [c.id for c in cards if not c.draft]
    twice = sorted({i for i in live if live.count(i) > 1})
    if twice:
        raise CardError(f"{d}: two versions of {twice[0]} are live: mark all but one `draft: true`")
    return cards
