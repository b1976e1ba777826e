"""Moonshine base English through onnxruntime: the default engine.

Measured on the shared 2-core box (`../shared/notes/asr-moonshine.md`, docs/asr.md): about half
Whisper tiny.en's word errors on telephone audio at a quarter of its CPU, because Moonshine's
encoder costs what the audio is long (no 30 s padding) and its int8 weights stay int8 here.

Partials with bounded cost: Moonshine's encoder is not incremental, so a partial re-encodes what
it decodes. A segment is therefore decoded as *pieces*: once the open (uncommitted) audio passes
`commit_after_s`, the audio up to its quietest 200 ms between `commit_min_s` and 1.5 s from the
end is decoded once, its text committed, and later partials decode only the audio after that
cut. So a partial never decodes more than about `commit_after_s` seconds, whatever the segment's
length, and the final decodes only the last piece. Each partial forces the tokens the last
two partials agreed on (less the last two) as the decoder prefix in one decoder call, which
cuts the per-token steps; forcing the previous partial whole kept its misreadings in every
later partial (bench/RESULTS.md).

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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from callcue import metrics
from callcue.asr.base import AsrEngine
from callcue.asr.moonshine_model import PreparedModel, load_tokenizer, prepare
from callcue.asr.moonshine_stream import MoonshineStream
from callcue.asr.token_rules import (
    DEFAULT_BOOST_WORDS,
    DIGIT_FORMS,
    SPACE,
    DigitSpelling,
    WordBoost,
    is_digit_reading,
    looping_words,
)
from callcue.asr.whisper_batch import DecodeQueue
from callcue.asr.word_times import RATE

BOS, EOS = 1, 2
#: shorter segments are padded to this before encoding (empty outputs otherwise)
MIN_AUDIO_S = 1.0


@dataclass(slots=True)
class MoonshineSettings:
    partial_interval_s: float = 0.6
    # open audio past which a piece is committed (bounds every partial's decode)
    commit_after_s: float = 8.0
    # a committed piece is at least this long (its cut is searched after it)
    commit_min_s: float = 3.0
    # tokens per second of audio a decode may emit before it is cut off (a loop guard)
    tokens_per_s: float = 8.0
    # partials come this much faster when the decode queue is empty, up to this much slower
    # when it is full (`MoonshineEngine.partial_step_s`); 1.0 = a fixed step
    adaptive_step: float = 2.0
    # partials force the tokens the last two partials agreed on (less the last two) as the decoder prefix
    force_prefix: bool = True
    # digits expected: a final this short is re-decoded as digits (number words, digit runs)
    digits_max_s: float = 12.0
    # ... and one this short is read as the likeliest single digit word
    digit_word_max_s: float = 1.6
    # a digit run wins when its log-probability is at most this far below the free reading's
    digits_margin: float = 2.0
    # a single digit word wins when its log-probability is at most this far below the free reading's
    digit_word_margin: float = 3.0
    # domain words a started word is steered to finish (contextual biasing), and by how much
    boost_words: tuple[str, ...] = ()
    boost: float = 3.0

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
    looped: bool = False  # stopped by the loop guard (a forced prefix can set a decoder looping)
    total_logprob: float = -math.inf  # of the tokens and the end of text

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
        self._texts = [t.replace(SPACE, b" ").decode("utf-8", "replace") if i > EOS else "" for i, t in enumerate(self._tokens)]
        self._digits = DigitSpelling(self._texts)
        self._boost = WordBoost(self._texts, self.settings.boost_words)
        # greedy longest-match tokenization of the readings `score_readings` is asked about
        self._index = {t: i for i, t in enumerate(self._tokens) if i > EOS and t}
        self._longest = max(len(t) for t in self._index)
        self.queue = DecodeQueue({"partial": self._run_jobs, "final": self._run_jobs},
                                 workers=self.num_workers, max_batch=1, name="moonshine-decode")  # fmt: skip

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

    def partial_step_s(self) -> float:
        """How much new audio a channel waits for before its next partial: the configured
        step scaled by how busy the decoders are: half of it while the queue is empty (words
        reach the screen sooner when the cores are free), plus one step per queued job per
        worker, at most double, so that under load the cores go to finals and to the channels
        a hint may hang on rather than to ever more partials."""
        s = self.settings
        if s.adaptive_step <= 1.0:
            return s.partial_interval_s
        busy = self.queue.pending() / self.num_workers
        factor = min(s.adaptive_step, max(1.0 / s.adaptive_step, 0.5 + busy))
        return s.partial_interval_s * factor

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
        seconds = len(audio) / RATE
        t0 = time.perf_counter()
        feeds = self._first_step(audio)
        budget = int(max(seconds, MIN_AUDIO_S) * self.settings.tokens_per_s) + 8
        forced = list(prefix)[:budget]
        ids: list[int] = list(forced)
        looped = False
        spelling = ""  # the unfinished word of a digit reading
        word = ""  # the unfinished word, for boosting
        step_input = np.array([[BOS, *forced]], dtype=np.int64)
        logprobs: list[float] = []
        first = True
        while len(ids) < budget:
            feeds["input_ids"] = step_input
            out = self._decoder.run(None, feeds)
            logits = out[0][0, -1].astype(np.float64)
            if first and not ids:
                logits[EOS] = -np.inf  # never end on the first token
            if self._boost and not digits and word:
                boosted = self._boost.continuations(word)
                if boosted.size:
                    logits[boosted] += self.settings.boost
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
            word = self._boost.next_word(word, tok) if self._boost else ""
            if self._tokens[tok].startswith(SPACE) and looping_words(self.detokenize(ids[:-1]), seconds):
                looped = True
                break
            step_input = np.array([[tok]], dtype=np.int64)
        metrics.RTF.labels(self.name).observe((time.perf_counter() - t0) / max(seconds, 1e-3))
        text = self.detokenize(ids[:-1] if looped else ids)
        if looped:
            words = text.split()
            while (k := looping_words(" ".join(words))) and len(words) > k:  # every repeated copy goes
                words = words[: len(words) - k]
            text = " ".join(words)
        return Decoded(ids, text, sum(logprobs) / len(logprobs) if logprobs else -math.inf, looped=looped,
                       total_logprob=sum(logprobs) if logprobs else -math.inf)

    def _first_step(self, audio: np.ndarray) -> dict[str, Any]:
        """The decoder's inputs for its first step over `audio` (padded to 1 s, encoded once):
        the encoder's states, the no-cache branch and empty key/value caches."""
        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) < MIN_AUDIO_S * RATE:
            audio = np.pad(audio, (0, int(MIN_AUDIO_S * RATE) - len(audio)))
        hidden = self._encoder.run(None, {"input_values": audio[None, :]})[0]
        feeds: dict[str, Any] = {"encoder_hidden_states": hidden, "use_cache_branch": np.array([False])}
        empty = np.zeros((1, self._heads, 0, self._head_dim), dtype=np.float32)
        for name in self._dec_inputs:
            if name.startswith("past_key_values"):
                feeds[name] = empty
        return feeds

    def encode_words(self, text: str) -> list[int]:
        """Token ids for `text` by greedy longest match over the vocabulary (the model's own
        tokenization for the number words this is used for)."""
        raw = text.replace(" ", "\u2581").encode()
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
        feeds = self._first_step(audio)
        scores = []
        for text in readings:
            ids = self.encode_words(text)
            feeds["input_ids"] = np.array([[BOS, *ids]], dtype=np.int64)
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
            forms = [[f" {w}.", f" {w}", f" {d}"] for w, d in DIGIT_FORMS]
            scores = np.array(self.score_readings(audio, [f for fs in forms for f in fs])).reshape(len(forms), 3)
            per_word = np.logaddexp.reduce(scores, axis=1)
            best = int(np.argmax(per_word))
            if per_word[best] >= free.total_logprob - s.digit_word_margin:
                text = f"{DIGIT_FORMS[best][0]}."
                ids = self.encode_words(" " + text)
                total = float(per_word[best])
                return Decoded(ids, text, total / (len(ids) + 1), total_logprob=total)  # per token, end of text included
            return free
        if seconds > s.digits_max_s:
            return free
        digits = self.transcribe(audio, digits=True)
        # totals, not means: a reading forced off the speech can loop on itself with confident
        # tokens ("SIX THOUSAND SIX THOUSAND ..." for JFK), which a mean would not catch
        if digits.ids and not digits.looped and digits.total_logprob >= free.total_logprob - s.digits_margin:
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

    def token_texts(self) -> list[str]:
        """Each token as text (the word-start mark as a space; specials empty)."""
        return self._texts


# -- registration (callcue.asr.registry) --------------------------------------------------


def settings_of(cfg: Any) -> MoonshineSettings:
    from callcue.asr.registry import cfg_get

    d = MoonshineSettings()
    boost = cfg_get(cfg, "boost_words")
    return MoonshineSettings(
        partial_interval_s=float(cfg_get(cfg, "partial_interval_s") or d.partial_interval_s),
        commit_after_s=float(cfg_get(cfg, "moonshine_commit_after_s") or d.commit_after_s),
        force_prefix=bool(cfg_get(cfg, "moonshine_force_prefix", d.force_prefix)),
        adaptive_step=float(cfg_get(cfg, "moonshine_adaptive_step") or d.adaptive_step),
        boost_words=tuple(boost) if boost is not None else DEFAULT_BOOST_WORDS,
        boost=float(cfg_get(cfg, "boost") or d.boost),
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

    register(EngineProvider("moonshine", _find, _missing, _load, auto_rank=20))


_register()
