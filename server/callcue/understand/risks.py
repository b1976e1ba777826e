"""Conversation risks: abuse, escalation requests, competitor mentions and churn risk.

The helpers these and the compliance/sentiment detectors share live in `common.py`.

How the churn detector sees other detectors' findings: it declares that it consumes
intent, phrase, risk and sentiment signals and the `sentiment_trend` fact, so the registry
runs it after their producers; it reads the call's signals so far (this update's included)
from `ctx.signals` and the customer's running trend from `ctx.facts`.

Partials vs finals: lexicon and regex checks run on partials too (microseconds); the encoder
runs on finals only (~10 ms per call). A partial-based signal that the segment's final does
not confirm is re-emitted with `retracted=True`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from callcue.events import Signal, Transcript
from callcue.understand.base import CallContext, Detector
from callcue.understand.common import (
    EmbedFn,
    PrototypeMatcher,
    RiskConfigError,
    TextRiskDetector,
    compile_patterns,
    default_embed,
    evidence_from,
    lexicon_regex,
    load_risk_config,
    word_windows,
)
from callcue.understand.compliance import ComplianceDetector
from callcue.understand.registry import order_detectors
from callcue.understand.sentiment import TREND_FACT, SentimentDetector

__all__ = ["AbuseDetector", "ChurnDetector", "CompetitorDetector", "EscalationDetector", "RiskConfigError",
           "build_text_detectors", "evidence_from", "load_risk_config"]

# --------------------------------------------------------------------------- abuse

class AbuseDetector(TextRiskDetector):
    """Profanity, insults aimed at someone, and threats, on both channels.

    A bare insult word ("this is stupid") is weak evidence of abuse; aimed at a person ("you
    are stupid", "you idiot") it is strong. Profanity counts either way, but less when not aimed.
    """

    name = "abuse"
    produces = frozenset({"signal:risk"})
    version = "1"
    _AIMED = re.compile(r"\b(you|you're|youre|your|ur|u|yall|y'all|these people|you people|you guys)\b", re.IGNORECASE)

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        c = (cfg if cfg is not None else load_risk_config())["abuse"]
        self.channels = set(c["channels"])
        self.mask = bool(c.get("mask_evidence", False))
        self.profanity = lexicon_regex(c["profanity"])
        self.insults = lexicon_regex(c["insults"])
        self.threats = compile_patterns([rf"(?<!\w)(?:{p})(?!\w)" for p in c["threats"]], "abuse.threats")

    def _aimed(self, text: str, start: int, end: int) -> bool:
        """A second-person word within ~4 words before or 2 after the term."""
        before = text[:start].split()[-4:]
        after = text[end:].split()[:2]
        return bool(self._AIMED.search(" ".join(before + after)))

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        if t.channel not in self.channels or not t.text.strip():
            return []
        text = t.text
        found: dict[str, Signal] = {}
        hits: list[tuple[str, re.Match[str], float]] = []
        for m in self.profanity.finditer(text):
            hits.append(("profanity", m, 0.9 if self._aimed(text, m.start(), m.end()) else 0.7))
        for m in self.insults.finditer(text):
            if self._aimed(text, m.start(), m.end()):
                hits.append(("insult", m, 0.85))
        for rx in self.threats:
            for m in rx.finditer(text):
                hits.append(("threat", m, 0.9))
        for category, m, conf in hits:
            term = m.group(0).lower()
            ev = evidence_from(t, m.start(), m.end())
            if self.mask:
                ev.text = _mask(ev.text)
                ev.words = [_mask(w) for w in ev.words]
            key = f"{category}:{term}"
            found.setdefault(key, self._signal(t, "abuse", conf, ev, {"category": category, "term": _mask(term) if self.mask else term, "channel": t.channel}))
        return self._settle(t, ctx, found)


def _mask(s: str) -> str:
    return re.sub(r"(?<=\w)\w", "*", s)


# --------------------------------------------------------------------------- escalation

class EscalationDetector(TextRiskDetector):
    """Explicit requests for a manager/supervisor/escalation, by wording or by meaning.

    The encoder alone separates these poorly from talk *about* managers ("who is your
    manager" scores 0.64 against "I want to speak to your manager"), so the explicit patterns
    carry high confidence and meaning-only matches need a higher threshold and get less.
    """

    name = "escalation"
    produces = frozenset({"signal:risk"})
    version = "1"

    def __init__(self, cfg: dict[str, Any] | None = None, embed: EmbedFn | None = None) -> None:
        c = (cfg if cfg is not None else load_risk_config())["escalation"]
        self.channels = set(c["channels"])
        self.patterns = compile_patterns(c["patterns"], "escalation.patterns")
        self.threshold = float(c["threshold"])
        self.gate = float(c["gate"])
        self.matcher = PrototypeMatcher(c["prototypes"], embed or default_embed())

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        if t.channel not in self.channels or not t.text.strip():
            return []
        found: dict[str, Signal] = {}
        for rx in self.patterns:
            m = rx.search(t.text)
            if m:
                found["escalation"] = self._signal(
                    t, "escalation_request", 0.9, evidence_from(t, m.start(), m.end()),
                    {"method": "pattern", "pattern": rx.pattern, "channel": t.channel},
                )
                break
        if not found and t.is_final:
            words = t.text.split()
            # whole utterance first (one embed); its 8-word windows only when it is anywhere near
            spans = [(0, len(words))]
            if len(words) > 8 and float(self.matcher.similarities([" ".join(words)]).max()) >= self.gate:
                spans = word_windows(words, (8,), 4)
            texts = [" ".join(words[a:b]) for a, b in spans]
            i, j, sim = self.matcher.best(texts)
            if sim >= self.threshold:
                a = spans[i][0]
                start = len(" ".join(words[:a])) + (1 if a else 0)
                ev = evidence_from(t, start, start + len(texts[i])) if " ".join(words) == t.text else evidence_from(t)
                conf = 0.5 + 0.4 * min(1.0, (sim - self.threshold) / max(1e-6, 1.0 - self.threshold) * 2)
                found["escalation"] = self._signal(
                    t, "escalation_request", conf, ev,
                    {"method": "meaning", "similarity": round(sim, 4), "prototype": self.matcher.prototypes[j], "channel": t.channel},
                )
        return self._settle(t, ctx, found)


# --------------------------------------------------------------------------- competitors

class CompetitorDetector(TextRiskDetector):
    """Mentions of competitors by name or alias (config), on either channel."""

    name = "competitor"
    produces = frozenset({"signal:risk"})
    version = "1"

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        c = (cfg if cfg is not None else load_risk_config())["competitors"]
        self.channels = set(c["channels"])
        self.alias_to_name: dict[str, str] = {}
        for name, aliases in (c["names"] or {}).items():
            for a in [name, *(aliases or [])]:
                self.alias_to_name[_norm(a)] = name
        self.rx = lexicon_regex(self.alias_to_name)
        self.exclude = compile_patterns(c.get("exclude_patterns") or [], "competitors.exclude_patterns")

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        if t.channel not in self.channels or not t.text.strip():
            return []
        found: dict[str, Signal] = {}
        excluded = [(x.start(), x.end()) for rx in self.exclude for x in rx.finditer(t.text)]
        for m in self.rx.finditer(t.text):
            if any(a <= m.start() and m.end() <= b for a, b in excluded):
                continue
            comp = self.alias_to_name.get(_norm(m.group(0)))
            if comp and comp not in found:
                found[comp] = self._signal(
                    t, "competitor_mention", 0.85, evidence_from(t, m.start(), m.end()),
                    {"competitor": comp, "alias": m.group(0), "channel": t.channel},
                )
        return self._settle(t, ctx, found)


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


# --------------------------------------------------------------------------- churn

@dataclass
class _ChurnState:
    cancel: float = 0.0
    cancel_why: str = ""
    competitor: str = ""
    last_score: float = 0.0


class ChurnDetector(TextRiskDetector):
    """Combines cancel intent, the customer's sentiment trend and competitor mentions.

    Score = w_cancel * cancel + w_sentiment * negativity + w_competitor * competitor, each
    component in [0, 1]; the signal carries the components and a one-line explanation so the
    agent (and the audit) can see why. Only raised when a cancel cue exists at all: a merely
    unhappy customer is sentiment's business, not churn's.
    """

    name = "churn"
    per_sentence = False  # combines the signals of the whole update
    produces = frozenset({"signal:risk"})
    consumes = frozenset({"signal:intent", "signal:phrase", "signal:risk", "signal:sentiment", "fact:sentiment_trend"})
    version = "1"

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        full = cfg if cfg is not None else load_risk_config()
        c = full["churn"]
        w = c["weights"]
        self.w_cancel, self.w_sent, self.w_comp = float(w["cancel"]), float(w["sentiment"]), float(w["competitor"])
        self.threshold = float(c["threshold"])
        self.min_increase = float(c["min_increase"])
        self.cancel_intents = set(c["cancel_intents"])
        self.cues = compile_patterns(c["cancel_cues"], "churn.cancel_cues")
        self.competitors = CompetitorDetector(full)

    def _state(self, ctx: CallContext) -> _ChurnState:
        st = ctx.state.setdefault(self.name, {})
        if "churn" not in st:
            st["churn"] = _ChurnState()
        return st["churn"]

    def score(self, ctx: CallContext, t: Transcript | None = None) -> tuple[float, dict[str, float], str]:
        """(score, components, explanation) from everything the call has shown so far."""
        st = self._state(ctx)
        trend: float | None = None
        for s in ctx.signals:
            if s.retracted:
                continue
            if s.kind in ("intent", "phrase") and s.name in self.cancel_intents and s.confidence > st.cancel:
                st.cancel, st.cancel_why = s.confidence, f"cancel {s.kind} '{s.name}' ({s.confidence:.2f})"
            elif s.kind == "risk" and s.name == "competitor_mention" and not st.competitor:
                st.competitor = str(s.attrs.get("competitor", "?"))
            elif s.kind == "sentiment" and s.attrs.get("channel", s.evidence.channel if s.evidence else None) == "customer" and "trend" in s.attrs and not s.attrs.get("partial"):
                trend = float(s.attrs["trend"])
        if t is not None and t.channel == "customer" and t.is_final:
            for rx in self.cues:
                m = rx.search(t.text)
                if m and st.cancel < 0.75:
                    st.cancel, st.cancel_why = 0.75, f"cancel cue \"{m.group(0)}\""
                    break
            if not st.competitor:
                for s in self.competitors.detect(t, CallContext(call_id=t.call_id)):
                    st.competitor = str(s.attrs["competitor"])
                    break
        # the sentiment fact is current for this very update: the registry runs sentiment
        # before churn because churn declares it consumes it
        current = ctx.facts.get(TREND_FACT, {}).get("customer")
        if current is not None:
            trend = current
        negativity = 0.0 if trend is None else min(1.0, max(0.0, -trend / 0.6))
        comps = {"cancel": round(st.cancel, 3), "sentiment": round(negativity, 3), "competitor": 1.0 if st.competitor else 0.0}
        score = self.w_cancel * comps["cancel"] + self.w_sent * comps["sentiment"] + self.w_comp * comps["competitor"]
        why = [st.cancel_why] if st.cancel_why else []
        if trend is not None and negativity > 0:
            why.append(f"negative customer trend ({trend:+.2f})")
        if st.competitor:
            why.append(f"competitor mentioned ({st.competitor})")
        return round(score, 3), comps, " + ".join(why)

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        if not t.is_final:
            return []
        st = self._state(ctx)
        score, comps, why = self.score(ctx, t)
        if comps["cancel"] <= 0 or score < self.threshold or score < st.last_score + self.min_increase:
            return []
        st.last_score = score
        return [self._signal(t, "churn_risk", score, evidence_from(t), {"score": score, "components": comps, "explanation": why})]


# --------------------------------------------------------------------------- assembly

def build_text_detectors(cfg: dict[str, Any] | None = None, embed: EmbedFn | None = None) -> list[Detector]:
    """All issue-3 transcript detectors, in the order their declarations give (churn last:
    it consumes what the others produce). The acoustic detector is built separately because
    it listens to audio frames (`callcue.understand.acoustic.AcousticDetector`)."""
    cfg = cfg if cfg is not None else load_risk_config()
    embed = embed or default_embed()
    return order_detectors([
        ChurnDetector(cfg),
        SentimentDetector(cfg),
        AbuseDetector(cfg),
        EscalationDetector(cfg, embed),
        CompetitorDetector(cfg),
        ComplianceDetector(cfg, embed),
    ])
