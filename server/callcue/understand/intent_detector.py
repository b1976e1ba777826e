"""The "intent" detector: classifies each customer utterance, partials included, with debouncing.

Why debouncing: a streaming recogniser revises a segment many times a second, and the early
words of "I want to cancel... my order" and "I want to cancel my account" look alike. Showing
the agent a hint the moment a partial flickers past an intent is noise; waiting for the final
costs seconds. So, per (call, segment):

- a partial fires an intent once, when the same top intent held for `stable_updates` partials
  in a row at >= `partial_confidence`, or at once when one partial reaches `high_confidence`;
- the final confirms it (a signal with `evidence.is_final=True`) or retracts it (a signal with
  `retracted=True` for the same name), and may fire a new intent the partials never reached;
- at most one non-retracted signal per (segment, intent).

State lives in `ctx.state["intent"]`, one dict per call; the classifier itself is read-only
after fitting, so one detector serves every call from any number of executor threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from callcue.events import Evidence, Signal, Transcript
from callcue.understand.base import CallContext, Detector
from callcue.understand.intents import (
    OOS,
    DetectorDef,
    IntentClassifier,
    IntentConfig,
    IntentPrediction,
    default_config_path,
    load_intents,
)

STATE_KEY = "intent"
# finished segments whose state we keep: a late duplicate final must not re-fire
_KEEP_SEGMENTS = 64


@dataclass
class _SegmentState:
    streak_intent: str | None = None
    streak: int = 0
    fired: dict[str, Signal] = field(default_factory=dict)  # intent -> the partial signal
    final_done: bool = False
    last_revision: int = -1


@dataclass
class _CallState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    segments: dict[tuple[str, int], _SegmentState] = field(default_factory=dict)


class IntentDetector(Detector):
    name = "intent"
    produces = frozenset({"signal:intent"})

    def __init__(self, classifier: IntentClassifier, settings: DetectorDef | None = None, *, config_version: str = "") -> None:
        self.classifier = classifier
        self.settings = settings or DetectorDef()
        self.version = f"1+{config_version}" if config_version else "1"

    @classmethod
    def from_config(cls, config: IntentConfig | str | Path | None = None, **kw: object) -> IntentDetector:
        """Load (default: config/intents.yaml), train, and wrap. Blocks for the fit: call at start-up."""
        cfg = config if isinstance(config, IntentConfig) else load_intents(config or default_config_path())
        clf = IntentClassifier.from_config(cfg, **kw)  # type: ignore[arg-type]
        return cls(clf, cfg.detector, config_version=cfg.version)

    # ------------------------------------------------------------------------------------------

    def _call_state(self, ctx: CallContext) -> _CallState:
        st = ctx.state.get(STATE_KEY)
        if st is None:
            # setdefault is atomic under the GIL: two threads racing here share one state
            st = ctx.state.setdefault(STATE_KEY, _CallState())
        return st

    def _signal(self, t: Transcript, pred_name: str, conf: float, pred: IntentPrediction | None, *, retracted: bool = False) -> Signal:
        ev = Evidence(
            channel=t.channel,
            text=t.text,
            start=t.start,
            end=t.end,
            segment_id=t.segment_id,
            revision=t.revision,
            is_final=t.is_final,
            words=[w.text for w in t.words],
        )
        attrs: dict[str, object] = {"stage": "final" if t.is_final else "partial"}
        if pred is not None:
            attrs["top"] = [[n, round(p, 4)] for n, p in pred.top]
        return Signal(
            call_id=t.call_id,
            kind="intent",
            name=pred_name,
            confidence=round(float(conf), 4),
            detector=self.name,
            detector_version=self.version,
            evidence=ev,
            attrs=attrs,
            retracted=retracted,
        )

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        s = self.settings
        if t.channel not in s.channels:
            return []
        text = t.text.strip()
        too_short = len(text.split()) < s.min_words
        st = self._call_state(ctx)
        key = (t.channel, t.segment_id)
        with st.lock:
            seg = st.segments.get(key)
            if seg is None:
                seg = st.segments[key] = _SegmentState()
                while len(st.segments) > _KEEP_SEGMENTS:
                    st.segments.pop(next(iter(st.segments)))
            if seg.final_done or (not t.is_final and t.revision <= seg.last_revision):
                return []  # late or duplicate update
            seg.last_revision = max(seg.last_revision, t.revision)
            if not t.is_final and too_short:
                return []
        # classify outside the lock: it is the slow part and reads no per-call state
        pred = None if too_short else self.classifier.predict([text])[0]
        with st.lock:
            if seg.final_done:
                return []
            if t.is_final:
                seg.final_done = True
                return self._on_final(t, seg, pred)
            return self._on_partial(t, seg, pred)

    def _on_partial(self, t: Transcript, seg: _SegmentState, pred: IntentPrediction | None) -> list[Signal]:
        s = self.settings
        assert pred is not None
        if not pred.in_scope or pred.confidence < s.partial_confidence:
            seg.streak_intent, seg.streak = None, 0
            return []
        if pred.intent == seg.streak_intent:
            seg.streak += 1
        else:
            seg.streak_intent, seg.streak = pred.intent, 1
        if pred.intent in seg.fired:
            return []
        if seg.streak >= s.stable_updates or pred.confidence >= s.high_confidence:
            sig = self._signal(t, pred.intent, pred.confidence, pred)
            seg.fired[pred.intent] = sig
            return [sig]
        return []

    def _on_final(self, t: Transcript, seg: _SegmentState, pred: IntentPrediction | None) -> list[Signal]:
        s = self.settings
        final_intent = pred.intent if pred is not None and pred.in_scope and pred.confidence >= s.final_confidence else OOS
        out: list[Signal] = []
        for name, partial in seg.fired.items():
            if name != final_intent:
                # the final does not support what a partial claimed: take it back
                p = dict(pred.top).get(name, 0.0) if pred is not None else 0.0
                out.append(self._signal(t, name, p, pred, retracted=True))
                out[-1].attrs["retracts"] = partial.signal_id
        if final_intent != OOS:
            assert pred is not None
            sig = self._signal(t, final_intent, pred.confidence, pred)
            if final_intent in seg.fired:
                sig.attrs["confirms"] = seg.fired[final_intent].signal_id
            out.append(sig)
        return out
