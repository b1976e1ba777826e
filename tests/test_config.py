"""A bad config must stop the server with a message naming the key and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from callcue.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_is_valid() -> None:
    s = load_settings(REPO / "config" / "callcue.toml")
    assert s.server.port == 8080
    assert {t.role for t in s.auth.tokens} == {"agent", "supervisor", "qa", "admin", "auditor"}
    assert s.resolve("phrases.yaml").exists()


@pytest.mark.parametrize(
    ("toml", "expect"),
    [
        ("[asr]\nengin = 'vosk'\n", "asr.engin: unknown key"),
        ("[asr]\nengine = 'kaldi engine'\n", "asr.engine: Value error, asr.engine must be an engine name"),
        ("[server]\nport = 70000\n", "server.port: Input should be less than or equal to 65535"),
        ("[vad]\nframe_ms = 25\n", "vad.frame_ms"),
        ("[storage]\nurl = 'mysql://x'\n", "storage.url: Value error, must start with sqlite:/// or postgresql://"),
        ("[[auth.tokens]]\ntoken = 'short'\nuser_id = 'a'\n", "auth.tokens.0.token"),
        ("[server\nport=1\n", "invalid TOML"),
    ],
)
def test_bad_config_names_key(tmp_path: Path, toml: str, expect: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as ei:
        load_settings(p)
    assert expect in str(ei.value)
    assert str(p) in str(ei.value)


def test_serve_refuses_bad_config(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[pipeline]\nqueue_max_second = 3\n")
    r = subprocess.run([sys.executable, "-m", "callcue.cli", "serve", "--config", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "pipeline.queue_max_second: unknown key" in r.stderr


def test_serve_refuses_an_unknown_engine_in_one_line(tmp_path: Path) -> None:
    p = tmp_path / "kaldi.toml"
    p.write_text("[asr]\nengine = 'kaldi'\n")
    r = subprocess.run([sys.executable, "-m", "callcue.cli", "serve", "--config", str(p), "--port", "0"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "asr.engine must be one of auto" in r.stderr
    assert "moonshine" in r.stderr and "kaldi" in r.stderr


def test_example_configs_are_valid_and_point_at_real_files() -> None:
    for p in sorted((REPO / "config" / "examples").glob("*.toml")):
        s = load_settings(p)
        for name in (s.understanding.phrases_file, s.understanding.intents_file, s.understanding.entities_file,
                     s.understanding.risks_file, s.decision.playbooks_dir):
            assert s.resolve(name).exists(), f"{p.name}: {name} does not exist"


def test_serve_exits_non_zero_when_start_up_fails(tmp_path: Path) -> None:
    """A config that parses but cannot start (its playbook folder is gone) ends the process
    with a non-zero status naming the cause, instead of leaving it alive and deaf."""
    src = (REPO / "config" / "callcue.toml").read_text()
    p = tmp_path / "callcue.toml"
    p.write_text(src.replace('playbooks_dir = "playbooks"', f'playbooks_dir = "{tmp_path}/missing"'))
    for f in (REPO / "config").glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text())
    r = subprocess.run([sys.executable, "-m", "callcue.cli", "serve", "--config", str(p), "--port", "0", "--audiosocket-port", "0",
                        "--storage-url", f"sqlite:///{tmp_path}/s.db"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "playbook directory not found" in r.stderr
