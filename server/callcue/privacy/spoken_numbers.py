"""Turn how ASR engines actually write numbers into digit strings with token spans.

Why our own small grammar instead of text2num/word2number: those libraries rewrite a
string into a value, but redaction needs to know *which tokens* carried *which digits*
(to mask exactly those words and keep their times), and they do not speak telephone
dictation: "oh" for zero, "double four", "forty one eleven" meaning 4-1-1-1, digit groups
split by "uh" or by Whisper's sentence punctuation. Vosk writes digit words ("four one one
one"), Whisper writes "4111 1111", "41 11", "4111-1111" or words; all of them land here.

The grammar is deliberately about *digit sequences*, not arithmetic: "forty one eleven" is
"4111", "twenty twenty four" is "2024", "four hundred and five" is "405", "two thousand
five" is "2005". Cardinal value for money amounts comes from `parse_cardinal`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

UNITS: dict[str, int] = {
    "zero": 0,
    "oh": 0,
    "o": 0,
    "nought": 0,
    "naught": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
TEENS: dict[str, int] = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS: dict[str, int] = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
REPEATERS: dict[str, int] = {"double": 2, "triple": 3, "treble": 3}
SCALES: dict[str, int] = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
#: Hesitations and separators a speaker (or ASR) puts inside a dictated number.
FILLERS: frozenset[str] = frozenset({"uh", "um", "umm", "er", "erm", "ah", "hmm", "mm", "-", "dash"})
#: "oh"/"o" are digits only next to other digits: alone they are interjections.
_WEAK_ZERO = frozenset({"oh", "o"})

_STRIP = ".,!?;:\"'()[]{}…"
#: How digits look when written: "4111", "4111-1111"; thousands-grouped "4,111,111,111"
#: (Whisper formats a long run as a cardinal); dotted groups "4985.5791.9010.5", "9.0.9.3"
#: (two or more dots: never a decimal); one dot with 3+ digits after it, "4985.5791" (an
#: amount has at most two decimals; "2.5" and "99.99" stay decimals, not digit runs).
_NUMERIC = re.compile(r"^(?:\d+(?:[-‐–—]\d+)*|\d+(?:\.\d+){2,}|\d+\.\d{3,}|\d{1,3}(?:,\d{3})+)$")


@dataclass(frozen=True, slots=True)
class Token:
    """One whitespace token of the input, with its character span in the original text."""

    index: int
    text: str  # as written, punctuation included
    norm: str  # lower-cased, surrounding punctuation removed
    char_start: int
    char_end: int


@dataclass(frozen=True, slots=True)
class Piece:
    """Digits contributed by tokens [tok_start, tok_end) (e.g. "forty one" -> "41")."""

    tok_start: int
    tok_end: int
    digits: str
    numeric: bool  # written with digit characters (Whisper) rather than words
    #: digits said one at a time: "four" -> 1, "6-9-7-4" -> 4, "4111" or "forty one" -> 0
    single_digits: int = 0


@dataclass(slots=True)
class DigitRun:
    """A maximal sequence of digit pieces, possibly with fillers between them."""

    pieces: list[Piece] = field(default_factory=list)

    @property
    def digits(self) -> str:
        return "".join(p.digits for p in self.pieces)

    @property
    def tok_start(self) -> int:
        return self.pieces[0].tok_start

    @property
    def tok_end(self) -> int:
        return self.pieces[-1].tok_end

    def piece_offsets(self) -> list[tuple[Piece, int]]:
        """Each piece with the offset of its first digit inside `digits`."""
        out, off = [], 0
        for p in self.pieces:
            out.append((p, off))
            off += len(p.digits)
        return out


def tokenize(text: str) -> list[Token]:
    """Whitespace tokens with char spans; keeps the original text for in-place masking."""
    toks: list[Token] = []
    for i, m in enumerate(re.finditer(r"\S+", text)):
        raw = m.group(0)
        toks.append(Token(i, raw, raw.strip(_STRIP).lower(), m.start(), m.end()))
    return toks


def _atoms(tokens: Sequence[Token]) -> list[tuple[int, str]]:
    """(token index, sub-word) pairs: hyphenated words ("forty-one") become two atoms."""
    out: list[tuple[int, str]] = []
    for t in tokens:
        if not t.norm:
            continue
        if _NUMERIC.match(t.norm):
            out.append((t.index, t.norm))
            continue
        parts = [p for p in t.norm.split("-") if p] if "-" in t.norm else [t.norm]
        for p in parts:
            out.append((t.index, p))
    return out


def _small(atoms: list[tuple[int, str]], i: int) -> tuple[int, int] | None:
    """A 1..99 spoken value at atoms[i]: (value, atoms consumed), or None."""
    w = atoms[i][1]
    if w in TEENS:
        return TEENS[w], 1
    if w in TENS:
        if i + 1 < len(atoms) and atoms[i + 1][1] in UNITS and UNITS[atoms[i + 1][1]] > 0:
            return TENS[w] + UNITS[atoms[i + 1][1]], 2
        return TENS[w], 1
    if w in UNITS and w not in _WEAK_ZERO:
        return UNITS[w], 1
    return None


def _below_thousand(atoms: list[tuple[int, str]], i: int) -> tuple[int, int] | None:
    """ "four hundred and five" -> (405, 4); "forty one hundred" -> (4100, 3); "nine" -> (9, 1)."""
    head = _small(atoms, i)
    if head is None:
        return None
    val, n = head
    if i + n < len(atoms) and atoms[i + n][1] == "hundred":
        val *= 100
        n += 1
        j = i + n
        if j < len(atoms) and atoms[j][1] == "and" and j + 1 < len(atoms) and _small(atoms, j + 1):
            j += 1
        tail = _small(atoms, j) if j < len(atoms) else None
        if tail is not None:
            val += tail[0]
            n = j - i + tail[1]
    return val, n


def _spoken_piece(atoms: list[tuple[int, str]], i: int) -> tuple[str, int] | None:
    """Digits of one spoken piece starting at atoms[i] and how many atoms it consumed."""
    w = atoms[i][1]
    if w in REPEATERS and i + 1 < len(atoms):
        nxt = atoms[i + 1][1]
        if nxt in UNITS:
            return str(UNITS[nxt]) * REPEATERS[w], 2
        if _NUMERIC.match(nxt) and len(nxt) == 1:
            return nxt * REPEATERS[w], 2
        return None
    if w in UNITS and UNITS[w] == 0:
        return "0", 1
    if w == "hundred":  # "a hundred" / bare "hundred"
        return "100", 1
    head = _below_thousand(atoms, i)
    if head is None:
        return None
    val, n = head
    j = i + n
    if j < len(atoms) and atoms[j][1] in ("thousand", "million"):
        scale = SCALES[atoms[j][1]]
        val *= scale
        n += 1
        j += 1
        if j < len(atoms) and atoms[j][1] == "and" and j + 1 < len(atoms) and _small(atoms, j + 1):
            j += 1
        rest = _below_thousand(atoms, j) if j < len(atoms) else None
        if rest is not None and rest[0] < scale:
            val += rest[0]
            n = j - i + rest[1]
    return str(val), n


def find_digit_runs(tokens: Sequence[Token], max_fillers: int = 2) -> list[DigitRun]:
    """All digit runs in `tokens`, left to right.

    A run continues over up to `max_fillers` consecutive hesitations ("uh", "dash") and
    over punctuation (Whisper ends "sentences" in the middle of a dictated number).
    Runs made only of "oh"/"o" are interjections and dropped.
    """
    atoms = _atoms(tokens)
    runs: list[DigitRun] = []
    cur = DigitRun()
    fillers = 0
    i = 0
    while i < len(atoms):
        tok_idx, w = atoms[i]
        piece: Piece | None = None
        if _NUMERIC.match(w):
            digits = re.sub(r"\D", "", w)
            groups = re.split(r"[-‐–—.]", w)
            singles = len(groups) if len(groups) > 1 and all(len(g) == 1 for g in groups) else int(len(digits) == 1)
            piece = Piece(tok_idx, tok_idx + 1, digits, True, singles)
            n = 1
        else:
            sp = _spoken_piece(atoms, i)
            if sp is not None:
                digits, n = sp
                piece = Piece(tok_idx, atoms[i + n - 1][0] + 1, digits, False, int(len(digits) == 1))
        if piece is not None:
            if cur.pieces and cur.pieces[-1].tok_end > piece.tok_start:
                # two atoms of one hyphenated token ended up in different pieces: merge
                last = cur.pieces.pop()
                piece = Piece(
                    last.tok_start,
                    piece.tok_end,
                    last.digits + piece.digits,
                    last.numeric and piece.numeric,
                    last.single_digits + piece.single_digits,
                )
            cur.pieces.append(piece)
            fillers = 0
            i += n
            continue
        if cur.pieces and w in FILLERS and fillers < max_fillers:
            fillers += 1
            i += 1
            continue
        if cur.pieces:
            runs.append(cur)
        cur = DigitRun()
        fillers = 0
        i += 1
    if cur.pieces:
        runs.append(cur)
    by_index = {t.index: t for t in tokens}  # callers may pass a slice of a longer list
    return [r for r in runs if not all(_is_weak_zero(by_index, p) for p in r.pieces)]


def _is_weak_zero(by_index: dict[int, Token], p: Piece) -> bool:
    return p.tok_end - p.tok_start == 1 and not p.numeric and by_index[p.tok_start].norm in _WEAK_ZERO


def digits_in(text: str) -> list[str]:
    """The digit strings of every run in `text` (convenience for callers and tests)."""
    return [r.digits for r in find_digit_runs(tokenize(text))]


def parse_cardinal(words: Sequence[str]) -> int | None:
    """The numeric value of spoken cardinal words ("two hundred and fifty" -> 250), or None.

    Used for money amounts, where the value (not the digit sequence) matters.
    """
    toks = tokenize(" ".join(words))
    atoms = _atoms(toks)
    if not atoms:
        return None
    if len(atoms) == 1 and _NUMERIC.match(atoms[0][1]):
        return int(re.sub(r"\D", "", atoms[0][1]))
    sp = _spoken_piece(atoms, 0)
    if sp is None or sp[1] != len(atoms):
        return None
    return int(sp[0])


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check that every payment card number satisfies."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0
