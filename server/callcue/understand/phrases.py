"""Phrase rules: regex-based detection from config, the transparent first layer.

Why keep rules next to learned detectors: operations teams need something they can read,
change in a minute and audit. Rules run on every partial so a hint can beat the end of the
sentence; per-segment de-duplication keeps one signal per rule per piece of evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from callcue.events import Evidence, Signal, Transcript
from callcue.understand.base import CallContext, Detector


class HintSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    body: str
    suggested_reply: str = ""
    severity: Literal["info", "warning", "critical"] = "info"


class PhraseRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    channel: Literal["customer", "agent", "any"] = "customer"
    kind: str = "phrase"
    patterns: list[str] = Field(min_length=1)
    hint: HintSpec | None = None

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"pattern {p!r} is not a valid regular expression: {e}") from e
        return v


class PhraseRuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    rules: list[PhraseRule]


class RulesError(Exception):
    pass


def load_rules(path: str | Path) -> PhraseRuleSet:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except RecursionError:
        raise RulesError(f"cannot read phrase rules {p}: nested too deeply") from None
    except (OSError, yaml.YAMLError, ValueError, TypeError) as e:
        raise RulesError(f"cannot read phrase rules {p}: {e}") from e
    try:
        rs = PhraseRuleSet.model_validate(data)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise RulesError(f"invalid phrase rules in {p}: {errs}") from e
    names = [r.name for r in rs.rules]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise RulesError(f"invalid phrase rules in {p}: duplicate rule names {sorted(dup)}")
    return rs


@dataclass
class _Compiled:
    rule: PhraseRule
    regexes: list[re.Pattern[str]]


class PhraseDetector(Detector):
    """Emits `Signal(kind=rule.kind, name=rule.name)` once per (channel, segment, rule)."""

    name = "phrases"

    def __init__(self, rules: PhraseRuleSet) -> None:
        self.rules = rules
        self.version = rules.version
        self._compiled = [_Compiled(r, [re.compile(p, re.IGNORECASE) for p in r.patterns]) for r in rules.rules]
        self.produces = frozenset(f"signal:{r.kind}" for r in rules.rules)

    def hint_for(self, rule_name: str) -> HintSpec | None:
        for c in self._compiled:
            if c.rule.name == rule_name:
                return c.rule.hint
        return None

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        seen: set[tuple[str, int, str]] = ctx.state.setdefault(self.name, set())
        out: list[Signal] = []
        text = t.text
        if not text:
            return out
        for c in self._compiled:
            if c.rule.channel not in ("any", t.channel):
                continue
            key = (t.channel, t.segment_id, c.rule.name)
            if key in seen:
                continue
            for rx in c.regexes:
                m = rx.search(text)
                if not m:
                    continue
                seen.add(key)
                words = [w.text for w in t.words] if t.words else text.split()
                out.append(
                    Signal(
                        call_id=t.call_id,
                        kind=c.rule.kind,
                        name=c.rule.name,
                        confidence=0.9 if t.is_final else 0.8,
                        detector=self.name,
                        detector_version=self.version,
                        evidence=Evidence(
                            channel=t.channel, text=text, start=t.start, end=t.end,
                            segment_id=t.segment_id, revision=t.revision, is_final=t.is_final,
                            words=words,
                        ),
                        attrs={"match": m.group(0), "pattern": rx.pattern},
                    )
                )
                break
        return out
