"""Shared by the text risk detectors: risk config loading, evidence spans, lexicon and
meaning matching, and per-segment de-duplication with retraction of partial signals."""

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
    except RecursionError:
        raise RiskConfigError(f"risk config {p} is not valid YAML: nested too deeply") from None
    except (yaml.YAMLError, ValueError, TypeError) as e:  # UnicodeDecodeError is a ValueError
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
