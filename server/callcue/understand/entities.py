"""Entities in what was said: money, dates, order/account numbers, competitors, products.

Why on finals only (by default): an entity's *value* is what matters downstream (a refund of
"two hundred" vs "two hundred and fifty dollars"), and partials routinely cut values short,
so emitting on partials would mean emitting wrong values first. Input is the transcript the
`Redactor` already masked, so account numbers arrive as "**** 5678"; anything that still
looks like a raw long number is masked here again before it goes into a signal.

Competitor and product names come from `config/entities.yaml` and are matched on tokens
with a rapidfuzz ratio, because ASR spells brand names loosely ("t mobile", "T-Mobile").
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz

from callcue.events import Evidence, Signal, Transcript
from callcue.privacy.masking import mask_digits, mask_text
from callcue.privacy.spoken_numbers import (
    TENS,
    Token,
    find_digit_runs,
    parse_cardinal,
    tokenize,
)
from callcue.understand.base import CallContext, Detector
from callcue.understand.entities_config import (
    DEFAULT_CONFIG,
    EntitiesConfig,
    EntitiesConfigError,
    NamedEntry,
    _norm_phrase,
    load_entities_config,
)

__all__ = ["DEFAULT_CONFIG", "EntitiesConfig", "EntitiesConfigError", "EntityDetector", "EntityMatch", "NamedEntry",
           "load_entities_config"]

DETECTOR_NAME = "entities"
DETECTOR_VERSION = "1.0"


# ------------------------------------------------------------------------------ matches


@dataclass(slots=True)
class EntityMatch:
    name: str  # money | date | order_number | account_number | competitor | product
    value: str  # as said (already masked where sensitive)
    normalized: str
    tok_start: int
    tok_end: int
    confidence: float
    extra: dict[str, Any]


_CURRENCIES = {
    "dollar": "USD",
    "dollars": "USD",
    "bucks": "USD",
    "usd": "USD",
    "$": "USD",
    "pound": "GBP",
    "pounds": "GBP",
    "quid": "GBP",
    "£": "GBP",
    "euro": "EUR",
    "euros": "EUR",
    "€": "EUR",
}
_CENTS = {"cent", "cents", "pence", "p"}
_SCALE_WORDS = {"thousand": 1_000, "k": 1_000, "million": 1_000_000, "grand": 1_000}
_MONEY_TOKEN = re.compile(r"^([$£€])(\d[\d,]*(?:\.\d{1,2})?)(k|m)?$")
_PLAIN_NUMBER = re.compile(r"^\d[\d,]*(?:\.\d+)?$")


def _money(toks: Sequence[Token]) -> list[EntityMatch]:
    out: list[EntityMatch] = []
    runs = {r.tok_start: r for r in find_digit_runs(toks)}
    i = 0
    while i < len(toks):
        t = toks[i]
        m = _MONEY_TOKEN.match(t.norm)
        amount: float | None = None
        cur, end = "", i + 1
        if m:
            amount = float(m.group(2).replace(",", ""))
            cur = _CURRENCIES[m.group(1)]
            if m.group(3):
                amount *= 1_000 if m.group(3) == "k" else 1_000_000
            elif end < len(toks) and toks[end].norm in _SCALE_WORDS:
                amount *= _SCALE_WORDS[toks[end].norm]
                end += 1
        else:
            # "250 dollars", "1.5 million dollars", "two hundred and fifty dollars"
            j = i
            if _PLAIN_NUMBER.match(t.norm):
                amount, j = float(t.norm.replace(",", "")), i + 1
            elif i in runs and not all(p.numeric for p in runs[i].pieces):
                run = runs[i]
                value = parse_cardinal([x.norm for x in toks[run.tok_start : run.tok_end]])
                amount, j = float(value if value is not None else int(run.digits)), run.tok_end
            if amount is not None:
                if j < len(toks) and toks[j].norm in _SCALE_WORDS:
                    amount *= _SCALE_WORDS[toks[j].norm]
                    j += 1
                if j < len(toks) and toks[j].norm in _CURRENCIES:
                    cur, end = _CURRENCIES[toks[j].norm], j + 1
                else:
                    amount = None
        if amount is None:
            i += 1
            continue
        # "... dollars and fifty cents" / "... and 50 cents"
        k = end + (1 if end < len(toks) and toks[end].norm == "and" else 0)
        cents_run = runs.get(k)
        if k < len(toks) and _PLAIN_NUMBER.match(toks[k].norm) and k + 1 < len(toks) and toks[k + 1].norm in _CENTS:
            amount += float(toks[k].norm) / 100
            end = k + 2
        elif cents_run is not None and cents_run.tok_end < len(toks) and toks[cents_run.tok_end].norm in _CENTS:
            value = parse_cardinal([x.norm for x in toks[cents_run.tok_start : cents_run.tok_end]])
            if value is not None and value < 100:
                amount += value / 100
                end = cents_run.tok_end + 1
        value_text = " ".join(x.text for x in toks[i:end]).strip(" ,.?!")
        out.append(
            EntityMatch(
                "money", value_text, f"{amount:.2f} {cur}", i, end, 0.9, {"amount": round(amount, 2), "currency": cur}
            )
        )
        i = end
    return out


_WEEKDAYS = {d.lower(): i for i, d in enumerate(calendar.day_name)}
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
_MONTHS.pop("may", None)
_MONTHS["may"] = 5  # abbr == name; keep once
_ORD_UNITS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
}
_ORD_TEENS = {
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}
_ORD_NUM = re.compile(r"^(\d{1,2})(st|nd|rd|th)?$")
_SLASH_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})(?:/(\d{2}|\d{4}))?$")
_RELATIVE_DAYS = {"today": 0, "tomorrow": 1, "yesterday": -1}


def _day_at(toks: Sequence[Token], i: int) -> tuple[int, int] | None:
    """A day of month at toks[i] ("3rd", "3", "third", "twenty first"): (day, tokens used)."""
    if i >= len(toks):
        return None
    w = toks[i].norm
    parts = w.split("-")
    if len(parts) == 2 and parts[0] in TENS and parts[1] in _ORD_UNITS:
        return TENS[parts[0]] + _ORD_UNITS[parts[1]], 1
    m = _ORD_NUM.match(w)
    if m and 1 <= int(m.group(1)) <= 31:
        return int(m.group(1)), 1
    if w in _ORD_UNITS:
        return _ORD_UNITS[w], 1
    if w in _ORD_TEENS:
        return _ORD_TEENS[w], 1
    if w in TENS and i + 1 < len(toks) and toks[i + 1].norm in _ORD_UNITS and TENS[w] <= 30:
        return TENS[w] + _ORD_UNITS[toks[i + 1].norm], 2
    return None


def _year_at(toks: Sequence[Token], i: int) -> tuple[int, int] | None:
    """A year right after a date ("2025", "twenty twenty five"): (year, tokens used)."""
    if i >= len(toks):
        return None
    runs = find_digit_runs(toks[i : i + 6])
    if runs and runs[0].tok_start == toks[i].index and len(runs[0].digits) == 4:
        year = int(runs[0].digits)
        if 1900 <= year <= 2100:
            return year, runs[0].tok_end - toks[i].index
    return None


def _dates(toks: Sequence[Token], today: dt.date) -> list[EntityMatch]:
    out: list[EntityMatch] = []
    i = 0
    while i < len(toks):
        w = toks[i].norm
        match: tuple[str, int, dict[str, Any]] | None = None  # (normalized, end, extra)
        m = _SLASH_DATE.match(w)
        if m:
            mon, day = int(m.group(1)), int(m.group(2))
            year = int(m.group(3)) if m.group(3) else None
            if year is not None and year < 100:
                year += 2000
            match = _iso(year, mon, day, i + 1)
        elif w in _RELATIVE_DAYS:
            d = today + dt.timedelta(days=_RELATIVE_DAYS[w])
            match = (d.isoformat(), i + 1, {"relative": w})
        elif w == "day" and i + 2 < len(toks) and toks[i + 1].norm == "after" and toks[i + 2].norm == "tomorrow":
            match = ((today + dt.timedelta(days=2)).isoformat(), i + 3, {"relative": "day after tomorrow"})
        elif w in ("next", "this", "last", "on", "coming") and i + 1 < len(toks) and toks[i + 1].norm in _WEEKDAYS:
            match = _weekday(today, toks[i + 1].norm, w, i + 2)
        elif w in _WEEKDAYS and not (i > 0 and toks[i - 1].norm in ("next", "this", "last", "on", "coming")):
            match = _weekday(today, w, "", i + 1)
        elif w in _MONTHS and (w != "may" or _day_at(toks, i + 1)):
            day_at = _day_at(toks, i + 1)
            if day_at is not None:  # "March third", "March 3rd, 2025"
                end = i + 1 + day_at[1]
                yr = _year_at(toks, end)
                match = _iso(yr[0] if yr else None, _MONTHS[w], day_at[0], end + (yr[1] if yr else 0))
        else:  # "the third of March", "3rd March", "3 of March"
            start = i + 1 if w == "the" else i
            day_at = _day_at(toks, start)
            if day_at is not None:
                j = start + day_at[1]
                has_of = j < len(toks) and toks[j].norm == "of"
                j += 1 if has_of else 0
                ordinal = not toks[start].norm.isdigit()
                if (
                    (j < len(toks)
                    and toks[j].norm in _MONTHS
                    and (has_of or ordinal)
                    and toks[j].norm != "may")
                    or (j < len(toks) and toks[j].norm == "may" and has_of)
                ):
                    yr = _year_at(toks, j + 1)
                    match = _iso(yr[0] if yr else None, _MONTHS[toks[j].norm], day_at[0], j + 1 + (yr[1] if yr else 0))
        if match is None:
            i += 1
            continue
        norm, end, extra = match
        value = " ".join(t.text for t in toks[i:end]).strip(" ,.?!")
        out.append(EntityMatch("date", value, norm, i, end, 0.85, extra))
        i = end
    return [m for m in out if m.normalized]


def _iso(year: int | None, month: int, day: int, end: int) -> tuple[str, int, dict[str, Any]] | None:
    """ISO 8601: "2025-03-03", or "--03-03" (month-day) when no year was said."""
    try:
        dt.date(year or 2000, month, day)  # 2000 is a leap year: 29 Feb stays valid
    except ValueError:
        return None
    if year is None:
        return f"--{month:02d}-{day:02d}", end, {}
    return f"{year:04d}-{month:02d}-{day:02d}", end, {}


def _weekday(today: dt.date, name: str, modifier: str, end: int) -> tuple[str, int, dict[str, Any]]:
    """Resolve against the call's date: "next/on/plain X" = the next X after today,
    "this X" = X of the current week (today or later), "last X" = the most recent past X."""
    target = _WEEKDAYS[name]
    delta = (target - today.weekday()) % 7
    if modifier == "last":
        delta = delta - 7 if delta else -7
    elif modifier != "this" and delta == 0:
        delta = 7
    d = today + dt.timedelta(days=delta)
    return d.isoformat(), end, {"relative": f"{modifier} {name}".strip(), "weekday": name}


_ORDER_CUE = {"order", "reference", "confirmation", "tracking", "ticket", "case", "claim", "invoice", "booking"}
_ACCOUNT_CUE = {"account"}
_NUMBER_WORDS = {"number", "no", "num", "id", "#", "code"}
_LINK_WORDS = {"is", "it's", "its", "was", "ending", "in", "ends", "with", "of", "the", "uh", "um", ":"}
_ID_TOKEN = re.compile(r"^(?=.*\d)[a-z0-9][a-z0-9\-]{3,}$")
_MASKED = re.compile(r"^[*#]+$")


def _numbers(toks: Sequence[Token]) -> list[EntityMatch]:
    """Order/reference and account numbers after their cue word ("order number is 1234 5678")."""
    out: list[EntityMatch] = []
    runs = {r.tok_start: r for r in find_digit_runs(toks)}
    i = 0
    while i < len(toks):
        w = toks[i].norm
        kind = "order_number" if w in _ORDER_CUE else "account_number" if w in _ACCOUNT_CUE else None
        if kind is None:
            i += 1
            continue
        j = i + 1
        saw_number_word = False
        while j < len(toks) and (toks[j].norm in _NUMBER_WORDS or toks[j].norm in _LINK_WORDS) and j - i <= 5:
            saw_number_word |= toks[j].norm in _NUMBER_WORDS
            j += 1
        k = j
        parts: list[str] = []
        while k < len(toks):
            n = toks[k].norm
            if (_ID_TOKEN.match(n) and re.search(r"[a-z]", n)) or _MASKED.match(n):
                parts.append(n.replace("-", ""))
                k += 1
            elif k in runs:
                parts.append(runs[k].digits)
                k = runs[k].tok_end
            elif _ID_TOKEN.match(n):
                parts.append(n.replace("-", ""))
                k += 1
            else:
                break
        ident = "".join(parts).upper().replace("#", "*")
        if len(re.sub(r"[^0-9A-Z*]", "", ident)) < 4 or not (
            saw_number_word or any(c.isdigit() or c == "*" for c in ident)
        ):
            i += 1
            continue
        if not re.search(r"[0-9*]", ident):
            i += 1
            continue
        extra: dict[str, Any] = {}
        value = " ".join(t.text for t in toks[j:k]).strip(" ,.?!")
        if kind == "account_number":
            digits = re.sub(r"\D", "", ident)
            last4 = digits[-4:] if len(digits) >= 4 and ident.endswith(digits[-4:]) else ""
            ident = mask_digits(len(ident), last4).replace(" ", "")  # never a raw account number
            value = mask_digits(len(ident), last4)
            extra = {"last4": last4} if last4 else {}
            extra["masked"] = True
        out.append(EntityMatch(kind, value, ident, j, k, 0.8 if saw_number_word else 0.65, extra))
        i = k
    return out


@dataclass(slots=True)
class _Alias:
    entity: str  # competitor | product
    canonical: str
    tokens: list[str]
    text: str


class _NameMatcher:
    """Token-window fuzzy matching of configured names; longer aliases win overlaps."""

    def __init__(self, cfg: EntitiesConfig) -> None:
        self.threshold = cfg.fuzzy_threshold
        self.aliases: list[_Alias] = []
        for entity, entries in (("competitor", cfg.competitors), ("product", cfg.products)):
            for e in entries:
                # the name itself is matched only when no aliases are given: "Chase" the
                # bank must not fire on "let me chase that up"
                for a in set(e.aliases) or {e.name}:
                    n = _norm_phrase(a)
                    if n:
                        self.aliases.append(_Alias(entity, e.name, n.split(), n))
        self.aliases.sort(key=lambda a: -len(a.text))

    def match(self, toks: Sequence[Token]) -> list[EntityMatch]:
        words = [_norm_phrase(t.text) for t in toks]
        # a token like "T-Mobile" normalises to two words: keep token boundaries by mapping
        flat: list[tuple[int, str]] = [(i, p) for i, w in enumerate(words) for p in w.split()]
        used: set[int] = set()
        out: list[EntityMatch] = []
        for a in self.aliases:
            n = len(a.tokens)
            exact_only = len(a.text) <= 4 or (n == 1 and len(a.text) <= 6)
            for s in range(len(flat) - n + 1):
                window = flat[s : s + n]
                idxs = {w[0] for w in window}
                if idxs & used:
                    continue
                cand = " ".join(w[1] for w in window)
                if cand == a.text:
                    score = 100.0
                elif exact_only or cand[0] != a.text[0]:
                    continue
                else:
                    score = fuzz.ratio(cand, a.text)
                    if score < self.threshold:
                        continue
                lo, hi = min(idxs), max(idxs) + 1
                used |= set(range(lo, hi))
                value = " ".join(t.text for t in toks[lo:hi]).strip(" ,.?!")
                conf = round(0.6 + 0.35 * (score - 50) / 50, 3) if score < 100 else 0.95
                out.append(
                    EntityMatch(
                        a.entity, value, a.canonical, lo, hi, conf, {"alias": a.text, "match_score": round(score, 1)}
                    )
                )
        return out


# ------------------------------------------------------------------------------ detector


def _mask_raw_long_numbers(s: str) -> str:
    """Belt and braces: no 5+ digit raw run goes into an account signal."""
    return re.sub(r"\d{5,}", lambda m: mask_digits(len(m.group(0)), m.group(0)[-4:]).replace(" ", ""), s)


class EntityDetector(Detector):
    """Detector "entities": one signal per entity per segment, from the redacted transcript."""

    name = DETECTOR_NAME
    produces = frozenset({"signal:entity"})
    version = DETECTOR_VERSION

    def __init__(self, config: EntitiesConfig | str | Path | None = None, on_partials: bool = False) -> None:
        cfg = config if isinstance(config, EntitiesConfig) else load_entities_config(config or DEFAULT_CONFIG)
        self.config = cfg
        self.version = f"{DETECTOR_VERSION}+lists{cfg.version}"
        self.on_partials = on_partials
        self._names = _NameMatcher(cfg)

    def extract(self, text: str, today: dt.date | None = None) -> list[EntityMatch]:
        """All entities in `text`, left to right (pure; no state, no signals)."""
        return self._extract(tokenize(text), today or dt.date.today())

    def _extract(self, toks: list[Token], today: dt.date) -> list[EntityMatch]:
        found = _money(toks)
        taken = {i for m in found for i in range(m.tok_start, m.tok_end)}
        for m in _numbers(toks) + _dates(toks, today) + self._names.match(toks):
            span = set(range(m.tok_start, m.tok_end))
            if span & taken:
                continue
            taken |= span
            found.append(m)
        return sorted(found, key=lambda m: m.tok_start)

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        if not t.is_final and not self.on_partials:
            return []
        if t.words:
            toks = [
                Token(i, w.text.strip(), w.text.strip().strip(".,!?;:\"'()[]{}…").lower(), 0, 0)
                for i, w in enumerate(t.words)
            ]
        else:
            toks = tokenize(t.text)
        today = dt.datetime.fromtimestamp(t.emitted_at or 0, tz=dt.UTC).date() if t.emitted_at else dt.date.today()
        seen: set[tuple[str, str]] = ctx.state.setdefault(self.name, {}).setdefault((t.channel, t.segment_id), set())
        out: list[Signal] = []
        for m in self._extract(toks, today):
            key = (m.name, m.normalized)
            if key in seen:
                continue
            seen.add(key)
            if t.words:
                ws = t.words[m.tok_start : m.tok_end]
                start, end, ev_words = ws[0].start, ws[-1].end, [w.text.strip() for w in ws]
            else:
                start, end, ev_words = t.start, t.end, [x.text for x in toks[m.tok_start : m.tok_end]]
            value, normalized = m.value, m.normalized
            ev_text = t.text
            if m.name == "account_number":
                value, normalized = _mask_raw_long_numbers(value), _mask_raw_long_numbers(normalized)
                ev_words = [_mask_raw_long_numbers(w) for w in ev_words]
                ev_text = mask_text(t.text)
            out.append(
                Signal(
                    call_id=t.call_id,
                    kind="entity",
                    name=m.name,
                    confidence=m.confidence,
                    detector=self.name,
                    detector_version=self.version,
                    evidence=Evidence(t.channel, ev_text, start, end, t.segment_id, t.revision, t.is_final, ev_words),
                    attrs={"value": value, "normalized": normalized, **m.extra},
                )
            )
        return out
