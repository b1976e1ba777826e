"""Slot values from what a caller said (or typed): digits of a given length, dates, amounts,
yes/no, one of a list, free text. Spoken forms count ("four one one one", "the fourth of
July nineteen eighty", "forty two dollars fifty"), because the caller's words come from a
recognizer."""

from __future__ import annotations

import re
from datetime import date

from rapidfuzz import fuzz, process

from callcue.bot.flows import Slot
from callcue.privacy.spoken_numbers import find_digit_runs, tokenize

_MONTHS = {m: i for i, m in enumerate(["january", "february", "march", "april", "may", "june", "july", "august",
                                       "september", "october", "november", "december"], 1)}  # fmt: skip
_ORD = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9,
        "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15,
        "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20,
        "thirtieth": 30}  # fmt: skip
_YES = re.compile(r"\b(yes|yeah|yep|correct|right|that's right|sure|please do|go ahead|ok|okay|affirmative)\b", re.I)
_NO = re.compile(r"\b(no|nope|not right|wrong|incorrect|don't|do not|cancel)\b", re.I)


def digits_of(text: str) -> str:
    """Every digit said or written in the text, in order."""
    runs = find_digit_runs(tokenize(text))
    return "".join(r.digits for r in runs)


def parse_date(text: str) -> str | None:
    t = text.lower().replace(",", " ")
    m = re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", t) or re.search(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b", t)
    if m:
        try:
            if "-" in m.group(0):
                return date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
            return date(int(m.group(3)), int(m.group(1)), int(m.group(2))).isoformat()
        except ValueError:
            return None
    month = next((n for w, n in _MONTHS.items() if re.search(rf"\b{w}\b", t)), None)
    if month is None:
        return None
    day = None
    ords = "|".join(_ORD)
    compound = re.search(rf"\b(twenty|thirty)[- ]({ords})\b", t)
    single = re.search(rf"\b({ords})\b", t)
    if compound:
        day = (20 if compound.group(1) == "twenty" else 30) + _ORD[compound.group(2)]
    elif single:
        day = _ORD[single.group(1)]
    m = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", t)
    if day is None and m:
        day = int(m.group(1))
    year_digits = re.search(r"\b(19\d{2}|20\d{2})\b", t)
    year = int(year_digits.group(1)) if year_digits else None
    if year is None:  # spoken: "nineteen eighty", "twenty oh five", "two thousand (and) five"
        yw = re.search(r"\b(nineteen|twenty)\s+([a-z]+(?:[- ][a-z]+)?)", t)
        if yw and (tail := _spoken_number(yw.group(2).replace("oh ", ""))) is not None and tail < 100:
            year = (1900 if yw.group(1) == "nineteen" else 2000) + tail
        elif (tw := re.search(r"\btwo thousand(?:\s+and)?\s*([a-z]+(?:[- ][a-z]+)?)?", t)) is not None:
            year = 2000 + (_spoken_number(tw.group(1) or "") or 0)
    if day is None or year is None:
        return None
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def parse_amount(text: str) -> float | None:
    t = text.lower().replace(",", "")
    m = re.search(r"\$?\s*(\d+(?:\.\d{1,2})?)", t)
    if m:
        return float(m.group(1))
    words = re.sub(r"\b(dollars?|bucks)\b", " | ", t)
    parts = words.split("|")
    whole = _spoken_number(parts[0])
    if whole is None:
        return None
    cents = _spoken_number(parts[1]) if len(parts) > 1 else None
    return whole + (cents or 0) / 100


_UNITS = {w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"])}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}


def _spoken_number(text: str) -> int | None:
    total, cur, seen = 0, 0, False
    for w in re.findall(r"[a-z]+", text):
        if w in _UNITS:
            cur += _UNITS[w]
            seen = True
        elif w in _TENS:
            cur += _TENS[w]
            seen = True
        elif w == "hundred":
            cur = max(cur, 1) * 100
            seen = True
        elif w == "thousand":
            total += max(cur, 1) * 1000
            cur = 0
            seen = True
    return total + cur if seen else None


def fill(slot: Slot, text: str) -> str | None:
    """The slot's value in this turn, normalised, or None if the turn does not hold one."""
    if slot.type == "digits":
        d = digits_of(text)
        return d[-slot.length:] if slot.length and len(d) >= slot.length and len(d) <= slot.length + 2 else None
    if slot.type == "date":
        return parse_date(text)
    if slot.type == "amount":
        a = parse_amount(text)
        return None if a is None else (f"{a:.2f}".rstrip("0").rstrip(".") if a != int(a) else str(int(a)))
    if slot.type == "yes_no":
        return yes_no(text)
    if slot.type == "choice":
        hit = process.extractOne(text.lower(), [c.lower() for c in slot.choices], scorer=fuzz.partial_ratio, score_cutoff=80)
        return slot.choices[hit[2]] if hit else None
    return text.strip() or None


def yes_no(text: str) -> str | None:
    y, n = bool(_YES.search(text)), bool(_NO.search(text))
    if y and not n:
        return "yes"
    if n and not y:
        return "no"
    return None
