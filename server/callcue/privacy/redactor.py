"""Mask card numbers, security codes, SSNs and account numbers before anything else sees them.

Why this runs first and keeps state: the pipeline hands every transcript (partials and
finals, both channels) to `Redactor.redact` before storage, detectors or egress, so a raw
number can only exist inside this object's memory. Callers pause mid-number ("4111 1111
... uh ... 1111 1111") and the ASR closes a segment at each pause, so the redactor carries
the digits of a trailing run into the next utterance of the same channel and judges the
*assembled* number. Context (the agent asking "can I have your card number", the customer
saying "my social is") arms stricter masking for a window of call time on both channels.

Masking policy ("last four at most"): a number we recognise as complete (Luhn-valid
13-19 digit card, 9-digit SSN, account number in an account context) shows its last four
digits once; every other fragment in a dictation context, every continuation of an earlier
fragment, every CVV/PIN and every unexplained run of 5+ digits is masked entirely. Money
amounts ("250 dollars") and order/reference numbers in an order context stay readable.

The context-free parts (masks, card brands, the log filter) are in `masking.py`, the words
that arm masking in `cues.py`; the detector-shaped wrapper is `understand/redaction.py`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz

from callcue.events import Evidence, Signal, Transcript, Word
from callcue.privacy.cues import (
    _CONTEXT_PATTERNS,
    _FUZZ_THRESHOLD,
    _LEAD_WORDS,
    _OBJECTS,
    _REQUEST_CUE,
    _SENSITIVE,
)
from callcue.privacy.masking import (
    _BACKSTOP_DIGITS,
    _SSN_GROUPED,
    _apply_spans,
    _followed_by_currency,
    _followed_by_unit,
    _text_span,
    card_brand,
    mask_digits,
    mask_text,
    ssn_plausible,
)
from callcue.privacy.spoken_numbers import (
    FILLERS,
    DigitRun,
    Token,
    find_digit_runs,
    luhn_valid,
    tokenize,
)

DETECTOR_NAME = "redaction"
DETECTOR_VERSION = "1.0"

#: Call-clock seconds a context word ("card number", "security code") keeps masking armed.
CONTEXT_WINDOW_S = 30.0
#: Longest pause (end of one utterance to start of the next) a dictated number survives.
CONTINUATION_PAUSE_S = 8.0

# --------------------------------------------------------------------------------------
# per-channel state and the plan for one transcript


@dataclass(slots=True)
class _Pending:
    """Digits of a number still being dictated at the end of the last final (memory only)."""

    digits: str
    start: float
    end: float
    segments: list[int]
    revealed: bool  # its last four were already shown: a continuation shows nothing


@dataclass(slots=True)
class _ChannelState:
    pending: _Pending | None = None
    context_until: dict[str, float] = field(default_factory=dict)
    # signals emitted on partials of the open segment, by dedupe key
    partial_signals: dict[int, dict[str, Signal]] = field(default_factory=dict)


@dataclass(slots=True)
class _RunPlan:
    run: DigitRun
    assembled: str  # pending prefix + this run when it continues an earlier utterance
    continuation: bool
    kind: str | None  # card | cvv | ssn | account | None
    mask: bool
    keep: int  # how many trailing digits of this run stay visible (0..4)
    luhn: bool = False
    ctx_here: bool = False
    exempt: bool = False  # money or an order/reference number: readable, never a dictation


def _digit_by_digit(run: DigitRun) -> bool:
    """Three or more digits read one at a time ("5, 2, 4, 4"): how people read out card
    groups, CVVs and PINs, and never how they say a year or an amount, so it is a dictation."""
    return sum(p.single_digits for p in run.pieces) >= 3


def _contexts_in(norm_text: str) -> set[str]:
    return {k for k, p in _CONTEXT_PATTERNS.items() if p.search(norm_text)}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s'%$-]", " ", text.lower())).strip()


class Redactor:
    """Masks one call's transcripts, keeping dictation state per channel.

    Not thread-safe: one instance per call, fed in order by that call's pipeline. Raw digits
    live only in this object's memory (to check Luhn across utterances) and are dropped as
    soon as a dictation ends.
    """

    def __init__(
        self,
        call_id: str,
        context_window_s: float = CONTEXT_WINDOW_S,
        continuation_pause_s: float = CONTINUATION_PAUSE_S,
    ) -> None:
        self.call_id = call_id
        self.context_window_s = context_window_s
        self.continuation_pause_s = continuation_pause_s
        self._state: dict[str, _ChannelState] = {"customer": _ChannelState(), "agent": _ChannelState()}
        self._key = secrets.token_bytes(16)  # dedupe keys are keyed hashes, never digits

    # ---------------------------------------------------------------- public API

    def redact(self, t: Transcript) -> tuple[Transcript, list[Signal]]:
        """A masked copy of `t` and the signals it raised (partials may raise, finals confirm).

        Finals commit state (pending digits, armed contexts); partials are judged against
        the state of the last final and never change it, because a partial is replaced
        wholesale by the next one.
        """
        if t.channel not in self._state:
            raise ValueError(f"transcript channel must be one of {sorted(self._state)}, got {t.channel!r}")
        st = self._state[t.channel]
        norm = _norm(t.text)
        here = _contexts_in(norm)
        active = here | {k for k, until in st.context_until.items() if until >= t.start}
        pending = st.pending
        if pending is not None and t.start - pending.end > self.continuation_pause_s:
            pending = None

        text_toks = tokenize(t.text)
        text_plans = self._plan(text_toks, active, here, pending, t.is_final)
        word_toks = [
            Token(i, w.text, w.text.strip(".,!?;:\"'()[]{}…").lower(), 0, len(w.text)) for i, w in enumerate(t.words)
        ]
        word_plans = self._plan(word_toks, active, here, pending, t.is_final) if t.words else []

        masked_text = self._mask_text(t.text, text_toks, text_plans)
        masked_words = self._mask_words(t.words, word_toks, word_plans)
        out = dataclasses.replace(t, text=masked_text, words=masked_words)

        signals = self._signals(t, out, text_plans, word_plans, pending, here, active)
        request = self._agent_request(t, out, norm)
        if request is not None:
            signals.append(request)
        signals = self._dedupe(t, st, signals)

        if t.is_final:
            self._commit(t, st, text_plans, text_toks, here, request is not None)
        return out, signals

    # ---------------------------------------------------------------- planning

    def _plan(self, toks: list[Token], active: set[str], here: set[str], pending: _Pending | None,
              final: bool = True) -> list[_RunPlan]:  # fmt: skip
        plans: list[_RunPlan] = []
        sensitive = bool(active & _SENSITIVE)
        for k, run in enumerate(find_digit_runs(toks)):
            digits = run.digits
            lead = [t for t in toks[: run.tok_start] if t.norm]
            continuation = (
                k == 0 and pending is not None and len(lead) <= 3 and all(t.norm in _LEAD_WORDS for t in lead)
            )
            # masking is more cautious than assembly: the first digits after an unfinished
            # dictation are hidden even when ASR garbage ("little six seven nine") precedes them
            glued = continuation or (k == 0 and pending is not None and len(digits) >= 2)
            assembled = pending.digits + digits if continuation and pending else digits
            if (
                continuation
                and not (13 <= len(assembled) <= 19 and luhn_valid(assembled))
                and (len(assembled) > 19 or (13 <= len(digits) <= 19 and luhn_valid(digits)))
            ):
                continuation, assembled = False, digits  # judged on its own
            n = len(assembled)
            luhn = 13 <= n <= 19 and luhn_valid(assembled)
            grouped_ssn = any(_SSN_GROUPED.match(toks[i].norm) for i in range(run.tok_start, run.tok_end))
            # "$250", "ten years": quantities people say while a card context is still armed
            money = ((_followed_by_currency(toks, run) or (_followed_by_unit(toks, run) and not continuation)) and n < 5) \
                or (_followed_by_currency(toks, run) and n < 13)
            order_here = "order" in here and not (here & _SENSITIVE)
            kind: str | None = None
            if money or (order_here and not luhn):
                kind = None
            elif "cvv" in active and 3 <= len(digits) <= 4 and not continuation:
                kind = "cvv"
            elif luhn:
                kind = "card"
            elif n == 9 and ssn_plausible(assembled) and ("ssn" in active or grouped_ssn):
                kind = "ssn"
            elif "account" in active and 6 <= n <= 17:
                kind = "account"

            revealed = continuation and pending is not None and pending.revealed
            exempt = False
            if kind in ("card", "ssn", "account"):
                # "last four, once": a partial's number may still grow (13 Luhn-valid digits of
                # a 16-digit card), so only the final reveals its last four
                mask, keep = True, (0 if revealed or not final else min(4, len(digits)))
            elif kind == "cvv" or ("pin" in active and 4 <= len(digits) <= 6):
                mask, keep = True, 0
            elif money or (order_here and n <= 12):
                mask, keep, exempt = False, 0, True
            elif glued or (sensitive and len(digits) >= 2) or _digit_by_digit(run):
                mask, keep = True, 0
            elif "order" in active and n <= 12:
                mask, keep = False, 0
            elif n >= 5:
                mask, keep = True, 0
            else:
                mask, keep = False, 0
            plans.append(
                _RunPlan(run, assembled, continuation, kind, mask, keep, luhn, bool(here & _SENSITIVE), exempt)
            )
        return plans

    # ---------------------------------------------------------------- masking

    @staticmethod
    def _mask_text(text: str, toks: list[Token], plans: list[_RunPlan]) -> str:
        spans = []
        for p in plans:
            if not p.mask:
                continue
            keep = p.run.digits[-p.keep :] if p.keep else ""
            spans.append(_text_span(toks, p.run, mask_digits(len(p.run.digits), keep)))
        return mask_text(_apply_spans(text, spans), min_digits=_BACKSTOP_DIGITS)

    @staticmethod
    def _mask_words(words: list[Word], toks: list[Token], plans: list[_RunPlan]) -> list[Word]:
        texts = [w.text for w in words]
        for p in plans:
            if not p.mask:
                continue
            n = len(p.run.digits)
            visible_from = n - p.keep
            for piece, off in p.run.piece_offsets():
                if off >= visible_from:
                    continue  # entirely inside the visible last digits
                for i in range(piece.tok_start, piece.tok_end):
                    raw = texts[i]
                    lead = raw[: len(raw) - len(raw.lstrip())]
                    if piece.numeric:
                        # mask digit by digit so '4111-1111' keeps its shape
                        chars, pos = list(raw), off
                        for ci, ch in enumerate(chars):
                            if ch.isdigit():
                                if pos < visible_from:
                                    chars[ci] = "#"
                                pos += 1
                        texts[i] = "".join(chars)
                    else:
                        trail = raw.rstrip()[len(raw.rstrip().rstrip(".,!?;:")) :]
                        texts[i] = f"{lead}####{trail}"
        return [
            dataclasses.replace(w, text=mask_text(txt, min_digits=_BACKSTOP_DIGITS))
            for w, txt in zip(words, texts, strict=True)
        ]

    # ---------------------------------------------------------------- signals

    def _signals(
        self,
        t: Transcript,
        out: Transcript,
        plans: list[_RunPlan],
        word_plans: list[_RunPlan],
        pending: _Pending | None,
        here: set[str],
        active: set[str],
    ) -> list[Signal]:
        sigs: list[Signal] = []
        for idx, p in enumerate(plans):
            if p.kind is None:
                continue
            wp = next((w for w in word_plans if w.run.digits == p.run.digits), None)
            if wp is None and idx < len(word_plans):
                wp = word_plans[idx]
            if wp is not None and out.words:
                w0, w1 = out.words[wp.run.tok_start], out.words[wp.run.tok_end - 1]
                start, end = w0.start, w1.end
                ev_words = [w.text.strip() for w in out.words[wp.run.tok_start : wp.run.tok_end]]
            else:
                start, end, ev_words = t.start, t.end, []
            if p.continuation and pending is not None:
                start = min(start, pending.start)
            n = len(p.assembled)
            keep = p.assembled[-4:] if p.kind in ("card", "ssn", "account") else ""
            attrs: dict[str, Any] = {"length": n, "masked": mask_digits(n, keep)}
            if keep:
                attrs["last4"] = keep
            if p.continuation and pending is not None:
                attrs["assembled_from_segments"] = [*pending.segments, t.segment_id]
            if p.kind == "card":
                brand = card_brand(p.assembled)
                conf = 0.7 + (0.15 if "card" in active else 0.0) + (0.1 if brand else 0.0)
                attrs.update(luhn_valid=True, brand=brand)
                name = "card_number"
            elif p.kind == "cvv":
                conf = 0.9 if "cvv" in here else 0.8
                name = "cvv"
            elif p.kind == "ssn":
                conf = 0.9 if "ssn" in active else 0.6
                name = "ssn"
            else:
                conf = 0.85 if "account" in here else 0.75
                name = "account_number"
            ev = Evidence(t.channel, out.text, start, end, t.segment_id, t.revision, t.is_final, ev_words)
            sigs.append(
                Signal(
                    self.call_id,
                    "risk",
                    name,
                    round(min(conf, 0.99), 3),
                    DETECTOR_NAME,
                    DETECTOR_VERSION,
                    evidence=ev,
                    attrs={**attrs, "_key": self._dedupe_key(name, p.assembled)},
                )
            )
        return sigs

    def _agent_request(self, t: Transcript, out: Transcript, norm: str) -> Signal | None:
        """The agent asking the customer to say a full card number or security code aloud."""
        if t.channel != "agent" or not norm:
            return None
        asked = bool(_REQUEST_CUE.search(norm)) or t.text.rstrip().endswith("?")
        if not asked:
            return None
        best: tuple[float, str] | None = None
        for what, phrases in _OBJECTS.items():
            score = max(fuzz.partial_ratio(ph, norm) for ph in phrases)
            if score >= _FUZZ_THRESHOLD and (best is None or score > best[0]):
                best = (score, what)
        if best is None:
            return None
        if best[1] == "card_number" and re.search(r"\b(last|final) (four|4)\b", norm):
            return None  # asking for the last four digits is the compliant way to verify
        ev = Evidence(t.channel, out.text, t.start, t.end, t.segment_id, t.revision, t.is_final, [])
        conf = round(0.6 + 0.35 * (best[0] - _FUZZ_THRESHOLD) / (100 - _FUZZ_THRESHOLD), 3)
        return Signal(
            self.call_id,
            "compliance",
            "agent_requested_card",
            conf,
            DETECTOR_NAME,
            DETECTOR_VERSION,
            evidence=ev,
            attrs={"requested": best[1], "match_score": round(best[0], 1), "_key": f"req:{best[1]}"},
        )

    def _dedupe_key(self, name: str, digits: str) -> str:
        return name + ":" + hmac.new(self._key, digits.encode(), hashlib.sha256).hexdigest()[:16]

    def _dedupe(self, t: Transcript, st: _ChannelState, sigs: list[Signal]) -> list[Signal]:
        """One signal per number per segment: partials raise early, the final confirms or retracts."""
        seen = st.partial_signals.setdefault(t.segment_id, {})
        out: list[Signal] = []
        keys = set()
        for s in sigs:
            key = s.attrs.pop("_key")
            keys.add(key)
            if key in seen:
                continue
            if not t.is_final:
                seen[key] = s
            out.append(s)
        if t.is_final:
            for key, s in st.partial_signals.pop(t.segment_id, {}).items():
                if key not in keys:
                    out.append(dataclasses.replace(s, retracted=True, emitted_at=t.emitted_at))
            # drop stale partial state of segments that never got a final
            for seg in [s for s in st.partial_signals if s < t.segment_id]:
                del st.partial_signals[seg]
        return out

    # ---------------------------------------------------------------- state

    def _commit(
        self, t: Transcript, st: _ChannelState, plans: list[_RunPlan], toks: list[Token], here: set[str], asked: bool
    ) -> None:
        until = t.end + self.context_window_s
        for ctx in here:
            st.context_until[ctx] = until
            if t.channel == "agent" and ctx in _SENSITIVE:
                # the agent's question arms masking of the customer's answer
                self._state["customer"].context_until[ctx] = until
        if asked:
            self._state["customer"].context_until["card"] = until
        if not t.text.strip():
            return
        prev = st.pending
        if prev is not None and t.start - prev.end > self.continuation_pause_s:
            prev = None
        st.pending = None
        if not plans:
            return
        last = plans[-1]
        tail = [x for x in toks[last.run.tok_end :] if x.norm and x.norm not in FILLERS]
        if tail or last.exempt or last.kind in ("card", "ssn", "cvv"):
            return  # nothing is being dictated any more, or the number is complete
        chained = last.continuation and prev is not None
        st.pending = _Pending(
            digits=last.assembled[-24:],
            start=prev.start if chained and prev else t.start,
            end=t.end,
            segments=[*(prev.segments if chained and prev else []), t.segment_id][-8:],
            revealed=last.keep > 0 or bool(chained and prev and prev.revealed),
        )

    def reset(self) -> None:
        """Forget all raw digits (call ended)."""
        for st in self._state.values():
            st.pending = None
            st.partial_signals.clear()


__all__ = ["CONTEXT_WINDOW_S", "CONTINUATION_PAUSE_S", "DETECTOR_NAME", "DETECTOR_VERSION", "Redactor"]
