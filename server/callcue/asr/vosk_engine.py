"""Vosk (Kaldi) streaming engine: the primary engine because its partials are nearly free.

Why the bookkeeping: one `KaldiRecognizer` lives for the whole channel (creating one per
segment would re-initialise ivector/feature pipelines), but Vosk stamps words with times
counted from the *first sample ever fed to that recognizer*. The pipeline wants times
relative to the current VAD segment, so we count the samples we feed and subtract the count
at `begin_segment()`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from callcue.asr.base import AsrEngine, AsrHypothesis, AsrWord, RecognizerStream
from callcue.asr.model_store import vosk_model_problem

_log_level_set = False
_log_level_lock = threading.Lock()


def _quiet_vosk() -> None:
    """Kaldi logs every model load to stderr; that noise would drown the server's own logs."""
    global _log_level_set
    with _log_level_lock:
        if not _log_level_set:
            import vosk

            vosk.SetLogLevel(-1)
            _log_level_set = True


def _words(items: list[dict[str, Any]] | None, offset: float) -> list[AsrWord]:
    """Vosk word dicts -> segment-relative AsrWords (clamped: Kaldi may place the first
    word a few ms before the segment boundary)."""
    out: list[AsrWord] = []
    for it in items or []:
        start = max(0.0, float(it["start"]) - offset)
        end = max(start, float(it["end"]) - offset)
        out.append(AsrWord(text=str(it["word"]), start=start, end=end, conf=float(it.get("conf", 1.0))))
    return out


def _confidence(words: list[AsrWord]) -> float:
    """Mean word confidence: Vosk gives no utterance score, and a mean keeps one bad word
    from hiding the rest (min would) while still pulling the score down."""
    return sum(w.conf for w in words) / len(words) if words else 0.0


class VoskStream(RecognizerStream):
    """One channel's recognizer.

    Why partials are rationed: `PartialResult()` walks the whole open utterance's lattice, so
    asking after every 20 ms frame (what vosk-server does per message) costs half again as much
    as decoding itself (measured on the Korean model: 0.24 vs 0.16 CPU-s per second of speech)
    and grows with the utterance. Asking once per `partial_interval_s` of audio (0.2 s) costs
    0.18 and delays a partial by at most that interval; finals are never delayed.
    """

    partial_is_costly = False

    def __init__(self, model: Any, sample_rate: int, partial_interval_s: float = 0.2) -> None:
        import vosk

        self._rec = vosk.KaldiRecognizer(model, float(sample_rate))
        self._rec.SetWords(True)
        # partial word times let the pipeline place partial words on the call clock too
        self._rec.SetPartialWords(True)
        self._rate = sample_rate
        self._samples_fed = 0
        self._segment_offset = 0.0
        self._last_partial = ""
        self._partial_every = max(1, int(partial_interval_s * sample_rate))
        self._since_partial = 0  # samples fed since the last PartialResult
        self.partials_asked = 0

    def begin_segment(self) -> None:
        self._segment_offset = self._samples_fed / self._rate
        self._last_partial = ""
        self._since_partial = 0

    def accept(self, pcm: bytes, allow_partial: bool = True) -> list[AsrHypothesis]:
        if len(pcm) % 2:
            raise ValueError(f"PCM must be 16-bit samples (an even number of bytes), got {len(pcm)} bytes")
        if not pcm:
            return []
        self._samples_fed += len(pcm) // 2
        self._since_partial += len(pcm) // 2
        if self._rec.AcceptWaveform(pcm):
            # Vosk found an endpoint inside the segment (a long pause the VAD kept)
            hyp = self._final(json.loads(self._rec.Result()))
            self._last_partial = ""
            self._since_partial = 0
            return [hyp] if hyp.text else []
        if not allow_partial or self._since_partial < self._partial_every:
            return []
        self._since_partial = 0
        self.partials_asked += 1
        data = json.loads(self._rec.PartialResult())
        text = str(data.get("partial", "")).strip()
        if not text or text == self._last_partial:
            return []
        self._last_partial = text
        words = _words(data.get("partial_result"), self._segment_offset)
        return [AsrHypothesis(text=text, is_final=False, words=words, confidence=_confidence(words))]

    def end_segment(self) -> list[AsrHypothesis]:
        hyp = self._final(json.loads(self._rec.FinalResult()))
        self._last_partial = ""
        return [hyp]

    def _final(self, data: dict[str, Any]) -> AsrHypothesis:
        words = _words(data.get("result"), self._segment_offset)
        text = str(data.get("text", "")).strip()
        return AsrHypothesis(text=text, is_final=True, words=words, confidence=_confidence(words))

    def close(self) -> None:
        self._rec = None  # frees the native recognizer


class VoskEngine(AsrEngine):
    """One loaded `vosk.Model`, shared read-only by every channel's recognizer."""

    name = "vosk"

    def __init__(self, model_path: str | Path, sample_rate: int = 16000, partial_interval_s: float = 0.2) -> None:
        path = Path(model_path).expanduser()
        problem = vosk_model_problem(path)
        if problem:
            raise FileNotFoundError(f"Vosk model unusable: {problem}. Fetch one with `callcue models fetch`.")
        _quiet_vosk()
        import vosk

        self.model_path = path
        self.model_name = path.name if path.name != "model" else path.parent.name
        self.sample_rate = sample_rate
        self.partial_interval_s = partial_interval_s
        try:
            self._model = vosk.Model(str(path))
        except Exception as e:  # vosk raises a bare Exception("Failed to create a model")
            raise RuntimeError(f"Vosk could not load the model at {path}: {e}") from e

    def open_stream(self) -> VoskStream:
        return VoskStream(self._model, self.sample_rate, self.partial_interval_s)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "path": str(self.model_path), "partial_interval_s": self.partial_interval_s}


# -- registration (callcue.asr.registry) --------------------------------------------------


def _fix_vosk(looked: list[str]) -> str:
    from callcue.asr.model_store import DEFAULT_VOSK_MODEL

    return (
        "Looked in: " + "; ".join(looked) + ". Fix: run `callcue models fetch` (downloads "
        f"{DEFAULT_VOSK_MODEL} into ~/.cache/callcue/models; needs the internet), or set "
        "asr.vosk_model_path to an unzipped English Vosk model."
    )


def _find(cfg: Any, dirs: list[Path]) -> Any:
    from callcue.asr.model_store import find_vosk_model
    from callcue.asr.registry import EngineChoice, ModelNotFoundError, cfg_get

    configured = cfg_get(cfg, "vosk_model_path")
    if configured:
        path = Path(configured).expanduser()
        problem = vosk_model_problem(path)
        if problem:
            raise ModelNotFoundError(f"asr.vosk_model_path is set but unusable: {problem}. " + _fix_vosk([str(path)]))
        return EngineChoice("vosk", path, f"Using Vosk with the configured model {path}: native streaming, cheap partials.")
    found = find_vosk_model(dirs)
    if found is None:
        return None
    return EngineChoice("vosk", found, f"Using Vosk with {found.name} found at {found.parent}: native streaming, cheap partials.")


def _missing(cfg: Any, dirs: list[Path]) -> str:
    from callcue.asr.model_store import list_models

    broken = [m for m in list_models(dirs, include_packages=False) if m.engine == "vosk" and not m.verified]
    skipped = "".join(f" Skipped {m.path}: {m.problem}." for m in broken)
    return ("no usable English Vosk model (a folder named vosk-model-*en*) was found." + skipped + " "
            + _fix_vosk([str(d) for d in dirs]))  # fmt: skip


def _load(choice: Any, cfg: Any) -> VoskEngine:
    from callcue.asr.registry import cfg_get

    every = float(cfg_get(cfg, "vosk_partial_interval_s", 0.2) or 0.2)
    return VoskEngine(choice.model_path, partial_interval_s=every)


def _register() -> None:
    from callcue.asr.registry import EngineProvider, register

    register(EngineProvider("vosk", _find, _missing, _load, auto_rank=10))


_register()
