"""Times for words a decoder gave without them, and where to cut a long segment.

Moonshine emits no timestamps (no cross-attention output), so word times inside a final come
from the audio: each piece's voiced 10 ms frames shared among its words by letter count. The
error against Whisper's alignment is measured by bench/word_times.py (docs/asr.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RATE = 16000

def voiced_frames(audio: np.ndarray, frame_s: float = 0.01) -> np.ndarray:
    """Per 10 ms frame, whether it carries speech energy (relative to the piece's own range,
    so a quiet telephone leg and a loud one are judged alike)."""
    n = max(1, int(frame_s * RATE))
    frames = len(audio) // n
    if frames == 0:
        return np.zeros(0, dtype=bool)
    energy = np.sqrt(np.mean(audio[: frames * n].reshape(frames, n) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(energy)
    floor, peak = np.percentile(db, 10), np.percentile(db, 95)
    return db > floor + 0.35 * (peak - floor)


def proportional_word_times(words: Sequence[str], audio: np.ndarray, offset_s: float = 0.0) -> list[tuple[float, float]]:
    """(start, end) per word: the piece's voiced frames shared out by letter count.

    Why voiced frames and not the whole piece: pauses between phrases take no share, so a
    word after a pause starts after it. Each word's weight is its letters plus one (short
    words still take time); a digit string counts as its spoken length.
    """
    if not words:
        return []
    voiced = voiced_frames(audio)
    if not voiced.any():
        voiced = np.ones(max(1, len(audio) // (RATE // 100)), dtype=bool)
    times = np.flatnonzero(voiced) * 0.01
    weights = np.array([_spoken_weight(w) for w in words], dtype=np.float64)
    edges = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
    idx = np.minimum((edges * len(times)).astype(int), len(times) - 1)
    out = []
    for k in range(len(words)):
        start = times[idx[k]]
        end = times[max(idx[k], idx[k + 1] - 1)] + 0.01 if k + 1 < len(words) else times[-1] + 0.01
        out.append((offset_s + float(start), offset_s + float(max(end, start + 0.01))))
    return out


def _spoken_weight(word: str) -> float:
    letters = sum(c.isalpha() for c in word)
    digits = sum(c.isdigit() for c in word)
    return 1.0 + letters + 4.0 * digits  # a digit is spoken as a word of about four letters


def quietest_cut(audio: np.ndarray, lo_s: float, hi_s: float) -> int:
    """Sample index of the middle of the quietest 200 ms between `lo_s` and `hi_s`."""
    frame = RATE // 100
    lo, hi = int(lo_s * 100), int(hi_s * 100)
    frames = len(audio) // frame
    hi = min(hi, frames)
    if hi - lo < 20:
        return int(lo_s * RATE)
    energy = np.mean(audio[: frames * frame].reshape(frames, frame) ** 2, axis=1)[lo:hi]
    window = np.convolve(energy, np.ones(20), mode="valid")
    best = int(np.argmin(window))
    return (lo + best + 10) * frame
