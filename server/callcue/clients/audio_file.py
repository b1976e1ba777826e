"""Reading call recordings for replay: mono = customer, stereo = customer left / agent right."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from callcue.events import Channel


@dataclass
class CallAudio:
    sample_rate: int
    channels: dict[Channel, np.ndarray]  # int16 mono per channel

    @property
    def duration(self) -> float:
        return max(len(a) for a in self.channels.values()) / self.sample_rate

    def chunks(self, ms: int = 20) -> list[tuple[float, dict[Channel, bytes]]]:
        """(offset seconds, {channel: pcm16 bytes}) every `ms` milliseconds."""
        step = self.sample_rate * ms // 1000
        n = max(len(a) for a in self.channels.values())
        out = []
        for i in range(0, n, step):
            out.append((i / self.sample_rate, {ch: a[i:i + step].tobytes() for ch, a in self.channels.items() if len(a[i:i + step])}))
        return out


def read_call_audio(path: str | Path, target_rates: tuple[int, ...] = (8000, 16000)) -> CallAudio:
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as w:
            nch, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as e:
        raise ValueError(f"{p}: not a PCM WAV file ({e})") from e
    if width != 2:
        raise ValueError(f"{p}: {8 * width}-bit samples; CallCue replays 16-bit PCM WAV")
    if nch not in (1, 2):
        raise ValueError(f"{p}: {nch} channels; expected mono (customer) or stereo (customer left, agent right)")
    data = np.frombuffer(raw, dtype="<i2").reshape(-1, nch)
    if rate not in target_rates:  # resample to the nearest supported telephony rate
        new = 16000 if rate > 8000 else 8000
        data = soxr.resample(data, rate, new, quality="HQ").astype(np.int16).reshape(-1, nch)
        rate = new
    chans: dict[Channel, np.ndarray] = {"customer": np.ascontiguousarray(data[:, 0])}
    if nch == 2:
        chans["agent"] = np.ascontiguousarray(data[:, 1])
    return CallAudio(rate, chans)
