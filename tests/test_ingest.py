"""`callcue ingest`: a folder of recordings (telephony formats and layouts) through the real
pipeline in a subprocess, scored and summarized, one JSON object per call; a second run
resumes (skips what is done); a broken file fails alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from callcue.clients.audio_file import read_call_audio
from tests.conftest import require_shared

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "server" / "callcue" / "data" / "demo_call.wav"


def _ingest(tmp_path: Path, *args: str) -> tuple[int, list[dict], str]:
    p = subprocess.run([sys.executable, "-m", "callcue.cli", "ingest", *args, "--json",
                        "--storage-url", f"sqlite:///{tmp_path}/ingest.db"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    return p.returncode, [json.loads(line) for line in p.stdout.splitlines() if line.strip()], p.stderr


@pytest.mark.slow
def test_a_folder_of_recordings_is_ingested_scored_and_resumed(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    (folder / "day1").mkdir(parents=True)
    shutil.copy(DEMO, folder / "demo_stereo.wav")
    jfk, rate = sf.read(require_shared("speech", "telephone_sim", "jfk__jfk.wav"), dtype="int16")
    sf.write(folder / "day1" / "jfk_ulaw.wav", jfk, rate, subtype="ULAW")  # what PBX recorders store
    (folder / "day1" / "broken.wav").write_bytes(b"not audio at all")
    code, out, err = _ingest(tmp_path, str(folder), "--jobs", "2")
    assert code == 1, err  # one file failed
    by = {Path(r["source"]).name: r for r in out}
    assert set(by) == {"demo_stereo.wav", "jfk_ulaw.wav", "broken.wav"}, out
    assert by["broken.wav"]["status"] == "failed" and "not an audio file" in by["broken.wav"]["error"]
    demo, jfk_r = by["demo_stereo.wav"], by["jfk_ulaw.wav"]
    assert demo["status"] == jfk_r["status"] == "ingested"
    assert demo["scorecard"]["card_id"] == "bank_telco" and demo["scorecard"]["answers"][0]["evidence"]
    assert demo["summary"]["outcome"]["outcome"] == "escalated" and set(demo["summary"]["talk"]) == {"customer", "agent"}
    assert jfk_r["finals"] >= 1 and set(jfk_r["summary"]["talk"]) == {"customer"}  # mono: the customer
    assert "2 of 3 recordings done, 1 failed" in err
    # resumable: what is done is skipped (same ids), the broken file is tried again
    code2, again, _ = _ingest(tmp_path, str(folder))
    by2 = {Path(r["source"]).name: r for r in again}
    assert by2["demo_stereo.wav"]["status"] == "already_ingested" and by2["demo_stereo.wav"]["call_id"] == demo["call_id"]
    assert by2["demo_stereo.wav"]["scorecard"]["score"] == demo["scorecard"]["score"]
    assert code2 == 1 and by2["broken.wav"]["status"] == "failed"


def test_layouts_say_which_channel_is_which_party(tmp_path: Path) -> None:
    left, right = np.full(800, 1000, np.int16), np.full(800, -1000, np.int16)
    path = tmp_path / "s.wav"
    sf.write(path, np.stack([left, right], axis=1), 8000, subtype="ALAW")
    default = read_call_audio(path)
    swapped = read_call_audio(path, layout="stereo-agent-left")
    assert default.channels["customer"][10] > 0 > default.channels["agent"][10]
    assert swapped.channels["customer"][10] < 0 < swapped.channels["agent"][10]
    with pytest.raises(ValueError, match="layout mono needs 1 channel"):
        read_call_audio(path, layout="mono")
    with pytest.raises(ValueError, match="unknown layout"):
        read_call_audio(path, layout="quad")
