"""First-version decisions: a phrase rule's signal raises the hint written next to the rule.

Why de-duplicate by evidence and by a short cooldown: a rule matches on a partial and again on
the final of the same sentence, and customers repeat themselves; an agent shown the same card
three times stops reading cards. The playbook engine (decide/engine.py) supersedes this with
governed actions; this policy remains the fallback when no playbook handles a signal.
"""

from __future__ import annotations

from callcue.events import Hint, Signal
from callcue.understand.phrases import PhraseDetector


class PhraseHintPolicy:
    def __init__(self, phrases: PhraseDetector, cooldown_s: float = 60.0) -> None:
        self.phrases = phrases
        self.cooldown_s = cooldown_s
        # (call_id, rule) -> call-clock time of the evidence that last raised it
        self._last: dict[tuple[str, str], float] = {}
        self._seen_evidence: set[tuple[str, str, str, int]] = set()

    def on_signal(self, sig: Signal) -> list[Hint]:
        if sig.retracted or sig.detector != self.phrases.name:
            return []
        spec = self.phrases.hint_for(sig.name)
        if spec is None:
            return []
        ev = sig.evidence
        if ev is not None:
            key = (sig.call_id, sig.name, ev.channel, ev.segment_id)
            if key in self._seen_evidence:
                return []
            self._seen_evidence.add(key)
            last = self._last.get((sig.call_id, sig.name))
            if last is not None and ev.start - last < self.cooldown_s:
                return []
            self._last[(sig.call_id, sig.name)] = ev.start
        return [
            Hint(
                call_id=sig.call_id,
                title=spec.title,
                body=spec.body,
                suggested_reply=spec.suggested_reply,
                severity=spec.severity,
                source=f"phrases/{sig.name}@{self.phrases.version}",
                signal_ids=[sig.signal_id],
            )
        ]

    def forget(self, call_id: str) -> None:
        self._last = {k: v for k, v in self._last.items() if k[0] != call_id}
        self._seen_evidence = {k for k in self._seen_evidence if k[0] != call_id}
