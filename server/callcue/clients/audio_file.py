"""Reading call recordings: the formats and channel layouts telephony recorders write."""

from __future__ import annotations

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


#: which recorded channel is which party, for the common recording layouts
LAYOUTS: dict[str, tuple[Channel, ...]] = {
    "stereo": ("customer", "agent"),  # customer left, agent right (most recorders, CallCue's own)
    "stereo-agent-left": ("agent", "customer"),
    "mono": ("customer",),  # one mixed or customer-only channel
    "mono-agent": ("agent",),
}


def read_call_audio(path: str | Path, target_rates: tuple[int, ...] = (8000, 16000), layout: str | None = None) -> CallAudio:
    """A recording as the pipeline takes it: int16 per party at 8 or 16 kHz.

    Read with libsndfile (the `soundfile` package), so the formats telephony recorders write
    all work: 16-bit PCM, mu-law and A-law WAV (what most PBX recorders store), 8/24/32-bit and
    float PCM, FLAC. `layout` says which channel is which party (LAYOUTS); by default mono is
    the customer and stereo is customer left, agent right.
    """
    import soundfile

    p = Path(path)
    try:
        data, rate = soundfile.read(str(p), dtype="int16", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError) as e:
        raise ValueError(f"{p}: not an audio file CallCue can read ({e})") from e
    nch = data.shape[1]
    if nch not in (1, 2):
        raise ValueError(f"{p}: {nch} channels; expected mono (customer) or stereo (customer left, agent right)")
    names = LAYOUTS.get(layout or ("stereo" if nch == 2 else "mono"))
    if names is None:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    if len(names) != nch:
        raise ValueError(f"{p}: layout {layout} needs {len(names)} channel(s), the file has {nch}")
    if rate not in target_rates:  # resample to the nearest supported telephony rate
        new = 16000 if rate > 8000 else 8000
        data = soxr.resample(data, rate, new, quality="HQ").astype(np.int16).reshape(-1, nch)
        rate = new
    chans: dict[Channel, np.ndarray] = {name: np.ascontiguousarray(data[:, i]) for i, name in enumerate(names)}
    return CallAudio(rate, dict(sorted(chans.items(), key=lambda kv: kv[0] != "customer")))
