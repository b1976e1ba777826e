"""How a scorecard question is answered from what the pipeline already knows about a call.

A rule is a one-key mapping (the key names the kind), evaluated over `CallFacts` to a
`Finding`: a value (true/false, a number, a choice label, or None when the call holds no
evidence either way), the transcript segments or signals that decided it with their
call-clock times, and a one-line reason. Kinds:

- `said: {by, patterns, within_s?, last_s?}`: a final of that party matches a pattern (regex,
  case-insensitive), in the first `within_s` or the last `last_s` seconds of the call (never
  its first half: on a short call the opening is not the closing);
- `signal: {kind, name | names, by?}`: a detector raised it (and did not retract it);
- `disclosure: ID`: the compliance detector heard that disclosure (false when it flagged it
  missing, or when the call ended before it was ever said: judged at the end too);
- `absent: RULE`: the rule found nothing (its evidence, if it did, is the reason for "no");
- `before: {first: RULE, then: RULE}`: the first happened before the second (None when the
  second never happened, so "verification before account details" is N/A on a call with none);
- `any: [RULE, ...]`, `all: [RULE, ...]`;
- `count: RULE`: how many signals or segments matched (numeric questions);
- `choose: {cases: [{when: RULE, answer: LABEL}], otherwise: LABEL}` (choice questions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

KINDS = ("said", "signal", "disclosure", "absent", "before", "any", "all", "count", "choose")


@dataclass(frozen=True, slots=True)
class Segment:
    channel: str
    start: float
    end: float
    text: str
    segment_id: int


@dataclass(frozen=True, slots=True)
class Sig:
    kind: str
    name: str
    channel: str | None
    start: float
    end: float
    text: str
    attrs: dict[str, Any]
    signal_id: str
    confidence: float = 0.0


@dataclass(slots=True)
class CallFacts:
    """A call as the QA rules see it: finals, signals (not retracted), its length."""

    call_id: str
    segments: list[Segment]
    signals: list[Sig]
    duration: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Finding:
    value: Any  # bool | float | str | None (no evidence either way)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    why: str = ""
    at: float | None = None  # call time of the earliest deciding evidence


def _seg_ev(s: Segment) -> dict[str, Any]:
    return {"type": "transcript", "channel": s.channel, "start": round(s.start, 2), "end": round(s.end, 2),
            "segment_id": s.segment_id, "text": s.text}  # fmt: skip


def _sig_ev(s: Sig) -> dict[str, Any]:
    return {"type": "signal", "signal_id": s.signal_id, "kind": s.kind, "name": s.name, "channel": s.channel,
            "start": round(s.start, 2), "end": round(s.end, 2), "text": s.text}  # fmt: skip


def check_rule(rule: Any) -> str | None:
    """Why `rule` is malformed, or None."""
    if not isinstance(rule, dict) or len(rule) != 1:
        return f"a rule is a mapping with one of {', '.join(KINDS)}, got {rule!r}"
    (kind, arg), = rule.items()
    if kind not in KINDS:
        return f"unknown rule {kind!r}; one of {', '.join(KINDS)}"
    if kind == "said":
        if not isinstance(arg, dict) or not arg.get("patterns"):
            return "said needs patterns"
        for p in arg["patterns"]:
            try:
                re.compile(p)
            except re.error as e:
                return f"bad pattern {p!r}: {e}"
    if kind == "signal" and (not isinstance(arg, dict) or not (arg.get("name") or arg.get("names"))):
        return "signal needs a name or names"
    if kind in ("absent", "count"):
        return check_rule(arg)
    if kind == "before":
        if not isinstance(arg, dict) or set(arg) != {"first", "then"}:
            return "before needs first and then"
        return check_rule(arg["first"]) or check_rule(arg["then"])
    if kind in ("any", "all"):
        if not isinstance(arg, list) or not arg:
            return f"{kind} needs a list of rules"
        return next((p for p in (check_rule(r) for r in arg) if p), None)
    if kind == "choose":
        if not isinstance(arg, dict) or "cases" not in arg or "otherwise" not in arg:
            return "choose needs cases and otherwise"
        return next((p for p in (check_rule(c.get("when")) for c in arg["cases"]) if p), None)
    return None


def evaluate(rule: dict[str, Any], f: CallFacts) -> Finding:
    (kind, arg), = rule.items()
    return _KINDS[kind](arg, f)


@dataclass(frozen=True)
class Said:
    """The `said` rule, defined once: the post-call scoring judges a whole call with it, and
    live QA (understand/qa_live.py) judges each final with the same matching."""

    patterns: tuple[re.Pattern[str], ...]
    by: str | None
    within_s: float | None
    last_s: float | None

    @classmethod
    def of(cls, arg: dict[str, Any]) -> Said:
        return cls(tuple(re.compile(p, re.IGNORECASE) for p in arg["patterns"]), arg.get("by"),
                   None if arg.get("within_s") is None else float(arg["within_s"]),
                   None if arg.get("last_s") is None else float(arg["last_s"]))  # fmt: skip

    def window(self, duration: float) -> tuple[float, float]:
        # "the last N s" never reaches into the first half: on a short call the opening is not a closing
        lo = max(duration - self.last_s, duration / 2) if self.last_s is not None else 0.0
        return lo, self.within_s if self.within_s is not None else float("inf")

    def search(self, channel: str, start: float, text: str, duration: float = 0.0) -> re.Match[str] | None:
        """The first pattern found in this turn, if the turn is the right party's and in the
        window (`duration`: the call's length, which only `last_s` needs)."""
        lo, hi = self.window(duration)
        if (self.by is not None and channel != self.by) or not lo <= start <= hi:
            return None
        return next((m for p in self.patterns if (m := p.search(text))), None)


def _said(arg: dict[str, Any], f: CallFacts) -> Finding:
    rule = Said.of(arg)
    where = (f" in the first {arg['within_s']} s" if arg.get("within_s") is not None else
             f" in the last {arg['last_s']} s" if arg.get("last_s") is not None else "")  # fmt: skip
    hits = [s for s in f.segments if rule.search(s.channel, s.start, s.text, f.duration)]
    who = rule.by or "anyone"
    if hits:
        h = hits[0]
        return Finding(True, [_seg_ev(h)], f"{who} said it at {h.start:.0f} s: \"{h.text[:80]}\"",
                       _said_at(h, list(rule.patterns)))  # fmt: skip
    return Finding(False, [], f"{who} never said it{where}")


def _said_at(h: Segment, pats: list[re.Pattern[str]]) -> float:
    """When in the segment the words were said, by their place in its text: a recognizer's
    final often holds two of the agent's sentences, and `before` must order those too."""
    pos = min(m.start() for p in pats if (m := p.search(h.text)))
    return h.start + (h.end - h.start) * pos / max(1, len(h.text))


def _signal_matches(arg: dict[str, Any], f: CallFacts) -> list[Sig]:
    names = set(arg.get("names") or [arg.get("name")])
    return [s for s in f.signals if s.name in names and (arg.get("kind") is None or s.kind == arg["kind"])
            and (arg.get("by") is None or s.channel == arg["by"])
            and all(s.attrs.get(k) == v for k, v in (arg.get("attrs") or {}).items())]  # fmt: skip


def _signal(arg: dict[str, Any], f: CallFacts) -> Finding:
    hits = _signal_matches(arg, f)
    label = "/".join(sorted(set(arg.get("names") or [arg.get("name")])))
    if hits:
        h = hits[0]
        return Finding(True, [_sig_ev(h) for h in hits[:5]], f"{h.kind}/{h.name} at {h.start:.0f} s", h.start)
    return Finding(False, [], f"no {label} signal on the call")


def _disclosure(arg: Any, f: CallFacts) -> Finding:
    did = arg if isinstance(arg, str) else arg.get("id")
    given = [s for s in f.signals if s.name == "disclosure_given" and s.attrs.get("disclosure_id") == did]
    if given:
        g = given[0]
        late = " (late)" if g.attrs.get("late") else ""
        return Finding(True, [_sig_ev(g)], f"read at {g.start:.0f} s{late}: \"{g.text[:80]}\"", g.start)
    missing = [s for s in f.signals if s.name == "disclosure_missing" and s.attrs.get("disclosure_id") == did]
    if missing:
        m = missing[0]
        if m.attrs.get("judged_at_end"):
            return Finding(False, [_sig_ev(m)], f"never read: the call ended at {m.attrs.get('checked_at', f.duration):.0f} s, "
                                                f"before its {m.attrs.get('deadline_s')} s deadline")  # fmt: skip
        return Finding(False, [_sig_ev(m)], f"not read by its deadline ({m.attrs.get('deadline_s')} s)")
    return Finding(False, [], f"never read: the call ended after {f.duration:.0f} s without it")


def _absent(arg: dict[str, Any], f: CallFacts) -> Finding:
    inner = evaluate(arg, f)
    if inner.value:
        return Finding(False, inner.evidence, f"found: {inner.why}", inner.at)
    return Finding(True, [], f"none: {inner.why}")


def _before(arg: dict[str, Any], f: CallFacts) -> Finding:
    first, then = evaluate(arg["first"], f), evaluate(arg["then"], f)
    if not then.value or then.at is None:
        return Finding(None, [], f"does not apply: {then.why}")
    if first.value and first.at is not None and first.at <= then.at:
        return Finding(True, first.evidence + then.evidence, f"{first.why}, before {then.why}", first.at)
    if first.value:
        return Finding(False, then.evidence + first.evidence, f"only after: {then.why}; then {first.why}", then.at)
    return Finding(False, then.evidence, f"{then.why}, and never: {first.why}", then.at)


def _any(arg: list[dict[str, Any]], f: CallFacts) -> Finding:
    found = [x for x in (evaluate(r, f) for r in arg) if x.value]
    if found:
        first = min(found, key=lambda x: x.at if x.at is not None else float("inf"))
        return Finding(True, first.evidence, first.why, first.at)
    return Finding(False, [], "none of: " + "; ".join(evaluate(r, f).why for r in arg))


def _all(arg: list[dict[str, Any]], f: CallFacts) -> Finding:
    results = [evaluate(r, f) for r in arg]
    missing = [x for x in results if not x.value]
    if missing:
        return Finding(False, [e for x in results for e in x.evidence], missing[0].why)
    return Finding(True, [e for x in results for e in x.evidence], "; ".join(x.why for x in results),
                   min((x.at for x in results if x.at is not None), default=None))  # fmt: skip


def _count(arg: dict[str, Any], f: CallFacts) -> Finding:
    (kind, inner), = arg.items()
    if kind == "signal":
        hits = _signal_matches(inner, f)
        return Finding(float(len(hits)), [_sig_ev(h) for h in hits[:10]],
                       f"{len(hits)} × {'/'.join(sorted(set(inner.get('names') or [inner.get('name')])))}",
                       hits[0].start if hits else None)  # fmt: skip
    x = evaluate(arg, f)
    return Finding(float(bool(x.value)), x.evidence, x.why, x.at)


def _choose(arg: dict[str, Any], f: CallFacts) -> Finding:
    for case in arg["cases"]:
        x = evaluate(case["when"], f)
        if x.value:
            return Finding(str(case["answer"]), x.evidence, x.why, x.at)
    return Finding(str(arg["otherwise"]), [], "no case applied")


_KINDS = {"said": _said, "signal": _signal, "disclosure": _disclosure, "absent": _absent, "before": _before,
          "any": _any, "all": _all, "count": _count, "choose": _choose}  # fmt: skip
