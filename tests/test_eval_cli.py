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
def test_eval_asr_quick_prints_wer_digits_and_rtf_per_set(tmp_path: Path) -> None:
    data = require_shared("speech", "manifest.jsonl").parents[1]
    out = tmp_path / "asr.json"
    p = _run("asr", "--quick", "--engines", "auto,whisper", "--data", str(data), "--json", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {(m.group(1), m.group(2)): m for m in re.finditer(
        r"^(auto_\(moonshine\)|whisper)\s+(\w+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)",
        p.stdout, re.MULTILINE)}
    sets = {"pocketsphinx", "cmu_arctic", "jfk", "vosk_example", "fsdd_8k", "telephone_sim"}
    assert {s for e, s in rows if e == "auto_(moonshine)"} == sets == {s for e, s in rows if e == "whisper"}, p.stdout
    for (_engine, name), m in rows.items():
        assert 1 <= int(m.group(3)) <= 2
        assert 0.005 < float(m.group(10)) < 10, f"RTF out of range: {m.group(0)}"
        assert float(m.group(11)) <= float(m.group(12))  # p50 <= p95
        assert (m.group(6) != "n/a") == (name == "fsdd_8k"), m.group(0)  # digit accuracy only where rows are digits
    assert float(rows[("auto_(moonshine)", "telephone_sim")].group(5)) < 30, p.stdout
    rep = json.loads(out.read_text())
    fsdd = next(e for e in rep["engines"] if e["label"] == "auto (moonshine)")["sets"]["fsdd_8k"]
    assert fsdd["digit_rows"] == 2 and fsdd["digit_accuracy_expected"] is not None


def test_eval_asr_reads_any_manifest_with_digit_rows(tmp_path: Path) -> None:
    """A folder of the shared format whatever its sets are called; `digits` rows are read back."""
    import soundfile as sf

    src = require_shared("speech", "vosk_example")
    (tmp_path / "speech" / "mine").mkdir(parents=True)
    wav = next(src.glob("*.wav"))
    audio, rate = sf.read(str(wav), dtype="int16")
    sf.write(str(tmp_path / "speech" / "mine" / "d.wav"), audio, rate, subtype="PCM_16")
    row = {"set": "my_digits", "id": "d1", "wav": "mine/d.wav", "text": "one zero zero zero one nine oh two one oh zero one eight zero three",
           "digits": "100019021001803", "sample_rate": rate, "duration_s": len(audio) / rate}
    (tmp_path / "speech" / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    out = tmp_path / "r.json"
    p = _run("asr", "--engines", "moonshine", "--data", str(tmp_path), "--json", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())["engines"][0]["sets"]["my_digits"]
    assert res["readback_rows"] == 1 and res["readback_exact"] == 1.0 and res["wer"] == 0.0, res


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
