"""Which ASR engine the server runs, and a sentence saying why (logged at startup).

`asr.engine = "auto"` takes the registered engines by rank (`registry.py`): an English Vosk
model when one is configured or found (it streams natively, partials nearly free), else
Moonshine base English (shipped by PyPI `moonshine-cpp`, prepared once: the most accurate
engine here at a quarter of Whisper's CPU), else Whisper tiny.en. An explicitly requested
engine never silently falls back: a missing model is an error that says where we looked and
how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from callcue.asr.model_store import model_search_dirs
from callcue.asr.registry import (
    EngineChoice,
    LoadedEngine,
    ModelNotFoundError,
    auto_order,
    cfg_get,
    engine_names,
    providers,
)

__all__ = ["EngineChoice", "LoadedEngine", "ModelNotFoundError", "choose_engine", "load_engine"]


def choose_engine(cfg: Any, search_dirs: Iterable[str | Path] | None = None) -> EngineChoice:
    """Decide engine and model path without loading anything (cheap; used by `models list`)."""
    engine = cfg_get(cfg, "engine", "auto") or "auto"
    known = providers()
    if engine not in known and engine != "auto":
        raise ValueError(f"asr.engine must be one of {', '.join(engine_names())}, got {engine!r}")
    dirs = model_search_dirs() if search_dirs is None else [Path(d) for d in search_dirs]
    if engine != "auto":
        provider = known[engine]
        choice = provider.find(cfg, dirs)
        if choice is None:
            raise ModelNotFoundError(provider.missing(cfg, dirs))
        return EngineChoice(choice.engine, choice.model_path, f'{choice.reason} (asr.engine = "{engine}")')
    passed: list[str] = []
    for provider in auto_order():
        try:
            choice = provider.find(cfg, dirs)
        except ModelNotFoundError:
            raise  # a configured model path that is broken is an error, not a fallback
        if choice is not None:
            skipped = f" (asr.engine=auto; not used: {'; '.join(passed)})" if passed else " (asr.engine=auto)"
            return EngineChoice(choice.engine, choice.model_path, choice.reason + skipped)
        passed.append(f"{provider.name}: {provider.missing(cfg, dirs)}")
    raise ModelNotFoundError("no ASR engine has a usable model. " + " ".join(passed))


def load_engine(cfg: Any, search_dirs: Iterable[str | Path] | None = None) -> LoadedEngine:
    """Choose and load the engine (blocking: seconds of model loading; run it before serving
    or in an executor). Returns `(engine, reason)`; log the reason at startup."""
    choice = choose_engine(cfg, search_dirs)
    engine = providers()[choice.engine].load(choice, cfg)
    workers = getattr(engine, "num_workers", None)
    return LoadedEngine(engine, f"{choice.reason} ({workers} parallel decodes)" if workers else choice.reason)
