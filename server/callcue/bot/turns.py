"""When the caller's turn ends, for the virtual agent: from the VAD's silence, shortened or
lengthened by what the caller has said so far (the latest partial).

Why words and not silence alone: a fixed hang-over is either slow (the bot waits 0.6 s after
"four four one one", an answer that is plainly complete) or rude (it cuts in on "my card and..."
while the caller draws breath). The dialog knows what it asked for, so a partial that already
holds a complete value for that slot, a yes or no to a confirmation, or a question ends the turn
after a short silence; a partial that trails off on a conjunction or a filler waits longer.
Pure: the call applies the answer to its customer channel's VAD.
"""

from __future__ import annotations

import re

from callcue.bot.flows import Slot
from callcue.bot.slots import fill, yes_no

#: silence that ends a turn: complete answers, the VAD's own setting, trailing words
SHORT_MS = 250
LONG_MS = 1400
TRAILING = frozenset({"and", "but", "so", "or", "because", "um", "uh", "er", "erm", "hmm", "the", "a", "an", "my",
                      "is", "was", "to", "of", "with", "for", "then", "also", "like"})  # fmt: skip
QUESTION = re.compile(r"^(what|when|where|why|how|who|which|can|could|do|does|did|is|are|will|would|should)\b")


def hangover_ms(partial: str, expecting: Slot | None, confirming: bool, default_ms: int) -> int:
    """The silence (ms) after which this turn ends, given the latest partial and what the
    bot is waiting for (`expecting` a slot, or a yes/no when `confirming`)."""
    words = re.findall(r"[a-z0-9']+", partial.lower())
    if not words:
        return default_ms
    if words[-1] in TRAILING:
        return max(default_ms, LONG_MS)
    short = min(default_ms, SHORT_MS)
    if confirming and yes_no(partial) is not None:
        return short
    if expecting is not None and expecting.type != "text" and fill(expecting, partial) is not None:
        return short
    if partial.rstrip().endswith("?") or (len(words) >= 3 and QUESTION.match(" ".join(words))):
        return short
    return default_ms
