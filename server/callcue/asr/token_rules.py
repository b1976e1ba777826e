"""Which tokens Moonshine's decoder may or should take: digit spellings, domain words it is
steered to finish, and the signs of a decoder repeating itself.

Kept apart from the engine because they are about text and the tokenizer's vocabulary, not
about running the model, and each is tested on its own (tests/test_asr_moonshine.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

#: the tokenizer's word-start mark ("▁"), as bytes
SPACE = "\u2581".encode()
#: what a bank or telco contact centre says that a general recognizer may not finish right
DEFAULT_BOOST_WORDS = ("supervisor", "manager", "cancel", "cancellation", "refund", "complaint", "dispute",
                       "chargeback", "overdraft", "fraudulent", "unauthorized", "representative")  # fmt: skip
DIGIT_FORMS = (("Zero", "0"), ("Oh", "0"), ("One", "1"), ("Two", "2"), ("Three", "3"), ("Four", "4"), ("Five", "5"),
                ("Six", "6"), ("Seven", "7"), ("Eight", "8"), ("Nine", "9"))  # fmt: skip
NUMBER_WORDS = ["zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "double", "triple"]  # fmt: skip


class WordBoost:
    """Steers a word the decoder has started toward a domain word it is a prefix of.

    Why only continuations: boosting the first piece of "supervisor" at every word start
    would insert it wherever the model hesitates; once the model itself wrote "super", its
    choice between "visor" and "mimer" is where a contact centre's vocabulary should weigh
    (the demo call's synthetic voice: "supermimer" without, "supervisor" with). Token sets
    are computed once per unfinished word and cached.
    """

    def __init__(self, token_texts: list[str], words: Sequence[str]) -> None:
        self._words = tuple(w.lower() for w in words if w.strip())
        self._texts = token_texts
        self._inner = [(i, t.lower()) for i, t in enumerate(token_texts) if t and not t.startswith(" ")]
        self._cache: dict[str, np.ndarray] = {}

    def __bool__(self) -> bool:
        return bool(self._words)

    def next_word(self, word: str, token: int) -> str:
        text = self._texts[token] if token < len(self._texts) else ""
        if text.startswith(" "):
            return text[1:].lower()
        return (word + text).lower() if text else ""

    def continuations(self, word: str) -> np.ndarray:
        """Tokens that take `word` closer to (or onto) a boost word it is a proper prefix of."""
        hit = self._cache.get(word)
        if hit is None:
            targets = [w for w in self._words if w.startswith(word) and w != word]
            ids = [i for i, t in self._inner if targets and any(w.startswith(word + t) for w in targets)]
            hit = self._cache[word] = np.array(ids, dtype=np.int64)
            if len(self._cache) > 4096:
                self._cache.clear()
        return hit


class DigitSpelling:
    """Which next token keeps a reading made only of number words, digits and separators.

    Why characters and not a token mask: the tokenizer writes some number words in pieces
    ("Eight" is "E" + "ight"), and a mask of every piece lets through "L", "Z", "e"... that
    spell anything. The state is the unfinished word; a token is allowed when every character
    it adds keeps that word a prefix of a number word or a digit run, and a space or
    separator comes only after a whole one.
    """

    SEPARATORS = ".,-?!"

    def __init__(self, token_texts: list[str]) -> None:
        words = {w for base in NUMBER_WORDS for w in (base, base.capitalize(), base.upper())}
        self._words = frozenset(words)
        self._prefixes = frozenset(w[:i] for w in words for i in range(1, len(w) + 1))
        self._texts = token_texts

    def _whole(self, word: str) -> bool:
        return word == "" or word in self._words or word.isdigit()

    def step(self, pending: str, token: int) -> str | None:
        """The unfinished word after `token`, or None when `token` breaks the spelling.
        A finished word followed by a separator is written as "\0" (only space or end next)."""
        text = self._texts[token] if token < len(self._texts) else ""
        if not text:
            return None
        for c in text:
            if c == " ":
                if not (self._whole(pending) or pending == "\0"):
                    return None
                pending = ""
            elif c in self.SEPARATORS:
                if pending == "\0" or not self._whole(pending) or pending == "":
                    return None
                pending = "\0"
            elif c.isdigit():
                if pending and not pending.isdigit():
                    return None
                pending += c
            elif c.isalpha():
                if pending == "\0" or (pending + c) not in self._prefixes:
                    return None
                pending += c
            else:
                return None
        return pending

    def may_end(self, pending: str) -> bool:
        return pending == "\0" or (pending != "" and self._whole(pending))


def is_digit_reading(text: str) -> bool:
    """Every word of `text` is a digit run or a number word (and there is one)."""
    words = re.findall(r"[A-Za-z]+|\d+", text)
    return bool(words) and all(w.isdigit() or w.lower() in NUMBER_WORDS for w in words)


def looping_words(text: str, seconds: float | None = None, min_len: int = 3, max_words_per_s: float = 3.2) -> int:
    """How many trailing words repeat the `min_len`+ words just before them (case and
    punctuation aside) when that is a decoder repeating itself, which Moonshine does over a
    trailing pause and a forced prefix can start. A person may say a sentence twice, so with
    `seconds` (the audio decoded) it is a loop only when the text also runs faster than
    anyone speaks: JFK's "And so my fellow Americans" looped four times over 3.6 s, 5.6
    words a second. Phrases of digits only never count ("4242 4242" is a card number).
    Returns 0 when the tail does not repeat."""
    words = [w.strip(".,!?;:\"'").lower() for w in text.split()]
    n = len(words)
    if seconds is not None and n <= max_words_per_s * max(seconds, 1.0):
        return 0
    for k in range(min_len, n // 2 + 1):
        tail = words[n - k :]
        if tail == words[n - 2 * k : n - k] and any(sum(c.isalpha() for c in w) >= 2 for w in tail):
            return k
    return 0
