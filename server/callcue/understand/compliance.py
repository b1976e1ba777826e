"""Required disclosures (said by meaning, within a deadline) and prohibited promises.

Disclosures: agents never read the script word for word, so what they said is compared to
the configured prototypes with the sentence encoder over sliding word windows of the agent's
recent finals (a notice often straddles two ASR segments). The deadline runs on the call
clock: `check_deadlines(ctx, now)` is called by `detect` on every transcript and by the
pipeline on a timer, because a missing disclosure is precisely the case where no agent
transcript arrives to trigger it.

Prohibited promises: wording patterns run on partials (cheap, the agent can be warned while
still talking); meaning-matching runs on finals and is deliberately strict, because the
encoder puts "I hope this gets fixed" close to "I promise this gets fixed".

Signals: kind="compliance", names "disclosure_given", "disclosure_missing",
"prohibited_promise".
"""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from callcue.events import Evidence, Signal, Transcript, Word
from callcue.understand.base import CallContext
from callcue.understand.common import (
    EmbedFn,
    PrototypeMatcher,
    RiskConfigError,
    TextRiskDetector,
    compile_patterns,
    default_embed,
    evidence_from,
    load_risk_config,
    word_windows,
)


@dataclass(frozen=True)
class Disclosure:
    id: str
    description: str
    deadline_s: float
    threshold: float
    prototypes: tuple[str, ...]
    applies_when: tuple[tuple[str, Any], ...] = ()
    must_match: re.Pattern[str] | None = None

    def applies(self, metadata: dict[str, Any]) -> bool:
        """Every applies_when key must equal the call's metadata value (empty = always)."""
        return all(metadata.get(k) == v for k, v in self.applies_when)

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> Disclosure:
        try:
            did = str(d["id"])
            deadline = float(d["deadline_s"])
            threshold = float(d["threshold"])
            protos = tuple(str(p) for p in d["prototypes"])
        except (KeyError, TypeError, ValueError) as e:
            raise RiskConfigError(f"compliance.disclosures entry {d!r} is invalid: {e}") from e
        if deadline <= 0 or not protos or not 0 < threshold < 1:
            raise RiskConfigError(f"disclosure {did!r}: need deadline_s > 0, prototypes, 0 < threshold < 1")
        mm = d.get("must_match")
        return cls(
            id=did, description=str(d.get("description", did)), deadline_s=deadline, threshold=threshold,
            prototypes=protos, applies_when=tuple(sorted((d.get("applies_when") or {}).items())),
            must_match=compile_patterns([mm], f"disclosure {did} must_match")[0] if mm else None,
        )


@dataclass
class ComplianceState:
    """Per call (ctx.state["compliance"]): what was said when, what was already flagged."""

    given: dict[str, float] = field(default_factory=dict)  # disclosure id -> call time said
    missing_flagged: dict[str, Signal] = field(default_factory=dict)
    recent: deque[Transcript] = field(default_factory=lambda: deque(maxlen=2))


class ComplianceDetector(TextRiskDetector):
    name = "compliance"
    inputs = frozenset({"text", "tick"})
    produces = frozenset({"signal:compliance"})
    version = "1"
    kind = "compliance"

    def __init__(self, cfg: dict[str, Any] | None = None, embed: EmbedFn | None = None) -> None:
        c = (cfg if cfg is not None else load_risk_config())["compliance"]
        self.channel = c["channel"]
        self.window_words = [int(x) for x in c["window_words"]]
        self.stride = int(c["window_stride"])
        self.carry_words = int(c["carry_words"])
        self.gate = float(c["gate"])
        self.disclosures = [Disclosure.from_config(d) for d in c["disclosures"]]
        ids = [d.id for d in self.disclosures]
        if len(set(ids)) != len(ids):
            raise RiskConfigError(f"duplicate disclosure ids: {ids}")
        embed = embed or default_embed()
        self._disc_matchers = {d.id: PrototypeMatcher(d.prototypes, embed) for d in self.disclosures}
        self._embed = embed
        self._cache: dict[str, np.ndarray] = {}
        self._cache_lock = threading.Lock()  # detect() runs in executor threads for many calls
        pp = c["prohibited_promises"]
        self.promise_patterns = compile_patterns(pp["patterns"], "compliance.prohibited_promises.patterns")
        self.promise_matcher = PrototypeMatcher(pp["prototypes"], embed)
        self.promise_threshold = float(pp["threshold"])
        self.promise_gate = float(pp["gate"])
        self.negation = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in pp["negations"]) + r")(?!\w)", re.IGNORECASE)
        self.not_negation = re.compile("|".join(re.escape(n) for n in pp.get("not_negations", [])) or r"(?!x)x", re.IGNORECASE)
        self.hedge = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(h) for h in pp["hedges"]) + r")(?!\w)", re.IGNORECASE)

    def _embed_cached(self, texts: list[str]) -> np.ndarray:
        """Embed, reusing vectors of windows seen recently: the promise check and the
        disclosure check look at many of the same agent windows, and so do consecutive finals."""
        with self._cache_lock:
            have = {x: self._cache[x] for x in texts if x in self._cache}
        missing = [x for x in dict.fromkeys(texts) if x not in have]
        if missing:
            vecs = self._embed(missing)  # outside the lock: other calls' threads keep going
            with self._cache_lock:
                for x, v in zip(missing, vecs):
                    self._cache[x] = have[x] = v
                while len(self._cache) > 4096:
                    self._cache.pop(next(iter(self._cache)))
        return np.stack([have[x] for x in texts])

    # ------------------------------------------------------------------ state

    def _cstate(self, ctx: CallContext) -> ComplianceState:
        st = ctx.state.setdefault(self.name, {})
        cs = st.get("calls")
        if not isinstance(cs, ComplianceState):
            cs = st["calls"] = ComplianceState()
        return cs

    def required(self, ctx: CallContext) -> list[Disclosure]:
        return [d for d in self.disclosures if d.applies(ctx.metadata)]

    # ------------------------------------------------------------------ detect

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        out: list[Signal] = []
        if t.channel == self.channel and t.text.strip():
            out += self._promises(t, ctx)
            if t.is_final:
                out += self._disclosures(t, ctx)
        out += self.check_deadlines(ctx, t.end)
        return out

    def on_tick(self, ctx: CallContext, call_time: float) -> list[Signal]:
        return self.check_deadlines(ctx, call_time)

    def on_call_end(self, ctx: CallContext, call_time: float) -> list[Signal]:
        """A call that ended before a deadline did not read that disclosure either: judged
        now, since nothing more can be said (QA scores it; no playbook can act on it)."""
        return self.check_deadlines(ctx, call_time, at_end=True)

    def check_deadlines(self, ctx: CallContext, now_call_time: float, at_end: bool = False) -> list[Signal]:
        """`disclosure_missing` once per disclosure whose deadline passed unsaid (or whose
        call ended, `at_end`)."""
        cs = self._cstate(ctx)
        out = []
        for d in self.required(ctx):
            if d.id in cs.given or d.id in cs.missing_flagged or (now_call_time < d.deadline_s and not at_end):
                continue
            sig = cs.missing_flagged[d.id] = Signal(
                call_id=ctx.call_id, kind=self.kind, name="disclosure_missing", confidence=1.0,
                detector=self.name, detector_version=self.version,
                # nothing was said: the evidence is the agent channel's silence on it until the deadline
                evidence=Evidence(channel=self.channel, text="", start=0.0, end=min(d.deadline_s, now_call_time),
                                  segment_id=-1, revision=0, is_final=True),
                attrs={"disclosure_id": d.id, "description": d.description, "deadline_s": d.deadline_s,
                       "checked_at": round(now_call_time, 3), **({"judged_at_end": True} if at_end else {})},
            )
            out.append(sig)
        return out

    def _disclosures(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        cs = self._cstate(ctx)
        cs.recent.append(t)
        pending = [d for d in self.required(ctx) if d.id not in cs.given]
        if not pending:
            return []
        newest = _timed_words([t])
        words = _timed_words(list(cs.recent)[:-1])[-self.carry_words :] + newest
        if not newest:
            return []
        whole = " ".join(w.text for w in words)
        # a disclosure whose required term is absent cannot be in any window: skip it unembedded
        pending = [d for d in pending if d.must_match is None or d.must_match.search(whole)]
        if not pending:
            return []
        gate_vec = self._embed_cached([whole])
        if max(float(self._disc_matchers[d.id].score_vectors(gate_vec).max()) for d in pending) < self.gate:
            return []
        newest_from = len(words) - len(newest)
        spans = [(a, b) for a, b in word_windows([w.text for w in words], self.window_words, self.stride) if b > newest_from]
        texts = [" ".join(w.text for w in words[a:b]) for a, b in spans]
        vecs = self._embed_cached(texts)
        out = []
        for d in pending:
            sims = self._disc_matchers[d.id].score_vectors(vecs)
            best = sims.max(axis=1)
            if d.must_match is not None:
                best = np.where([bool(d.must_match.search(x)) for x in texts], best, -1.0)
            i = int(np.argmax(best))
            sim = float(best[i])
            if sim < d.threshold:
                continue
            a, b = spans[i]
            ws = words[a:b]
            cs.given[d.id] = ws[0].start
            late = ws[0].start > d.deadline_s
            conf = min(1.0, 0.6 + 0.4 * (sim - d.threshold) / max(1e-6, 1.0 - d.threshold) * 2)
            out.append(self._signal(
                t, "disclosure_given", conf,
                Evidence(channel=t.channel, text=texts[i], start=ws[0].start, end=ws[-1].end, segment_id=t.segment_id,
                         revision=t.revision, is_final=True, words=[w.text for w in ws]),
                {"disclosure_id": d.id, "description": d.description, "similarity": round(sim, 4),
                 "prototype": d.prototypes[int(np.argmax(sims[i]))], "said_at": round(ws[0].start, 3),
                 "deadline_s": d.deadline_s, "late": late},
            ))
            earlier = cs.missing_flagged.get(d.id)
            if earlier is not None and not late:
                # the timer fired while ASR was still finishing: it was said in time after all
                earlier.retracted = True
                out.append(earlier)
        return out

    def _promises(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        found: dict[str, Signal] = {}
        for rx in self.promise_patterns:
            for m in rx.finditer(t.text):
                if self._negated(t.text, m.start()):
                    continue
                found["promise"] = self._signal(
                    t, "prohibited_promise", 0.9, evidence_from(t, m.start(), m.end()),
                    {"method": "pattern", "pattern": rx.pattern, "phrase": m.group(0)},
                )
                break
            if found:
                break
        if not found and t.is_final:
            hit = self._promise_by_meaning(t.text.split())
            if hit is not None:
                window, sim = hit
                found["promise"] = self._signal(
                    t, "prohibited_promise", 0.6 + 0.3 * (sim - self.promise_threshold) / max(1e-6, 1 - self.promise_threshold),
                    evidence_from(t), {"method": "meaning", "similarity": round(sim, 4), "window": window},
                )
        return self._settle(t, ctx, found)

    def _promise_by_meaning(self, words: list[str]) -> tuple[str, float] | None:
        """Best un-hedged, un-negated 8-word window above threshold, or None.

        The whole final is embedded first; its windows only when it is anywhere near a promise.
        """
        whole = " ".join(words)
        if float(self.promise_matcher.score_vectors(self._embed_cached([whole])).max()) < self.promise_gate:
            return None
        texts = [" ".join(words[a:b]) for a, b in word_windows(words, (8,), 3)]
        sims = self.promise_matcher.score_vectors(self._embed_cached(texts)).max(axis=1)
        for i in np.argsort(-sims):
            if sims[i] < self.promise_threshold:
                return None
            if not (self.hedge.search(texts[i]) or self.negation.search(texts[i])):
                return texts[i], float(sims[i])
        return None

    def _negated(self, text: str, start: int) -> bool:
        """A negation within the two words before the promise ("I can't guarantee", "not
        guaranteed"); further back it usually belongs to something else ("don't worry, I ...")."""
        before = self.not_negation.sub(" ", text[:start])
        before = " ".join(before.split()[-2:])
        return bool(self.negation.search(before))


def _timed_words(ts: list[Transcript]) -> list[Word]:
    """Words with call-clock times; spread evenly over the segment when the engine gave none."""
    out: list[Word] = []
    for t in ts:
        if t.words:
            out.extend(t.words)
            continue
        toks = t.text.split()
        if not toks:
            continue
        step = (t.end - t.start) / len(toks)
        out.extend(Word(w, t.start + i * step, t.start + (i + 1) * step) for i, w in enumerate(toks))
    return out
