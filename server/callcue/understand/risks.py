"""Conversation risks: abuse, escalation requests, competitor mentions and churn risk.

Also home of the small helpers the other issue-3 detectors share (config loading, evidence,
meaning-matching with the sentence encoder), so each detector module keeps to its one job.

How the churn detector sees other detectors' signals: the pipeline appends every signal any
detector emitted for the call to `ctx.state["signals"]` (a list or deque, oldest first,
bounded by the pipeline). Churn reads cancel intents (kind="intent"), sentiment trends
(kind="sentiment", attrs["trend"]) and competitor mentions (kind="risk",
name="competitor_mention") from there. Signals of the *same* update are only there if the
pipeline appends each detector's output before running the next; otherwise churn sees them
one update later, except for what it reads directly: the sentiment detector's current state
(`ctx.state["sentiment"]`, when sentiment runs before churn), competitor names and its own
cancel cues in the transcript itself.

Partials vs finals: lexicon and regex checks run on partials too (microseconds); the encoder
runs on finals only (~10 ms per call). A partial-based signal that the segment's final does
not confirm is re-emitted with `retracted=True`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from callcue.events import Evidence, Signal, Transcript, Word
from callcue.understand.base import CallContext, Detector

EmbedFn = Callable[[list[str]], np.ndarray]

CONFIG_ENV = "CALLCUE_RISKS_CONFIG"
_REPO_CONFIG = Path(__file__).resolve().parents[3] / "config" / "risks.yaml"
_REQUIRED_SECTIONS = ("sentiment", "abuse", "escalation", "competitors", "churn", "compliance", "acoustic")


class RiskConfigError(ValueError):
    """config/risks.yaml is missing, unreadable, or lacks a section a detector needs."""


def load_risk_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read risks.yaml from `path`, $CALLCUE_RISKS_CONFIG, or the repo's config/ folder."""
    p = Path(path or os.environ.get(CONFIG_ENV) or _REPO_CONFIG)
    if not p.is_file():
        raise RiskConfigError(f"risk config not found: {p} (set {CONFIG_ENV} or pass a path)")
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise RiskConfigError(f"risk config {p} is not valid YAML: {e}") from e
    if not isinstance(cfg, dict):
        raise RiskConfigError(f"risk config {p} must be a mapping, got {type(cfg).__name__}")
    missing = [s for s in _REQUIRED_SECTIONS if s not in cfg]
    if missing:
        raise RiskConfigError(f"risk config {p} lacks section(s): {', '.join(missing)}")
    return cfg


# --------------------------------------------------------------------------- shared helpers

_TOKEN = re.compile(r"[\w'&-]+")


def evidence_from(t: Transcript, start_char: int | None = None, end_char: int | None = None) -> Evidence:
    """Evidence for a whole transcript or for a character span of its text.

    Word times come from the transcript's words when the span can be aligned to them (same
    tokens in order, which is how our ASR engines emit text); otherwise the segment's times.
    """
    if start_char is None or end_char is None:
        return Evidence(
            channel=t.channel, text=t.text, start=t.start, end=t.end, segment_id=t.segment_id,
            revision=t.revision, is_final=t.is_final, words=[w.text for w in t.words] or t.text.split(),
        )
    span = t.text[start_char:end_char]
    words = _words_for_span(t, start_char, end_char)
    return Evidence(
        channel=t.channel, text=span,
        start=words[0].start if words else t.start, end=words[-1].end if words else t.end,
        segment_id=t.segment_id, revision=t.revision, is_final=t.is_final,
        words=[w.text for w in words] if words else _TOKEN.findall(span),
    )


def _words_for_span(t: Transcript, start_char: int, end_char: int) -> list[Word]:
    toks = list(_TOKEN.finditer(t.text))
    if not t.words or len(toks) != len(t.words):
        return []
    return [w for m, w in zip(toks, t.words) if m.end() > start_char and m.start() < end_char]


def lexicon_regex(terms: Iterable[str]) -> re.Pattern[str]:
    """Word-bounded, case-insensitive alternation; a trailing '*' allows any word suffix."""
    parts = []
    for term in terms:
        term = str(term).strip()
        if not term:
            continue
        if term.endswith("*"):
            parts.append(re.escape(term[:-1]) + r"\w*")
        else:
            parts.append(re.escape(term))
    if not parts:
        raise RiskConfigError("empty lexicon")
    # (?<![\w]) / (?![\w]) rather than \b so that terms like "at&t" still match
    return re.compile(r"(?<!\w)(?:" + "|".join(sorted(parts, key=len, reverse=True)) + r")(?!\w)", re.IGNORECASE)


def compile_patterns(patterns: Iterable[str], what: str) -> list[re.Pattern[str]]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p, re.IGNORECASE))
        except re.error as e:
            raise RiskConfigError(f"{what}: bad regex {p!r}: {e}") from e
    return out


_DEFAULT_EMBED: EmbedFn | None = None
_EMBED_LOCK = threading.Lock()


def default_embed() -> EmbedFn:
    """The process-wide sentence encoder's `embed`, loaded on first use."""
    global _DEFAULT_EMBED
    with _EMBED_LOCK:
        if _DEFAULT_EMBED is None:
            from callcue.understand.encoder import SentenceEncoder

            _DEFAULT_EMBED = SentenceEncoder.load().embed
        return _DEFAULT_EMBED


class PrototypeMatcher:
    """Cosine similarity of texts against a fixed set of prototype phrases.

    Prototypes are embedded once at construction; `best` embeds the candidates in one batch.
    """

    def __init__(self, prototypes: Sequence[str], embed: EmbedFn) -> None:
        if not prototypes:
            raise RiskConfigError("a meaning matcher needs at least one prototype phrase")
        self.prototypes = list(prototypes)
        self._embed = embed
        self._protos = self._unit(embed(self.prototypes))

    @staticmethod
    def _unit(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float32)
        return v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)

    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), len(prototypes)) cosine similarities."""
        if not texts:
            return np.zeros((0, len(self.prototypes)), dtype=np.float32)
        return self.score_vectors(self._embed(list(texts)))

    def score_vectors(self, vecs: np.ndarray) -> np.ndarray:
        """Similarities for vectors embedded elsewhere (shared batches, caches)."""
        return self._unit(vecs) @ self._protos.T

    def best(self, texts: Sequence[str]) -> tuple[int, int, float]:
        """(text index, prototype index, similarity) of the closest pair."""
        s = self.similarities(texts)
        if s.size == 0:
            return -1, -1, 0.0
        i, j = np.unravel_index(int(np.argmax(s)), s.shape)
        return int(i), int(j), float(s[i, j])


def word_windows(words: Sequence[str], sizes: Sequence[int], stride: int) -> list[tuple[int, int]]:
    """(start, end) word-index windows of each size, plus the whole text, de-duplicated."""
    n = len(words)
    spans: set[tuple[int, int]] = {(0, n)} if n else set()
    for size in sizes:
        if size >= n:
            continue
        for s in range(0, n - size + 1, max(1, stride)):
            spans.add((s, s + size))
        spans.add((n - size, n))
    return sorted(spans)


@dataclass
class _SegmentMemo:
    """Signals raised from partials of one segment, keyed by what they were about."""

    partial: dict[str, Signal] = field(default_factory=dict)
    final_done: bool = False


class TextRiskDetector(Detector):
    """Shared bookkeeping: per-segment de-duplication and retraction of partial signals."""

    kind = "risk"

    def _memo(self, ctx: CallContext, t: Transcript) -> _SegmentMemo:
        memos: dict[tuple[str, int], _SegmentMemo] = ctx.state.setdefault(self.name, {}).setdefault("segments", {})
        key = (t.channel, t.segment_id)
        m = memos.get(key)
        if m is None:
            m = memos[key] = _SegmentMemo()
            if len(memos) > 256:  # calls are long; old segments never come back
                for k in list(memos)[:64]:
                    del memos[k]
        return m

    def _signal(self, t: Transcript, name: str, conf: float, ev: Evidence, attrs: dict[str, Any]) -> Signal:
        return Signal(
            call_id=t.call_id, kind=self.kind, name=name, confidence=round(max(0.0, min(1.0, conf)), 3),
            detector=self.name, detector_version=self.version, evidence=ev, attrs=attrs,
        )

    def _settle(self, t: Transcript, ctx: CallContext, found: dict[str, Signal]) -> list[Signal]:
        """Emit `found` (key -> signal) once per segment; retract partial ones the final lacks."""
        m = self._memo(ctx, t)
        if m.final_done:
            return []
        out: list[Signal] = []
        if not t.is_final:
            for key, sig in found.items():
                if key not in m.partial:
                    m.partial[key] = sig
                    out.append(sig)
            return out
        m.final_done = True
        for key, sig in found.items():
            if key not in m.partial:
                out.append(sig)
        for key, sig in m.partial.items():
            if key not in found:
                sig.retracted = True
                out.append(sig)
        return out


# --------------------------------------------------------------------------- abuse

class AbuseDetector(TextRiskDetector):
    """Profanity, insults aimed at someone, and threats, on both channels.

    A bare insult word ("this is stupid") is weak evidence of abuse; aimed at a person ("you
    are stupid", "you idiot") it is strong. Profanity counts either way, but less when not aimed.
    """

    name = "abuse"
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
        for s in ctx.state.get("signals", []) or []:
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
        # the sentiment detector's own state is current for this very update when it ran
        # before churn; the signals list may lag one update (the pipeline appends after all ran)
        from callcue.understand.sentiment import channel_trend

        current = channel_trend(ctx, "customer")
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
    """All issue-3 transcript detectors in the order the pipeline should run them.

    Churn is last so that, with the pipeline appending each detector's signals to
    `ctx.state["signals"]` as it goes, churn sees this very update's sentiment and competitor
    signals. (The intent detector belongs before it too.) The acoustic monitor is not a
    Detector: it is fed audio frames, see `callcue.understand.acoustic.AcousticMonitor`.
    """
    from callcue.understand.compliance import ComplianceDetector
    from callcue.understand.sentiment import SentimentDetector

    cfg = cfg if cfg is not None else load_risk_config()
    embed = embed or default_embed()
    return [
        SentimentDetector(cfg),
        AbuseDetector(cfg),
        EscalationDetector(cfg, embed),
        CompetitorDetector(cfg),
        ComplianceDetector(cfg, embed),
        ChurnDetector(cfg),
    ]
