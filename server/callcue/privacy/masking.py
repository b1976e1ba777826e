"""Masking that needs no call context: card brands, SSN plausibility, "last four at most"
masks, and the log filter that masks every line whatever the caller logged."""

from __future__ import annotations

import logging
import re

from callcue.privacy.spoken_numbers import (
    DigitRun,
    Token,
    find_digit_runs,
    tokenize,
)

_CURRENCY_WORDS = frozenset(
    {"dollar", "dollars", "bucks", "cents", "cent", "pounds", "pound", "euros", "euro", "percent", "%", "usd", "quid"}
)

# --------------------------------------------------------------------------------------
# helpers shared by text and word masking


#: Units that make a short number a quantity ("ten years", "3 days"), never a secret.
_UNIT_WORDS = frozenset(
    {"year", "years", "month", "months", "week", "weeks", "day", "days", "hour", "hours", "minute",
     "minutes", "second", "seconds", "time", "times", "people", "kids", "children", "percent",
     "o'clock", "am", "pm", "years'", "yrs", "mins"}
)


def _followed_by_unit(toks: list[Token], run: DigitRun) -> bool:
    return run.tok_end < len(toks) and toks[run.tok_end].norm in _UNIT_WORDS


def _followed_by_currency(toks: list[Token], run: DigitRun) -> bool:
    if run.tok_end < len(toks) and toks[run.tok_end].norm in _CURRENCY_WORDS:
        return True
    if run.tok_start > 0 and toks[run.tok_start - 1].norm in ("$", "£", "€", "usd"):
        return True
    first = toks[run.tok_start].text
    return first.startswith(("$", "£", "€")) or toks[run.tok_end - 1].text.rstrip(".,!?").endswith("%")


def _text_span(toks: list[Token], run: DigitRun, masked: str) -> tuple[int, int, str]:
    """Replace the run's characters, keeping the last token's trailing punctuation."""
    last = toks[run.tok_end - 1]
    core_end = last.char_start + len(last.text.rstrip(".,!?;:"))
    return toks[run.tok_start].char_start, core_end, masked


def _apply_spans(text: str, spans: list[tuple[int, int, str]]) -> str:
    for a, b, rep in sorted(spans, reverse=True):
        text = text[:a] + rep + text[b:]
    return text




_CARD_BRANDS: tuple[tuple[re.Pattern[str], str, frozenset[int]], ...] = (
    (re.compile(r"^4"), "visa", frozenset({13, 16, 19})),
    (re.compile(r"^(5[1-5]|2(2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720))"), "mastercard", frozenset({16})),
    (re.compile(r"^3[47]"), "amex", frozenset({15})),
    (re.compile(r"^(6011|65|64[4-9])"), "discover", frozenset({16, 19})),
)
_SSN_GROUPED = re.compile(r"^\d{3}-\d{2}-\d{4}$")


def card_brand(digits: str) -> str | None:
    """Issuer from the number's prefix and length; a match raises detection confidence."""
    for pat, brand, lengths in _CARD_BRANDS:
        if pat.match(digits) and len(digits) in lengths:
            return brand
    return None


def ssn_plausible(digits: str) -> bool:
    """SSA never issues area 000/666/9xx, group 00 or serial 0000."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def mask_digits(n: int, keep: str = "") -> str:
    """'**** **** **** 1111': stars for hidden digits, grouped in fours from the right."""
    s = "*" * (n - len(keep)) + keep
    groups = []
    while s:
        groups.append(s[-4:])
        s = s[:-4]
    return " ".join(reversed(groups))


# --------------------------------------------------------------------------------------
# last-line filter


_RAW_DIGITS = re.compile(r"(?<![\d.])\d(?:[ \-‐–,]?\d){4,}(?![\d]|\.\d)")
#: "4985.5791.9010.5": two or more dots is a dictated number, never a decimal or a time
#: and "4985.5791" (3+ digits both sides of one dot); "0.8123" or "99.99" stay
_DOTTED_DIGITS = re.compile(r"(?<![\d.])(?:\d+(?:\.\d+){2,}|\d{3,}\.\d{3,})(?![\d.])")
_BACKSTOP_DIGITS = 13
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def mask_text(text: str, min_digits: int = 5) -> str:
    """Mask every run of 5+ digits (written or spoken) in free text; for logs and stores.

    Stateless and context-free, so stricter than `Redactor`: nothing longer than four
    digits survives except ISO dates and decimals (timestamps, amounts). Runs of 9+ digits
    keep their last four so that logs stay useful for support; shorter runs are hidden.
    `Redactor` reuses it with `min_digits=13` as a backstop that cannot mask order numbers.
    """
    if min_digits < 1:
        raise ValueError(f"min_digits must be >= 1, got {min_digits}")
    if not text:
        return text

    def _raw(m: re.Match[str]) -> str:
        s = m.group(0)
        if _ISO_DATE.match(s):
            return s
        d = re.sub(r"\D", "", s)
        if len(d) < min_digits:
            return s
        keep = d[-4:] if len(d) >= 9 else ""
        return mask_digits(len(d), keep)

    out = _DOTTED_DIGITS.sub(_raw, _RAW_DIGITS.sub(_raw, text))
    toks = tokenize(out)
    spans: list[tuple[int, int, str]] = []
    for run in find_digit_runs(toks):
        if len(run.digits) < max(5, min_digits) or all(p.numeric for p in run.pieces):
            continue
        if _followed_by_currency(toks, run):
            continue
        keep = run.digits[-4:] if len(run.digits) >= 9 else ""
        spans.append(_text_span(toks, run, mask_digits(len(run.digits), keep)))
    return _apply_spans(out, spans)


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
#: what a diagnostic line carries that looks like a number but is none: addresses and ports,
#: a URL's scheme and authority, versions after "@" or "v", hex digests and ids with letters
_DIAGNOSTIC = re.compile(
    rf"\b{_OCTET}(?:\.{_OCTET}){{3}}(?::\d{{1,5}})?\b"  # 127.0.0.1, 10.0.0.2:9092
    r"|\b[a-z][a-z0-9+.-]*://[^\s/'\"?#]+"  # http://127.0.0.1:8080 (scheme and authority only)
    r"|(?<=@)(?![\w.+-]*\d{13})\d[\w.+-]*"  # phrases@2026.11.1, intent@1+2026-11-24.1
    r"|(?<=\bv)\d{1,4}(?:\.\d{1,6})+\b"  # v1.2.3
    r"|\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)(?![0-9a-fA-F]*\d{13})[0-9a-fA-F]{6,64}\b"  # digests: d0263f
    r"|\b[A-Z]{2}(?=[0-9a-f]*[a-f])[0-9a-f]{16,64}\b"  # Twilio-style ids: CA + 32 hex
    r"|(?<=\[)\d{1,7}(?=\])|(?<=\bpid[ =])\d{1,7}\b",  # process ids: "server process [12345]", pid=12345
)


def mask_log_text(text: str) -> str:
    """`mask_text` for log lines: card numbers and long digit runs are masked as anywhere
    else, but addresses, ports, URLs' hosts, versions, digests and hex ids stay readable (a
    log that says "listening on ** ****:9092" helps nobody). What is kept has a shape no card
    number has: valid IPv4 octets, hex with letters, or a version after "@"/"v"."""
    if not text:
        return text
    kept: list[str] = []

    def _keep(m: re.Match[str]) -> str:
        kept.append(m.group(0))
        return f"\x00{len(kept) - 1}\x00"

    out = mask_text(_DIAGNOSTIC.sub(_keep, text))
    return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], out)


class MaskingLogFilter(logging.Filter):
    """Attach to a handler so no log line carries a raw number, whatever the caller logged.

    Formats the record's message once, masks it, and freezes the result (args cleared) so
    later formatters cannot re-insert raw arguments.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except (TypeError, ValueError):  # a malformed log call must not hide the original problem
            msg = str(record.msg)
        record.msg = mask_log_text(msg)
        record.args = None
        if record.exc_text:
            record.exc_text = mask_log_text(record.exc_text)
        return True
