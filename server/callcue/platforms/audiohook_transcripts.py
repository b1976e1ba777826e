"""AudioHook transcript events: a CallCue final as the `transcript` entities a Genesys
transcription connector sends (`entities-transcript.ts` of the reference implementation).

A VAD segment often holds several utterances ("Hi. Thanks for calling. How can I help?") that
Genesys shows as lines of their own, so a final is split where a word ends a sentence or a
pause follows it; each piece is one entity with its own id, offset, duration and word tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any


def duration(seconds: float) -> str:
    """AudioHook's position format: ISO 8601 seconds, no exponent."""
    return f"PT{seconds:.3f}".rstrip("0").rstrip(".") + "S"


SENTENCE_END = (".", "?", "!")
#: a pause this long between words ends an utterance even without punctuation
UTTERANCE_GAP_S = 0.6


def utterances(t: Any) -> list[tuple[str, list[Any], float, float]]:
    """A final split where its words end a sentence or pause: (text, words, start, end). A
    VAD segment often holds several utterances ("Hi. Thanks for calling. How can I help?")
    that a transcript display shows as lines of their own. Without word times: the whole."""
    words = list(t.words)
    if not words:
        return [(t.text, [], t.start, t.end)]
    out, cur = [], []
    for i, w in enumerate(words):
        cur.append(w)
        last = i == len(words) - 1
        gap = not last and words[i + 1].start - w.end >= UTTERANCE_GAP_S
        if last or gap or w.text.rstrip().endswith(SENTENCE_END):
            out.append((" ".join(x.text.strip() for x in cur).strip(), cur, cur[0].start, cur[-1].end))
            cur = []
    return [u for u in out if any(ch.isalnum() for ch in u[0])]  # not a lone "." on noise


def _unit(x: float) -> float:
    return round(min(1.0, max(0.0, float(x))), 3)




def transcript_entities(t: Any, channel_id: int, clock: Callable[[float], float], language: str | None) -> list[dict[str, Any]]:
    """One `transcript` entity per utterance of final `t`; `clock` maps call-clock times onto
    the session's stream (what Genesys counts offsets on)."""
    out = []
    for i, (text, words, start, end) in enumerate(utterances(t)):
        tokens = [{"type": "word", "value": w.text.strip(), "confidence": _unit(w.conf), "offset": duration(clock(w.start)),
                   "duration": duration(max(0.0, clock(w.end) - clock(w.start)))} for w in words]  # fmt: skip
        conf = sum(w.conf for w in words) / len(words) if words else t.confidence
        alt: dict[str, Any] = {"confidence": _unit(conf), "interpretations": [{"type": "display", "transcript": text, "tokens": tokens}]}
        if language:
            alt["languages"] = [language]
        out.append({"type": "transcript", "data": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{t.call_id}/{t.channel}/{t.segment_id}/{i}")),
            "channelId": channel_id, "isFinal": True, "offset": duration(clock(start)),
            "duration": duration(max(0.0, clock(end) - clock(start))), "alternatives": [alt]}})
    return out
