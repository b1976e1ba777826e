"""The ASR engines the server knows: each is one module that registers one `EngineProvider`.

Why a registry: choosing an engine used to be spread over `select.py` (one branch per engine)
and `config.py` (a hard-coded list). Now an engine is its module plus its line in `BUILTIN`;
`asr.engine` accepts any registered name, `auto` walks providers by `auto_rank`, and
`callcue models` lists what each provider finds. Registration is explicit and in one place
(no entry-point scanning), so what a server can run is visible here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from callcue.asr.base import AsrEngine

#: the engine modules; each calls `register` once when imported
BUILTIN = (
    "callcue.asr.vosk_engine",
    "callcue.asr.moonshine_engine",
    "callcue.asr.whisper_engine",
    "callcue.asr.off_engine",
)


class ModelNotFoundError(FileNotFoundError):
    """The configured engine has no usable model; the message is meant for the operator."""


@dataclass(frozen=True, slots=True)
class EngineChoice:
    engine: str
    model_path: Path
    reason: str


class LoadedEngine(NamedTuple):
    engine: AsrEngine
    reason: str


@dataclass(frozen=True, slots=True)
class EngineProvider:
    """What the server needs to know of an engine before loading it.

    `find(cfg, dirs)`: the model this engine would use, or None when it has none (cheap: no
    loading). `missing(cfg, dirs)`: when asked for explicitly and `find` found nothing, the
    operator's error (where it looked, how to fix). `load(choice, cfg)`: the loaded engine
    (blocking, seconds). `auto_rank`: lower wins under `asr.engine = "auto"`; None: never
    picked by auto. `auto_reason(choice)`: why auto picked it, for the startup log.
    """

    name: str
    find: Callable[[Any, list[Path]], EngineChoice | None]
    missing: Callable[[Any, list[Path]], str]
    load: Callable[[EngineChoice, Any], AsrEngine]
    auto_rank: int | None = None


_PROVIDERS: dict[str, EngineProvider] = {}
_loaded = False


def register(provider: EngineProvider) -> None:
    if provider.name in ("auto",) or not provider.name.isidentifier():
        raise ValueError(f"bad engine name {provider.name!r}")
    _PROVIDERS[provider.name] = provider


def providers() -> dict[str, EngineProvider]:
    global _loaded
    if not _loaded:
        for module in BUILTIN:
            importlib.import_module(module)
        _loaded = True
    return dict(_PROVIDERS)


def engine_names() -> list[str]:
    return ["auto", *providers()]


def auto_order() -> list[EngineProvider]:
    return sorted((p for p in providers().values() if p.auto_rank is not None), key=lambda p: p.auto_rank or 0)


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """Read the asr config from the pydantic `AsrConfig`, a dataclass, or a plain dict."""
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def threads_of(cfg: Any) -> int:
    return int(cfg_get(cfg, "threads", 0) or 0)
