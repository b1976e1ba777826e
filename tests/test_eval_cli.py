"""`callcue eval asr|latency|all` as a user runs them: subprocesses, tables parsed from stdout.

Why subprocesses: the point of issue 3's evaluation is that one command prints the numbers from
a clean checkout, so the test runs the installed entry point, not the functions, and checks
the printed numbers are in sane ranges (so a broken engine or a detector gone slow fails).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require_shared

CLI = [sys.executable, "-m", "callcue.cli", "eval"]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def test_normalize_compares_words_not_spelling() -> None:
    from callcue.evaluation.asr_eval import normalize, wer

    assert normalize("For the 20th time, Tom!") == "for the twentieth time tom"
    assert normalize("1000-1902") == normalize("one zero zero zero one nine oh two")
    assert wer(["ten of clubs"], ["Ten of clubs."]) == 0.0
    assert wer(["ten of clubs"], ["ten of"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no non-empty references"):
        wer([""], ["x"])


def test_missing_data_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    for cmd in ("asr", "latency", "all"):
        p = _run(cmd, "--quick", "--data", str(tmp_path / "nope"), timeout=60)
        assert p.returncode == 2, (cmd, p.stdout, p.stderr)
        assert "data directory" in p.stderr and "nope" in p.stderr


def test_unknown_engine_is_refused(tmp_path: Path) -> None:
    p = _run("asr", "--engines", "kaldi", "--data", str(tmp_path), timeout=60)
    assert p.returncode == 2 and "kaldi" in p.stderr


@pytest.mark.slow
def test_eval_asr_quick_prints_wer_and_rtf_per_band() -> None:
    data = require_shared("speech", "manifest.jsonl").parents[1]
    p = _run("asr", "--quick", "--engines", "whisper", "--data", str(data))
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {m.group(1): m for m in re.finditer(
        r"^whisper\s+(16k|telephone)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", p.stdout, re.MULTILINE)}
    assert set(rows) == {"16k", "telephone"}, p.stdout
    wer16, wer8 = float(rows["16k"].group(4)), float(rows["telephone"].group(4))
    assert 0 <= wer16 < 30, p.stdout
    assert 0 <= wer8 < 50, p.stdout
    for m in rows.values():
        assert int(m.group(2)) == 2
        assert 0.01 < float(m.group(5)) < 10, f"RTF out of range: {m.group(0)}"
        assert float(m.group(6)) <= float(m.group(7))  # p50 <= p95
    assert "WER per set" in p.stdout


@pytest.mark.slow
def test_eval_latency_quick_prints_every_detector_and_the_load_run() -> None:
    data = require_shared("dialogues").parent
    p = _run("latency", "--quick", "--calls", "50", "--seconds", "4", "--data", str(data))
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    assert "pinned to CPU" in out
    stages = {}
    for m in re.finditer(r"^(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", out, re.MULTILINE):
        stages[m.group(1)] = [float(x) for x in m.groups()[1:]]
    for name in ("redact", "phrases", "intent", "entities", "churn", "total"):
        assert name in stages, out
    _, p50, p95 = stages["total"][:3]
    assert 0 < p50 <= p95 < 2000, out  # ms; a detector that takes seconds per update is a bug
    assert stages["intent"][2] > 0  # the encoder really ran on some partials
    m = re.search(r"under 50 concurrent calls.*?(\d+) updates in", out, re.DOTALL)
    assert m and int(m.group(1)) > 50, out
    assert re.search(r"partial: p50 [\d.]+ ms\s+p95 [\d.]+ ms\s+p99 [\d.]+ ms", out)
    assert re.search(r"50 ms budget \(partial p95\): (MET|NOT MET)", out)


def test_eval_qa_prints_per_question_accuracy_against_the_truth(tmp_path: Path) -> None:
    require_shared("dialogues", "sgd_banking")
    out = tmp_path / "qa.json"
    p = _run("qa", "--n", "16", "--json", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "16 interactions (text, real banking dialogues)" in p.stdout
    result = json.loads(out.read_text())
    q = result["questions"]
    assert set(q) == {"recording_notice", "verified_before_details", "no_prohibited_promise", "empathy_on_complaint"}
    # each of the 16 behaviour combinations once: every question has both truths to get right
    for name, row in q.items():
        assert row["n"] == 16 and {r["truth"][name] for r in result["rows"]} == {"yes", "no"}
        assert re.search(rf"^{name}\s+16\s+{row['accuracy']:.3f}", p.stdout, re.MULTILINE), p.stdout
    assert q["no_prohibited_promise"]["accuracy"] >= 0.75 and q["verified_before_details"]["accuracy"] >= 0.75
