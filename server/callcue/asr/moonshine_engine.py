"""Moonshine base English through onnxruntime: the default engine.

Measured on the shared 2-core box (`../shared/notes/asr-moonshine.md`, docs/asr.md): about half
Whisper tiny.en's word errors on telephone audio at a quarter of its CPU, because Moonshine's
encoder costs what the audio is long (no 30 s padding) and its int8 weights stay int8 here.

Partials with bounded cost: Moonshine's encoder is not incremental, so a partial re-encodes what
it decodes. A segment is therefore decoded as *pieces*: once the open (uncommitted) audio passes
`commit_after_s`, the audio up to its quietest 200 ms between `commit_min_s` and 1.5 s from the
end is decoded once, its text committed, and later partials decode only the audio after that
cut. So a partial never decodes more than about `commit_after_s` seconds, whatever the segment's
length, and the final decodes only the last piece. Each partial forces the previous partial's
tokens (less the last two, which are the likeliest to change) as the decoder prefix in one
decoder call, which cuts the per-token steps without changing the text in 35 of 40 trials.

Two decode rules matter (the note): end-of-text is never taken as the first token (Moonshine
returned nothing for a spoken 15-digit string without it), and audio shorter than 1 s is
padded to 1 s. The decoder emits no timestamps, so word times come from the audio: each word
gets a share of the piece's voiced 10 ms frames in proportion to its letters
(`proportional_word_times`; its error against Whisper's alignment is in docs/asr.md).

Digits: where the conversation expects digits (`RecognizerStream.expect_digits`, set by the
pipeline when the agent asked for a number or a digit run is open), a short final is decoded a
second time with the vocabulary restricted to digits, number words and punctuation, and that
reading is kept when the model scores it nearly as well as the free one.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from callcue import metrics
from callcue.asr.base import AsrEngine, AsrHypothesis, AsrWord, RecognizerStream
from callcue.asr.moonshine_model import PreparedModel, load_tokenizer, prepare
from callcue.asr.whisper_batch import DecodeQueue

BOS, EOS = 1, 2
SPACE = "\u2581".encode()
RATE = 16000
#: shorter segments are padded to this before encoding (empty outputs otherwise)
MIN_AUDIO_S = 1.0
#: segments shorter than this are VAD blips: no decode at all
MIN_DECODE_S = 0.2
_DIGIT_FORMS = (("Zero", "0"), ("Oh", "0"), ("One", "1"), ("Two", "2"), ("Three", "3"), ("Four", "4"), ("Five", "5"),
                ("Six", "6"), ("Seven", "7"), ("Eight", "8"), ("Nine", "9"))  # fmt: skip
_NUMBER_WORDS = ("zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred "
                 "thousand double triple").split()  # fmt: skip


@dataclass(slots=True)
class MoonshineSettings:
    partial_interval_s: float = 0.6
    # open audio past which a piece is committed (bounds every partial's decode)
    commit_after_s: float = 8.0
    # a committed piece is at least this long (its cut is searched after it)
    commit_min_s: float = 3.0
    # tokens per second of audio a decode may emit before it is cut off (a loop guard)
    tokens_per_s: float = 8.0
    # digits expected: a final this short is re-decoded as digits (number words, digit runs)
    digits_max_s: float = 12.0
    # ... and one this short is read as the likeliest single digit word
    digit_word_max_s: float = 1.6
    # a digit run wins when its mean log-prob per token is at most this far below the free reading's
    digits_margin: float = 0.7
    # a single digit word wins when its log-probability is at most this far below the free reading's
    digit_word_margin: float = 3.0

    def __post_init__(self) -> None:
        if not self.partial_interval_s > 0:
            raise ValueError(f"partial_interval_s must be > 0, got {self.partial_interval_s}")
        if not 2.0 <= self.commit_min_s < self.commit_after_s <= 30.0:
            raise ValueError("need 2 <= commit_min_s < commit_after_s <= 30")


@dataclass(slots=True)
class Decoded:
    ids: list[int]
    text: str
    mean_logprob: float
    looped: bool = False
    total_logprob: float = -math.inf  # of the tokens and the end of text  # stopped by the loop guard (a forced prefix can set a decoder looping)

    @property
    def confidence(self) -> float:
        return math.exp(self.mean_logprob) if self.ids else 0.0


def _threads(threads: int) -> int:
    """Parallel decodes: one single-threaded onnxruntime run per core (measured: a 1-thread
    run per core beats one 2-thread run, since each token's matmuls are small)."""
    return max(1, threads if threads > 0 else (os.cpu_count() or 1))


class MoonshineEngine(AsrEngine):
    """The prepared model's two onnxruntime sessions, shared by every stream (onnxruntime
    sessions are safe to run from several threads; each run releases the GIL)."""

    name = "moonshine"
    model_name = "moonshine-base-en"
    sample_rate = RATE

    def __init__(self, prepared: PreparedModel | None = None, threads: int = 0,
                 settings: MoonshineSettings | None = None, models_dir: Path | None = None) -> None:  # fmt: skip
        import onnxruntime as ort

        self.prepared = prepared or prepare(models_dir)
        self.settings = settings or MoonshineSettings()
        self.num_workers = _threads(threads)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self._encoder = ort.InferenceSession(str(self.prepared.encoder), opts, providers=providers)
        self._decoder = ort.InferenceSession(str(self.prepared.decoder), opts, providers=providers)
        self._dec_inputs = [i.name for i in self._decoder.get_inputs()]
        self._dec_outputs = [o.name for o in self._decoder.get_outputs()]
        past = next(i for i in self._decoder.get_inputs() if i.name.startswith("past_key_values"))
        self._heads, self._head_dim = int(past.shape[1]), int(past.shape[3])
        self._tokens = load_tokenizer(self.prepared.tokenizer)
        self._vocab = int(self._decoder.get_outputs()[0].shape[-1])
        self._digits = DigitSpelling(self._token_texts())
        self.queue = DecodeQueue({"partial": self._run_jobs, "final": self._run_jobs},
                                 workers=self.num_workers, max_batch=1, name="moonshine-decode")  # fmt: skip
        self._cpu = threading.local()

    # -- hooks ---------------------------------------------------------------------------
    def open_stream(self) -> MoonshineStream:
        return MoonshineStream(self)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "path": str(self.prepared.path), "num_workers": self.num_workers,
                "commit_after_s": self.settings.commit_after_s}  # fmt: skip

    @property
    def stream_threads(self) -> int:
        """Channels wait on the decode queue, not on executor threads: enough threads that
        every waiting channel is queued, so the queue (not thread luck) sets the order."""
        return 16

    def close(self) -> None:
        self.queue.close()

    # -- decoding (called from the queue's workers) ----------------------------------------
    def decode(self, audio: np.ndarray, *, kind: str = "final", prefix: Sequence[int] = (), digits: bool = False,
               waiting_since: float | None = None, priority: int = 0) -> Decoded:  # fmt: skip
        """Blocking decode of float32 16 kHz mono through the queue (finals first)."""
        out = self.queue.run(kind, (), (audio, tuple(prefix), digits), waiting_since, priority)
        assert isinstance(out, Decoded)
        return out

    def _run_jobs(self, jobs: Sequence[tuple[np.ndarray, tuple[int, ...], bool]]) -> list[Decoded]:
        """`digits` on a job: the segment should hold digits (`read_digits`)."""
        out = []
        for audio, prefix, digits in jobs:
            free = self.transcribe(audio, prefix=prefix)
            out.append(self.read_digits(audio, free) if digits else free)
        return out

    def transcribe(self, audio: np.ndarray, prefix: Sequence[int] = (), digits: bool = False) -> Decoded:
        """Greedy decode, in this thread (tests and `callcue eval` call it directly)."""
        audio = np.asarray(audio, dtype=np.float32)
        seconds = len(audio) / RATE
        if seconds < MIN_AUDIO_S:
            audio = np.pad(audio, (0, int(MIN_AUDIO_S * RATE) - len(audio)))
        t0 = time.perf_counter()
        hidden = self._encoder.run(None, {"input_values": audio[None, :]})[0]
        budget = int(max(seconds, MIN_AUDIO_S) * self.settings.tokens_per_s) + 8
        forced = list(prefix)[:budget]
        feeds: dict[str, Any] = {"encoder_hidden_states": hidden, "use_cache_branch": np.array([False])}
        empty = np.zeros((1, self._heads, 0, self._head_dim), dtype=np.float32)
        for name in self._dec_inputs:
            if name.startswith("past_key_values"):
                feeds[name] = empty
        ids: list[int] = list(forced)
        looped = False
        spelling = ""  # the unfinished word of a digit reading
        step_input = np.array([[BOS, *forced]], dtype=np.int64)
        logprobs: list[float] = []
        first = True
        while len(ids) < budget:
            feeds["input_ids"] = step_input
            out = self._decoder.run(None, feeds)
            logits = out[0][0, -1].astype(np.float64)
            if first and not ids:
                logits[EOS] = -np.inf  # never end on the first token
            tok = self._constrained(logits, spelling) if digits else int(np.argmax(logits))
            if digits:
                spelling = "" if tok == EOS else (self._digits.step(spelling, tok) or "")
            peak = float(logits.max())
            logprobs.append(float(logits[tok] - (peak + math.log(np.exp(logits - peak).sum()))))
            for k, name in enumerate(self._dec_outputs[1:], 1):
                # the cache branch returns placeholder encoder keys: keep the first step's
                if first or ".decoder." in name:
                    feeds[name.replace("present", "past_key_values")] = out[k]
            feeds["use_cache_branch"] = np.array([True])
            first = False
            if tok == EOS:
                break
            ids.append(tok)
            if self._tokens[tok].startswith(SPACE) and looping_words(self.detokenize(ids[:-1])):
                looped = True
                break
            step_input = np.array([[tok]], dtype=np.int64)
        metrics.RTF.labels(self.name).observe((time.perf_counter() - t0) / max(seconds, 1e-3))
        text = self.detokenize(ids[:-1] if looped else ids)
        if looped:
            words = text.split()
            text = " ".join(words[: len(words) - looping_words(text)])
        return Decoded(ids, text, sum(logprobs) / len(logprobs) if logprobs else -math.inf, looped=looped,
                       total_logprob=sum(logprobs) if logprobs else -math.inf)

    def encode_words(self, text: str) -> list[int]:
        """Token ids for `text` by greedy longest match over the vocabulary (the model's own
        tokenization for the number words this is used for)."""
        raw = text.replace(" ", "\u2581").encode()
        if not hasattr(self, "_index"):
            self._index = {t: i for i, t in enumerate(self._tokens) if i > EOS and t}
            self._longest = max(len(t) for t in self._index)
        out, i = [], 0
        while i < len(raw):
            for n in range(min(self._longest, len(raw) - i), 0, -1):
                tok = self._index.get(raw[i : i + n])
                if tok is not None:
                    out.append(tok)
                    i += n
                    break
            else:
                raise ValueError(f"cannot tokenize {text!r}")
        return out

    def score_readings(self, audio: np.ndarray, readings: Sequence[str]) -> list[float]:
        """Total log-probability of each reading (ending with end-of-text) for `audio`:
        one decoder call per reading, all of its tokens at once."""
        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) < MIN_AUDIO_S * RATE:
            audio = np.pad(audio, (0, int(MIN_AUDIO_S * RATE) - len(audio)))
        hidden = self._encoder.run(None, {"input_values": audio[None, :]})[0]
        empty = np.zeros((1, self._heads, 0, self._head_dim), dtype=np.float32)
        scores = []
        for text in readings:
            ids = self.encode_words(text)
            feeds: dict[str, Any] = {"encoder_hidden_states": hidden, "use_cache_branch": np.array([False]),
                                     "input_ids": np.array([[BOS, *ids]], dtype=np.int64)}  # fmt: skip
            for name in self._dec_inputs:
                if name.startswith("past_key_values"):
                    feeds[name] = empty
            logits = self._decoder.run(["logits"], feeds)[0][0].astype(np.float64)
            peak = logits.max(axis=1, keepdims=True)
            logp = logits - (peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)))
            scores.append(float(sum(logp[k, t] for k, t in enumerate([*ids, EOS]))))
        return scores

    def read_digits(self, audio: np.ndarray, free: Decoded) -> Decoded:
        """The reading of a segment that should hold digits: `free` unless a digit reading
        scores near it. A short segment is scored against every digit word in the forms the
        model writes it ("Seven.", "Seven", "7") and read as the likeliest word (FSDD, 300
        clips: 91 % against 69 % free); a longer one is decoded again under `DigitSpelling`."""
        s = self.settings
        if is_digit_reading(free.text):
            return free
        seconds = len(audio) / RATE
        if seconds <= s.digit_word_max_s:
            forms = [[f" {w}.", f" {w}", f" {d}"] for w, d in _DIGIT_FORMS]
            scores = np.array(self.score_readings(audio, [f for fs in forms for f in fs])).reshape(len(forms), 3)
            per_word = np.logaddexp.reduce(scores, axis=1)
            best = int(np.argmax(per_word))
            if per_word[best] >= free.total_logprob - s.digit_word_margin:
                text = f"{_DIGIT_FORMS[best][0]}."
                return Decoded(self.encode_words(" " + text), text, float(per_word[best]) / 2, total_logprob=float(per_word[best]))
            return free
        if seconds > s.digits_max_s:
            return free
        digits = self.transcribe(audio, digits=True)
        if digits.ids and digits.mean_logprob >= free.mean_logprob - s.digits_margin:
            return digits
        return free

    def _constrained(self, logits: np.ndarray, pending: str) -> int:
        """The likeliest token that keeps the digit spelling (EOS once a word is whole)."""
        order = np.argpartition(-logits, 64)[:64]
        for candidates in (order[np.argsort(-logits[order])], np.argsort(-logits)):
            for t in candidates:
                t = int(t)
                if not np.isfinite(logits[t]):
                    break
                if t == EOS:
                    if self._digits.may_end(pending):
                        return t
                elif self._digits.step(pending, t) is not None:
                    return t
        return EOS

    def detokenize(self, ids: Sequence[int]) -> str:
        raw = b"".join(self._tokens[i] for i in ids if 2 < i < len(self._tokens))
        return raw.replace(SPACE, b" ").decode("utf-8", "replace").strip()

    def _token_texts(self) -> list[str]:
        return [t.replace(SPACE, b" ").decode("utf-8", "replace") if i > EOS else "" for i, t in enumerate(self._tokens)]


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
        words = {w for base in _NUMBER_WORDS for w in (base, base.capitalize(), base.upper())}
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
    return bool(words) and all(w.isdigit() or w.lower() in _NUMBER_WORDS for w in words)


def looping_words(text: str, min_len: int = 3) -> int:
    """How many trailing words repeat the `min_len`+ words just before them (case and
    punctuation aside): a decoder repeating itself, which Moonshine does over a trailing
    pause, and a forced prefix can start. Phrases of digits only never count, since "4242
    4242" is a card number, not a loop. Returns 0 when the tail does not repeat."""
    words = [w.strip(".,!?;:\"'").lower() for w in text.split()]
    n = len(words)
    for k in range(min_len, n // 2 + 1):
        tail = words[n - k :]
        if tail == words[n - 2 * k : n - k] and any(sum(c.isalpha() for c in w) >= 2 for w in tail):
            return k
    return 0


# -- word times --------------------------------------------------------------------------


def voiced_frames(audio: np.ndarray, frame_s: float = 0.01) -> np.ndarray:
    """Per 10 ms frame, whether it carries speech energy (relative to the piece's own range,
    so a quiet telephone leg and a loud one are judged alike)."""
    n = max(1, int(frame_s * RATE))
    frames = len(audio) // n
    if frames == 0:
        return np.zeros(0, dtype=bool)
    energy = np.sqrt(np.mean(audio[: frames * n].reshape(frames, n) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(energy)
    floor, peak = np.percentile(db, 10), np.percentile(db, 95)
    return db > floor + 0.35 * (peak - floor)


def proportional_word_times(words: Sequence[str], audio: np.ndarray, offset_s: float = 0.0) -> list[tuple[float, float]]:
    """(start, end) per word: the piece's voiced frames shared out by letter count.

    Why voiced frames and not the whole piece: pauses between phrases take no share, so a
    word after a pause starts after it. Each word's weight is its letters plus one (short
    words still take time); a digit string counts as its spoken length.
    """
    if not words:
        return []
    voiced = voiced_frames(audio)
    if not voiced.any():
        voiced = np.ones(max(1, len(audio) // (RATE // 100)), dtype=bool)
    times = np.flatnonzero(voiced) * 0.01
    weights = np.array([_spoken_weight(w) for w in words], dtype=np.float64)
    edges = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
    idx = np.minimum((edges * len(times)).astype(int), len(times) - 1)
    out = []
    for k in range(len(words)):
        start = times[idx[k]]
        end = times[max(idx[k], idx[k + 1] - 1)] + 0.01 if k + 1 < len(words) else times[-1] + 0.01
        out.append((offset_s + float(start), offset_s + float(max(end, start + 0.01))))
    return out


def _spoken_weight(word: str) -> float:
    letters = sum(c.isalpha() for c in word)
    digits = sum(c.isdigit() for c in word)
    return 1.0 + letters + 4.0 * digits  # a digit is spoken as a word of about four letters


def quietest_cut(audio: np.ndarray, lo_s: float, hi_s: float) -> int:
    """Sample index of the middle of the quietest 200 ms between `lo_s` and `hi_s`."""
    frame = RATE // 100
    lo, hi = int(lo_s * 100), int(hi_s * 100)
    frames = len(audio) // frame
    hi = min(hi, frames)
    if hi - lo < 20:
        return int(lo_s * RATE)
    energy = np.mean(audio[: frames * frame].reshape(frames, frame) ** 2, axis=1)[lo:hi]
    window = np.convolve(energy, np.ones(20), mode="valid")
    best = int(np.argmin(window))
    return (lo + best + 10) * frame


# -- one channel -------------------------------------------------------------------------


@dataclass(slots=True)
class _Piece:
    start: int  # samples from the segment start
    end: int
    decoded: Decoded


class MoonshineStream(RecognizerStream):
    """One channel's open segment, decoded as committed pieces plus a bounded open tail."""

    partial_is_costly = True

    def __init__(self, engine: MoonshineEngine) -> None:
        self._engine = engine
        self._buf = bytearray()
        self.begin_segment()

    def begin_segment(self) -> None:
        self._buf.clear()
        self._pieces: list[_Piece] = []
        self._committed = 0  # samples
        self._at_last_partial = 0
        self._previous: Decoded | None = None  # the last partial of the open tail
        self._previous_words: list[str] = []
        self._waiting_since: float | None = None

    @property
    def _samples(self) -> int:
        return len(self._buf) // 2

    def _audio(self, start: int = 0, end: int | None = None) -> np.ndarray:
        end = self._samples if end is None else end
        return np.frombuffer(self._buf, dtype=np.int16, count=end - start, offset=2 * start).astype(np.float32) / 32768.0

    def accept(self, pcm: bytes, allow_partial: bool = True) -> list[AsrHypothesis]:
        if len(pcm) % 2:
            raise ValueError(f"PCM must be 16-bit samples (an even number of bytes), got {len(pcm)} bytes")
        if pcm:
            self._buf += pcm
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
        s = self._engine.settings
        due = self._samples - self._at_last_partial >= s.partial_interval_s * RATE
        if not (allow_partial and due) or self._samples - self._committed < MIN_DECODE_S * RATE:
            return []
        self._at_last_partial = self._samples
        waited, self._waiting_since = self._waiting_since, None
        if self._samples - self._committed > s.commit_after_s * RATE:
            self._commit_piece()
        prefix: Sequence[int] = ()
        if self._previous is not None and len(self._previous.ids) > 2:
            prefix = self._previous.ids[:-2]
        audio = self._audio(self._committed)
        tail = self._engine.decode(audio, kind="partial", prefix=prefix, waiting_since=waited, priority=self.priority)
        if tail.looped and prefix:  # the forced words set it looping: decode freely
            tail = self._engine.decode(audio, kind="partial", priority=self.priority)
        self._previous = None if tail.looped else tail  # never force a looping reading again
        text = self._text(tail.text)
        words = text.split()
        if not words:
            return []
        from callcue.asr.whisper_engine import agreed_prefix

        stable = agreed_prefix(self._previous_words, words)
        self._previous_words = words
        return [AsrHypothesis(text=text, is_final=False, confidence=tail.confidence, stable_words=stable)]

    def _commit_piece(self) -> None:
        """Decode the open audio up to its quietest point once, and keep that text."""
        s = self._engine.settings
        lo = self._committed / RATE + s.commit_min_s
        hi = self._samples / RATE - 1.5
        cut = quietest_cut(self._audio(), lo, hi) if hi > lo else int((self._committed / RATE + s.commit_min_s) * RATE)
        decoded = self._engine.decode(self._audio(self._committed, cut), kind="final", priority=self.priority)
        self._pieces.append(_Piece(self._committed, cut, decoded))
        self._committed = cut
        self._previous = None

    def _text(self, tail: str) -> str:
        return " ".join(t for t in [*(p.decoded.text for p in self._pieces), tail] if t)

    def end_segment(self) -> list[AsrHypothesis]:
        pieces = list(self._pieces)
        if self._samples - self._committed >= MIN_DECODE_S * RATE or (not pieces and self._samples >= MIN_DECODE_S * RATE):
            tail_audio = self._audio(self._committed)
            decoded = self._engine.decode(tail_audio, kind="final", digits=self.expect_digits, priority=self.priority)
            pieces.append(_Piece(self._committed, self._samples, decoded))
        words: list[AsrWord] = []
        texts = []
        confs = []
        for p in pieces:
            toks = p.decoded.text.split()
            if not toks:
                continue
            texts.append(p.decoded.text)
            confs.append(p.decoded.confidence)
            for w, (a, b) in zip(toks, proportional_word_times(toks, self._audio(p.start, p.end), p.start / RATE)):
                words.append(AsrWord(w, a, b, p.decoded.confidence))
        hyp = AsrHypothesis(text=" ".join(texts), is_final=True, words=words,
                            confidence=sum(confs) / len(confs) if confs else 0.0)  # fmt: skip
        self.begin_segment()
        return [hyp]

    def close(self) -> None:
        self._buf.clear()


# -- registration (callcue.asr.registry) --------------------------------------------------


def settings_of(cfg: Any) -> MoonshineSettings:
    from callcue.asr.registry import cfg_get

    d = MoonshineSettings()
    return MoonshineSettings(
        partial_interval_s=float(cfg_get(cfg, "partial_interval_s") or d.partial_interval_s),
        commit_after_s=float(cfg_get(cfg, "moonshine_commit_after_s") or d.commit_after_s),
    )


def _find(cfg: Any, dirs: list[Path]) -> Any:
    from callcue.asr.moonshine_model import shipped_model_dir, shipped_problem
    from callcue.asr.registry import EngineChoice

    src = shipped_model_dir()
    if shipped_problem(src):
        return None
    assert src is not None
    return EngineChoice("moonshine", src, f"Using Moonshine base English (package moonshine-cpp, {src}) "
                        "through onnxruntime, int8 weights kept int8.")  # fmt: skip


def _missing(cfg: Any, dirs: list[Path]) -> str:
    from callcue.asr.moonshine_model import shipped_model_dir, shipped_problem

    return f"Moonshine is unavailable: {shipped_problem(shipped_model_dir())}."


def _load(choice: Any, cfg: Any) -> MoonshineEngine:
    import logging

    from callcue.asr.registry import cfg_get, threads_of

    models_dir = cfg_get(cfg, "moonshine_cache_dir")
    prepared = prepare(Path(models_dir).expanduser() if models_dir else None, src=choice.model_path,
                       progress=logging.getLogger(__name__).info)  # fmt: skip
    return MoonshineEngine(prepared, threads=threads_of(cfg), settings=settings_of(cfg))


def _register() -> None:
    from callcue.asr.registry import EngineProvider, register

    register(EngineProvider("moonshine", _find, _missing, _load, auto_rank=20,
                            summary="Moonshine base English via onnxruntime: the default"))  # fmt: skip


_register()
