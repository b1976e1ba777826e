"""The words that arm masking: lead words of a continued number, currency words, the
contexts ("card number", "my social") and an agent's request for a card or a code."""

from __future__ import annotations

import re

#: Words that may precede the continuation of a number in the next utterance.
_LEAD_WORDS = frozenset(
    {"and", "then", "so", "ok", "okay", "yes", "yeah", "next", "uh", "um", "er", "ah", "the", "rest", "is", "it's"}
)
_SENSITIVE = frozenset({"card", "cvv", "ssn", "account", "pin"})

_CONTEXT_PATTERNS: dict[str, re.Pattern[str]] = {
    "cvv": re.compile(
        r"\b(cvv|cvc|csc|cv2|c v v|security code|verification code|card code|code on the back"
        r"|(three|four|3|4)[ -]digits?( code)?( on the back)?|back of the card)\b"
    ),
    "card": re.compile(r"\b(card|credit|debit|visa|master ?card|amex|american express|discover|long number)\b"),
    "ssn": re.compile(r"\b(social security|social|ssn|s s n|social insurance|tax id)\b"),
    "account": re.compile(r"\b(account|acct|routing|iban|sort code)\b"),
    "pin": re.compile(r"\b(pin|passcode)\b"),
    "order": re.compile(r"\b(order|reference|confirmation|tracking|ticket|case|claim|invoice|booking)\b"),
}

# Agent asking for a full card number / security code: a request cue plus an object.
_REQUEST_CUE = re.compile(
    r"\b((can|could|may|would|will) (i|you|we)|i need|i'll need|i will need|i'd need|we need|need (the|your)"
    r"|give me|read me|read (out|it|that|them|off)|tell me|provide|what(?:'s| is) (the|your)"
    r"|let me (have|get)|go ahead|confirm|verify)\b"
)
_OBJECTS: dict[str, tuple[str, ...]] = {
    "card_number": (
        "card number",
        "credit card number",
        "debit card number",
        "full card number",
        "long number on the front",
        "sixteen digit number",
        "16 digit number",
        "number on the card",
        "number on the front of the card",
        "full card details",
        "card details",
    ),
    "security_code": (
        "security code",
        "cvv",
        "c v v",
        "cvc",
        "three digit code",
        "three digits on the back",
        "3 digits on the back",
        "verification code",
        "code on the back",
    ),
}
_FUZZ_THRESHOLD = 88.0
