"""What the detectors judge: each sentence of an update, and a window across the last cut.

Why: a recognizer cuts segments where the speaker pauses, not where meaning does. Live, "This
is ridiculous. I have been a customer for 10 years. Let me speak to your manager right now."
came out as one final, and a classifier of the whole utterance scored the manager request
0.62 where the sentence alone scores 0.93; a replay whose cut fell one sentence later raised it
at once. So an update of several sentences is judged sentence by sentence, and the first
sentence of a segment is also judged together with the last sentence of the channel's
previous final when that ended moments before (the cut may have split the thought).

Each view is a `Transcript` with a segment key of its own (negative, so it never meets a real
segment id), so a detector's per-segment bookkeeping (debouncing partials, retracting what the
final does not support) works per sentence unchanged. The signals a view raises are mapped
back to the real segment, their evidence narrowed to the sentence and its times.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from callcue.events import Signal, Transcript, Word

#: a sentence ends at . ! or ? followed by space, except after these abbreviations or an initial
_ABBREV = re.compile(r"(?:\b(?:mr|mrs|ms|dr|st|jr|sr|vs|etc|no|approx|e\.g|i\.e)|\b[a-z])\.$", re.IGNORECASE)
_END = re.compile(r"[.!?]+[\"')\]]*\s+")
#: the previous final must have ended this close (call clock) for a window across the cut
BOUNDARY_GAP_S = 2.0
#: a view key per (segment, sentence); the boundary window takes the last slot
_SLOTS = 1000
_BOUNDARY = _SLOTS - 1


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text` (whitespace trimmed)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END.finditer(text):
        piece = text[start : m.start() + len(m.group().rstrip())]
        if _ABBREV.search(piece.strip()) or not any(c.isalpha() or c.isdigit() for c in piece):
            continue
        spans.append((start, m.start() + len(m.group().rstrip())))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return [(a + len(text[a:b]) - len(text[a:b].lstrip()), b) for a, b in spans if text[a:b].strip()]


def view_key(segment_id: int, slot: int) -> int:
    return -(segment_id * _SLOTS + slot + 1)


def _words_of(t: Transcript, a: int, b: int) -> list[Word]:
    """The words of characters a..b of `t.text`, by position when words and text align."""
    if not t.words or len(t.words) != len(t.text.split()):
        return []
    first = len(t.text[:a].split())
    count = len(t.text[a:b].split())
    return t.words[first : first + count]


def _sub(t: Transcript, key: int, text: str, words: list[Word]) -> Transcript:
    start = words[0].start if words else t.start
    end = words[-1].end if words else t.end
    return dataclasses.replace(t, segment_id=key, text=text, words=words, start=start, end=end)


@dataclass
class _Seen:
    """Per segment: the view keys partials produced and the text each last had."""

    texts: dict[int, str] = field(default_factory=dict)


class SentenceViews:
    """One call's views; not thread-safe (the detect stage runs one update at a time)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], _Seen] = {}

    def views(self, t: Transcript, previous: Transcript | None) -> list[Transcript]:
        """The transcripts the detectors should judge for update `t` (at least one).

        `previous`: the channel's last final before this segment, for the boundary window.
        """
        spans = split_sentences(t.text)
        seen = self._seen.setdefault((t.channel, t.segment_id), _Seen())
        if len(self._seen) > 128:
            for old in list(self._seen)[:32]:
                del self._seen[old]
        out: list[Transcript] = []
        if len(spans) <= 1:
            out.append(t)  # one sentence: the update itself, its own segment key
            seen.texts[t.segment_id] = t.text
        else:
            for k, (a, b) in enumerate(spans):
                key = view_key(t.segment_id, k)
                text = t.text[a:b]
                if not t.is_final and seen.texts.get(key) == text:
                    continue  # this sentence of the partial has not changed: judged already
                seen.texts[key] = text
                out.append(_sub(t, key, text, _words_of(t, a, b)))
        if t.is_final:
            # sentences partials showed that the final no longer has: settle them on the whole
            # text, so what they raised is confirmed or retracted like any partial signal
            have = {view_key(t.segment_id, k) for k in range(len(spans))} if len(spans) > 1 else {t.segment_id}
            for key in [k for k in seen.texts if k not in have and k != view_key(t.segment_id, _BOUNDARY)]:
                out.append(t if key == t.segment_id else _sub(t, key, t.text, t.words))
            self._seen.pop((t.channel, t.segment_id), None)
        boundary = self._boundary(t, previous, spans)
        if boundary is not None:
            out.append(boundary)
        return out

    @staticmethod
    def _boundary(t: Transcript, previous: Transcript | None, spans: list[tuple[int, int]]) -> Transcript | None:
        if previous is None or not spans or not previous.text.strip() or t.start - previous.end > BOUNDARY_GAP_S:
            return None
        prev_spans = split_sentences(previous.text)
        if not prev_spans:
            return None
        pa, pb = prev_spans[-1]
        a, b = spans[0]
        text = f"{previous.text[pa:pb]} {t.text[a:b]}"
        words = [*_words_of(previous, pa, pb), *_words_of(t, a, b)]
        view = _sub(t, view_key(t.segment_id, _BOUNDARY), text, words if len(words) == len(text.split()) else [])
        return dataclasses.replace(view, start=min(view.start, previous.start) if not words else view.start)


class SegmentSignals:
    """What the views of one segment raised, merged into what the segment says.

    Sentence views each keep their own detector state, and a sentence's index can shift
    between a partial and the final ("I want to cancel" is sentence 0 of a partial and
    sentence 1 of "Hi Daniel. I want to cancel my account."), so one request can be raised by
    two views. Downstream must see it once: per real segment, one standing signal per (kind,
    name). A later view raising it again is dropped; a detector's own final confirmation
    (`attrs.confirms`) passes once, pointed at the signal that was sent. A retraction passes only when
    no view of the same update still supports the signal, and it retracts the signal that was
    actually sent.
    """

    def __init__(self) -> None:
        self._standing: dict[tuple[str, int], dict[tuple[str, str], Signal]] = {}

    def merge(self, t: Transcript, signals: list[Signal]) -> list[Signal]:
        seg = (t.channel, t.segment_id)
        standing = self._standing.setdefault(seg, {})
        if len(self._standing) > 256:
            for old in list(self._standing)[:64]:
                del self._standing[old]
        supported = {(s.kind, s.name) for s in signals if not s.retracted and _of_segment(s, t)}
        out: list[Signal] = []
        confirmed: set[tuple[str, str]] = set()
        for s in signals:
            if not _of_segment(s, t):
                out.append(s)  # not about this segment (an acoustic or timer signal): as it came
                continue
            key = (s.kind, s.name)
            if s.retracted:
                sent = standing.pop(key, None)
                if key in supported or sent is None:
                    continue  # another sentence still says it, or it was never sent
                if sent.signal_id != s.signal_id:
                    s = dataclasses.replace(sent, retracted=True, attrs={**sent.attrs, "retracted_by": s.detector})
                out.append(s)
            elif key not in standing:
                standing[key] = s
                out.append(s)
            elif t.is_final and "confirms" in s.attrs and key not in confirmed:
                # a detector's own confirmation of what a partial raised: once, pointing at
                # the signal that was sent (the partial may have been another sentence's)
                s.attrs = {**s.attrs, "confirms": standing[key].signal_id}
                standing[key] = s
                confirmed.add(key)
                out.append(s)
        if t.is_final:
            self._standing.pop(seg, None)
        return out


def _of_segment(s: Signal, t: Transcript) -> bool:
    return s.evidence is not None and s.evidence.channel == t.channel and s.evidence.segment_id == t.segment_id


def back_to_segment(sig: Signal, t: Transcript, view: Transcript) -> Signal:
    """A view's signal as a signal of the real segment: its evidence keeps the sentence's
    words and times (what the signal is about) under the real segment id and revision."""
    if view is t or sig.evidence is None or sig.evidence.segment_id != view.segment_id:
        return sig
    sig.evidence = dataclasses.replace(sig.evidence, segment_id=t.segment_id, revision=t.revision, is_final=t.is_final)
    sig.attrs = {**sig.attrs, "sentence": _slot(view.segment_id)}
    return sig


def _slot(key: int) -> int | str:
    slot = (-key - 1) % _SLOTS
    return "boundary" if slot == _BOUNDARY else slot


def is_boundary(view: Transcript) -> bool:
    return view.segment_id < 0 and _slot(view.segment_id) == "boundary"
