"""A call's recording, redacted before it is written: both parties' audio as two channels,
held in memory for `hold_s` of call time so that a card number, security code or SSN spoken
aloud is silenced (from the masked words' times and the redaction signals' spans) before the
audio reaches the disk; then written, sealed, in chunks (store/recordings.py).

Why hold and not redact afterwards: PCI DSS forbids storing a security code after the call
in any form, encrypted or not, so the unredacted audio may never be written. A number whose
words are recognised later than `hold_s` after they were said is silenced only if the
recogniser caught up in time; `hold_s` (30 s) is longer than any final takes here.
Recording paused (the secure payment hand-off, or the agent's own pause) writes silence for
the paused span, so the recording's clock stays the call's.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from callcue.store.recordings import RecordingWriter

log = logging.getLogger(__name__)

#: seconds of margin silenced around each redacted span (word times are estimates)
MARGIN_S = 0.25


class CallRecorder:
    def __init__(self, writer: RecordingWriter, channels: list[str], rate: int, hold_s: float = 30.0,
                 unredacted: RecordingWriter | None = None) -> None:  # fmt: skip
        """`unredacted`: where the copy nothing is silenced in goes (`[recording]
        keep_unredacted`, for a role granted `read_unredacted`); pauses apply to it too."""
        self.writer = writer
        self.twin = CallRecorder(unredacted, channels, rate, hold_s=5.0) if unredacted is not None else None
        self.channels = channels
        self.rate = rate
        self.hold = int(hold_s * rate)
        self._lock = threading.Lock()
        # per channel: samples in memory, from call-clock sample `_start` on
        self._buf = {ch: np.zeros(0, dtype=np.int16) for ch in channels}
        self._start = 0  # first sample still in memory (same for every channel)
        self._paused_since: int | None = None
        self.silenced: list[tuple[float, float]] = []
        self.written = 0  # samples per channel on disk

    # ---------------------------------------------------------------- audio in (decoder threads)
    def audio(self, channel: str, offset_s: float, pcm: bytes) -> None:
        if channel not in self._buf:
            return
        if self.twin is not None:
            self.twin.audio(channel, offset_s, pcm)
        x = np.frombuffer(pcm, dtype=np.int16)
        at = int(round(offset_s * self.rate))
        with self._lock:
            buf = self._buf[channel]
            end = self._start + len(buf)
            if at > end:  # a gap (silence the platform did not send): keep the clock
                buf = np.concatenate([buf, np.zeros(at - end, dtype=np.int16)])
            elif at < end:  # overlap (a resumed stream): the newer audio wins from `at`
                buf = buf[: max(0, at - self._start)]
            if self._paused_since is not None:
                x = np.zeros_like(x)
            self._buf[channel] = np.concatenate([buf, x])
            self._flush_locked(final=False)

    # ---------------------------------------------------------------- redaction and pauses
    def silence(self, start_s: float, end_s: float, channels: list[str] | None = None) -> bool:
        """Silence a span (call-clock seconds); False if part of it was already written."""
        a = int(max(0.0, start_s - MARGIN_S) * self.rate)
        b = int((end_s + MARGIN_S) * self.rate)
        with self._lock:
            late = a < self._start
            if late:
                log.warning("a redacted span reached the recorder after its audio was written (%.1f-%.1f s)", start_s, end_s)
            for ch in channels or self.channels:
                buf = self._buf.get(ch)
                if buf is None:
                    continue
                lo, hi = max(0, a - self._start), max(0, min(len(buf), b - self._start))
                if hi > lo:
                    buf[lo:hi] = 0  # the array is ours (made by concatenate)
            self.silenced.append((start_s, end_s))
            return not late

    def pause(self, paused: bool) -> None:
        if self.twin is not None:
            self.twin.pause(paused)
        with self._lock:
            if paused and self._paused_since is None:
                self._paused_since = self._start + max((len(b) for b in self._buf.values()), default=0)
            elif not paused:
                self._paused_since = None

    # ---------------------------------------------------------------- out to disk
    def _flush_locked(self, final: bool) -> None:
        longest = max((len(b) for b in self._buf.values()), default=0)
        keep = 0 if final else self.hold
        n = longest - keep
        if n <= (0 if final else self.rate * 5):  # write in chunks of at least 5 s
            return
        frames = np.zeros((n, len(self.channels)), dtype=np.int16)
        for i, ch in enumerate(self.channels):
            part = self._buf[ch][:n]
            frames[: len(part), i] = part
            self._buf[ch] = self._buf[ch][n:].copy()
        self._start += n
        try:
            self.writer.write(frames)
            self.written += n
        except Exception:
            log.exception("writing the recording failed", extra={"call_id": self.writer.call_id})

    def close(self) -> None:
        if self.twin is not None:
            self.twin.close()
        with self._lock:
            self._flush_locked(final=True)
