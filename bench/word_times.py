"""Word times inside a Moonshine final against Whisper's word alignment, on the shared clips.

Moonshine's decoder emits no timestamps; CallCue shares each piece's voiced 10 ms frames
among its words by letter count (`proportional_word_times`). Whisper tiny.en's cross-attention
alignment (`transcribe(word_timestamps=True)`) is the reference here: not ground truth, but
the times the QA rules and the summary's evidence had before. Each clip is one segment, as the
VAD would cut it (pre-roll and hang-over included); words are paired by their normalized text
(difflib on the two word sequences), and the report gives the start and end differences of
the paired words, p50/p90/p99, per band.

    .venv/bin/python bench/word_times.py [--sets pocketsphinx,cmu_arctic,jfk,telephone_sim] [--json FILE]
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--sets", default="pocketsphinx,cmu_arctic,jfk,vosk_example,telephone_sim")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from faster_whisper import WhisperModel

    from callcue.asr.moonshine_engine import MoonshineEngine
    from callcue.asr.whisper_engine import default_whisper_model_path
    from callcue.evaluation.asr_eval import load_manifest, normalize

    moon = MoonshineEngine(threads=1)
    whisper = WhisperModel(str(default_whisper_model_path()), device="cpu", compute_type="int8", cpu_threads=1)
    by_set = load_manifest(Path(a.data), sets=a.sets.split(","))
    out: dict[str, dict[str, float]] = {}
    for name, clips in by_set.items():
        d_start: list[float] = []
        d_end: list[float] = []
        for c in clips:
            audio, rate = sf.read(str(c.path), dtype="float32")
            audio = soxr.resample(audio, rate, 16000) if rate != 16000 else audio
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
            stream = moon.open_stream()
            for i in range(0, len(pcm), 640):
                stream.accept(pcm[i : i + 640], allow_partial=False)
            mine = stream.end_segment()[0].words
            segs, _ = whisper.transcribe(audio, language="en", word_timestamps=True, beam_size=2, vad_filter=False)
            ref = [w for s in segs for w in (s.words or [])]
            a_words = [normalize(w.text) for w in mine]
            b_words = [normalize(w.word) for w in ref]
            for blk in difflib.SequenceMatcher(a=a_words, b=b_words, autojunk=False).get_matching_blocks():
                for k in range(blk.size):
                    m, r = mine[blk.a + k], ref[blk.b + k]
                    d_start.append(abs(m.start - float(r.start)))
                    d_end.append(abs(m.end - float(r.end)))
        pct = lambda xs, q: float(np.percentile(xs, q)) if xs else float("nan")
        out[name] = {"words": len(d_start), "start_p50": pct(d_start, 50), "start_p90": pct(d_start, 90),
                     "start_p99": pct(d_start, 99), "end_p50": pct(d_end, 50), "end_p90": pct(d_end, 90)}  # fmt: skip
    moon.close()
    print(f"word times: Moonshine (voiced frames shared by letters) vs Whisper tiny.en alignment, seconds; load {os.getloadavg()[0]:.1f}")
    print("| set | paired words | start p50 | start p90 | start p99 | end p50 | end p90 |")
    print("|---|---|---|---|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {r['words']} | {r['start_p50']:.2f} | {r['start_p90']:.2f} | {r['start_p99']:.2f} | "
              f"{r['end_p50']:.2f} | {r['end_p90']:.2f} |")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "server"))
    raise SystemExit(main())
