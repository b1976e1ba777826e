"""Per-utterance sentiment for each channel and a running trend per call.

Why VADER: it is a published, rule-based model (Hutto & Gilbert 2014) whose lexicon ships
inside the `vaderSentiment` wheel, so it installs offline, needs no model hub, and scores an
utterance in ~50 microseconds -- cheap enough to run on every partial. It was built for short,
informal text, which is what streaming ASR produces. Its weak spot (no context, sarcasm) is
why a single utterance never raises the alarm on its own: the *trend* does.

Flood control: finals always yield one signal; a partial yields one only when it is strongly
polar and differs from the channel's last label, at most once per segment. If the final of
that segment disagrees, the partial's signal is re-sent with `retracted=True`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from callcue.events import Channel, Signal, Transcript
from callcue.understand.base import CallContext, Detector
from callcue.understand.common import evidence_from, load_risk_config

_ANALYZER: SentimentIntensityAnalyzer | None = None
_ANALYZER_LOCK = threading.Lock()


def analyzer() -> SentimentIntensityAnalyzer:
    """One shared analyzer: loading the lexicon costs ~50 ms, scoring only reads it."""
    global _ANALYZER
    with _ANALYZER_LOCK:
        if _ANALYZER is None:
            _ANALYZER = SentimentIntensityAnalyzer()
        return _ANALYZER


def score_text(text: str) -> float:
    """VADER compound score in [-1, 1]; 0.0 for empty text."""
    if not isinstance(text, str):
        raise TypeError(f"score_text expects str, got {type(text).__name__}")
    if not text.strip():
        return 0.0
    return float(analyzer().polarity_scores(text)["compound"])


@dataclass
class _ChannelState:
    trend: float = 0.0
    finals: int = 0
    recent_labels: list[str] = field(default_factory=list)  # last few final labels
    last_label: str = "neutral"
    anger_active: bool = False
    # segment_id -> signal emitted from a partial (to retract if the final disagrees)
    partial_signals: dict[int, Signal] = field(default_factory=dict)


@dataclass
class SentimentState:
    """What the detector remembers per call (ctx.state["sentiment"])."""

    channels: dict[str, _ChannelState] = field(default_factory=dict)
    call_trend: float = 0.0

    def channel(self, ch: Channel) -> _ChannelState:
        return self.channels.setdefault(ch, _ChannelState())


TREND_FACT = "sentiment_trend"  # ctx.facts[TREND_FACT][channel]: the running trend after each final


def channel_trend(ctx: CallContext, channel: Channel) -> float | None:
    """The running trend of one channel, or None before its first final."""
    trend = ctx.facts.get(TREND_FACT, {}).get(channel)
    return None if trend is None else float(trend)


class SentimentDetector(Detector):
    """Emits kind="sentiment" signals: negative | positive | neutral | anger_sustained."""

    name = "sentiment"
    per_sentence = False  # a trend over utterances: one update is one utterance
    produces = frozenset({"signal:sentiment", "fact:sentiment_trend"})
    version = "1"

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        c = (cfg if cfg is not None else load_risk_config())["sentiment"]
        self.neg_below = float(c["negative_below"])
        self.pos_above = float(c["positive_above"])
        self.alpha = float(c["trend_alpha"])
        self.partial_min_abs = float(c["partial_min_abs"])
        self.anger_below = float(c["anger_trend_below"])
        self.anger_min_neg = int(c["anger_min_negatives"])
        self.anger_rearm = float(c["anger_rearm_above"])
        if not (-1.0 <= self.neg_below < self.pos_above <= 1.0):
            raise ValueError(f"sentiment bands must satisfy -1 <= negative_below < positive_above <= 1, got {self.neg_below}, {self.pos_above}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"sentiment.trend_alpha must be in (0, 1], got {self.alpha}")
        analyzer()

    def label(self, score: float) -> str:
        if score <= self.neg_below:
            return "negative"
        if score >= self.pos_above:
            return "positive"
        return "neutral"

    def _state(self, ctx: CallContext) -> SentimentState:
        st = ctx.state.get(self.name)
        if not isinstance(st, SentimentState):
            st = SentimentState()
            ctx.state[self.name] = st
        return st

    def _signal(self, t: Transcript, name: str, confidence: float, attrs: dict[str, Any]) -> Signal:
        return Signal(
            call_id=t.call_id,
            kind="sentiment",
            name=name,
            confidence=round(max(0.0, min(1.0, confidence)), 3),
            detector=self.name,
            detector_version=self.version,
            evidence=evidence_from(t),
            attrs=attrs,
        )

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        st = self._state(ctx)
        ch = st.channel(t.channel)
        score = score_text(t.text)
        label = self.label(score)
        if not t.is_final:
            return self._on_partial(t, ch, score, label)

        out: list[Signal] = []
        earlier = ch.partial_signals.pop(t.segment_id, None)
        if earlier is not None and earlier.name != label:
            earlier.retracted = True
            out.append(earlier)
        if not t.text.strip():
            return out

        ch.trend = score if ch.finals == 0 else self.alpha * score + (1 - self.alpha) * ch.trend
        ch.finals += 1
        ctx.facts.setdefault(TREND_FACT, {})[t.channel] = ch.trend
        st.call_trend = self.alpha * score + (1 - self.alpha) * st.call_trend
        ch.recent_labels = (ch.recent_labels + [label])[-4:]
        ch.last_label = label
        # confidence: how far past the band edge the score is, floor 0.5 for neutral
        conf = abs(score) if label != "neutral" else 1.0 - abs(score)
        if earlier is not None and earlier.name == label:
            # the partial already said it; refresh nothing, the trend still moved
            pass
        else:
            out.append(
                self._signal(t, label, conf, {"score": round(score, 4), "trend": round(ch.trend, 4), "call_trend": round(st.call_trend, 4), "channel": t.channel})
            )
        out.extend(self._anger(t, ch, score))
        return out

    def _on_partial(self, t: Transcript, ch: _ChannelState, score: float, label: str) -> list[Signal]:
        if t.segment_id in ch.partial_signals or abs(score) < self.partial_min_abs or label == ch.last_label:
            return []
        sig = self._signal(t, label, abs(score), {"score": round(score, 4), "trend": round(ch.trend, 4), "channel": t.channel, "partial": True})
        ch.partial_signals[t.segment_id] = sig
        return [sig]

    def _anger(self, t: Transcript, ch: _ChannelState, score: float) -> list[Signal]:
        negatives = ch.recent_labels.count("negative")
        if ch.anger_active:
            if ch.trend > self.anger_rearm:
                ch.anger_active = False
            return []
        if ch.trend <= self.anger_below and negatives >= self.anger_min_neg:
            ch.anger_active = True
            conf = min(1.0, 0.5 + abs(ch.trend) / 2 + 0.1 * (negatives - self.anger_min_neg))
            return [self._signal(t, "anger_sustained", conf, {"score": round(score, 4), "trend": round(ch.trend, 4), "negatives_in_last_4": negatives, "channel": t.channel})]
        return []
