"""Wire codecs (G.711 mu-law / A-law, linear 16-bit) and a streaming resampler.

Why here and nowhere else: ingress parsers keep audio in its wire encoding, so the one place
that knows how bytes become samples is this module. Everything downstream (VAD, ASR) sees
16-bit little-endian mono PCM. G.711 conversion uses the C implementation in `audioop`
(stdlib up to 3.12, the `audioop-lts` package from 3.13 on) rather than hand-written tables;
resampling uses libsoxr, whose streaming mode keeps filter state across the 20 ms chunks a
phone call arrives in, so chunk boundaries leave no clicks.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import soxr

with warnings.catch_warnings():
    # 3.11/3.12 warn that audioop leaves the stdlib; on >= 3.13 audioop-lts provides it.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "BYTES_PER_SAMPLE",
    "SILENCE_BYTE",
    "Resampler",
    "bytes_per_sample",
    "decode",
    "duration_seconds",
    "encode",
    "rms_dbfs",
    "silence",
]

#: bytes one sample occupies on the wire, per encoding name used in the protocols
BYTES_PER_SAMPLE: dict[str, int] = {"L16": 2, "PCMU": 1, "PCMA": 1}
#: the byte that encodes digital zero: 0xFF in mu-law, 0xD5 (0x55 with even-bit inversion) in A-law
SILENCE_BYTE: dict[str, int] = {"PCMU": 0xFF, "PCMA": 0xD5}

if sys.byteorder != "little":  # audioop works in native order; our PCM contract is little-endian
    raise ImportError("callcue.audio.codecs assumes a little-endian host")


def _check_encoding(encoding: str) -> None:
    if encoding not in BYTES_PER_SAMPLE:
        raise ValueError(f"unsupported encoding {encoding!r}; expected one of {sorted(BYTES_PER_SAMPLE)}")


def bytes_per_sample(encoding: str) -> int:
    _check_encoding(encoding)
    return BYTES_PER_SAMPLE[encoding]


def duration_seconds(nbytes: int, encoding: str, sample_rate: int) -> float:
    """Seconds of audio in `nbytes` of wire payload (mono)."""
    return nbytes / (bytes_per_sample(encoding) * sample_rate)


def decode(encoding: str, payload: bytes) -> bytes:
    """Wire payload -> 16-bit little-endian mono PCM.

    L16 must already be little-endian (the native protocol says so); an odd byte count means a
    torn sample, which we refuse rather than silently shifting every later sample by a byte.
    """
    _check_encoding(encoding)
    if encoding == "PCMU":
        return audioop.ulaw2lin(payload, 2)
    if encoding == "PCMA":
        return audioop.alaw2lin(payload, 2)
    if len(payload) % 2:
        raise ValueError(f"L16 payload has an odd byte count ({len(payload)}): 16-bit samples are 2 bytes")
    return bytes(payload)


def encode(encoding: str, pcm: bytes) -> bytes:
    """16-bit little-endian PCM -> wire payload (used by clients, simulators and tests)."""
    _check_encoding(encoding)
    if len(pcm) % 2:
        raise ValueError(f"PCM has an odd byte count ({len(pcm)}): 16-bit samples are 2 bytes")
    if encoding == "PCMU":
        return audioop.lin2ulaw(pcm, 2)
    if encoding == "PCMA":
        return audioop.lin2alaw(pcm, 2)
    return bytes(pcm)


def silence(encoding: str, seconds: float | None = None, sample_rate: int = 8000, *, samples: int | None = None) -> bytes:
    """Digital silence in the wire encoding, for filling gaps so the call clock stays true.

    Give either `seconds` (rounded to whole samples) or `samples`.
    """
    _check_encoding(encoding)
    if (seconds is None) == (samples is None):
        raise ValueError("give exactly one of seconds= or samples=")
    n = samples if samples is not None else round(float(seconds) * sample_rate)  # type: ignore[arg-type]
    if n < 0:
        raise ValueError(f"silence length must be >= 0, got {n} samples")
    if encoding == "L16":
        return bytes(2 * n)
    return bytes([SILENCE_BYTE[encoding]]) * n


def rms_dbfs(pcm: bytes) -> float:
    """Level of 16-bit PCM in dB relative to full scale (digital silence gives -120)."""
    if not pcm:
        return -120.0
    rms = audioop.rms(pcm, 2)
    return 20.0 * math.log10(rms / 32768.0) if rms > 0 else -120.0


def _to_int16(y: np.ndarray) -> bytes:
    """Round to nearest and clip, as soxr's own int16 output would, without its dither."""
    return np.clip(np.rint(y * 32768.0), -32768, 32767).astype("<i2").tobytes()


class Resampler:
    """Streaming int16 mono resampler (libsoxr) that keeps filter state across chunks.

    soxr has an algorithmic delay: early chunks return fewer samples than their share and
    `flush()` returns the tail, so the total output equals the one-shot result length. Callers
    that count time must count *input* samples (the call clock), not output samples.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        self._passthrough = in_rate == out_rate
        # float32 inside, int16 at the edges: libsoxr dithers int16 output with a seed taken
        # from the clock and an address, so the same call resampled twice differed and VAD
        # onsets moved by a few hundred ms from run to run; float32 has no dither
        self._stream = None if self._passthrough else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        self._flushed = False
        self.samples_in = 0
        self.samples_out = 0

    def process(self, pcm: bytes) -> bytes:
        """Resample one chunk of 16-bit LE PCM; may return fewer bytes than expected (delay)."""
        if self._flushed:
            raise RuntimeError("Resampler.process() after flush(); create a new Resampler or call reset()")
        if len(pcm) % 2:
            raise ValueError(f"PCM chunk has an odd byte count ({len(pcm)}): 16-bit samples are 2 bytes")
        self.samples_in += len(pcm) // 2
        if self._passthrough:
            self.samples_out += len(pcm) // 2
            return bytes(pcm)
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * (1.0 / 32768.0)
        y = self._stream.resample_chunk(x)  # type: ignore[union-attr]
        self.samples_out += len(y)
        return _to_int16(y)

    def flush(self) -> bytes:
        """Drain the filter tail at end of stream; later `process` calls are an error."""
        if self._flushed:
            return b""
        self._flushed = True
        if self._passthrough:
            return b""
        y = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)  # type: ignore[union-attr]
        self.samples_out += len(y)
        return _to_int16(y)

    def reset(self) -> None:
        """Start a fresh stream with the same rates (cheaper than building a new filter)."""
        if self._stream is not None:
            self._stream.clear()
        self._flushed = False
        self.samples_in = 0
        self.samples_out = 0
