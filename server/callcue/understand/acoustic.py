"""How the call sounds: talk-over, dead air / long holds, speaking rate, loudness spikes.

Computed from the audio itself (and, for speaking rate, from final transcripts' word times),
so these signals exist even when ASR is wrong. One `AcousticMonitor` per call; the pipeline
calls `feed` for every 10-30 ms frame of each channel after VAD. Per frame the work is one
numpy RMS over a few hundred samples (~10 us), so the monitor runs on the event loop.

Why these choices:
- Speech runs use a short VAD hangover, because webrtcvad flickers inside words and a
  flicker must not end a run (or split one talk-over into many).
- Dead air is judged against the *slower* channel's clock: the two channels' frames arrive
  independently, and silence is only known up to where both have been heard.
- Loudness is relative to the speaker's own running baseline (phones, headsets and people
  differ by 20 dB), smoothed over ~100 ms so single plosives do not count as shouting.

Signals: kind="acoustic", names "talk_over", "dead_air", "long_hold", "loudness_spike",
"speaking_fast", "speaking_slow" (each raised once per episode / state change).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from callcue.events import CHANNELS, Channel, Evidence, Signal, Transcript
from callcue.understand.base import AudioFrame, CallContext, Detector
from callcue.understand.common import load_risk_config

DBFS_FLOOR = -100.0


def frame_dbfs(pcm16: bytes) -> float:
    """RMS level of 16-bit little-endian mono PCM in dB relative to full scale."""
    if len(pcm16) % 2:
        raise ValueError(f"pcm16 must have an even number of bytes, got {len(pcm16)}")
    x = np.frombuffer(pcm16, dtype="<i2").astype(np.float32)
    if x.size == 0:
        return DBFS_FLOOR
    ms = float(np.mean(x * x))
    return DBFS_FLOOR if ms <= 0 else max(DBFS_FLOOR, 10.0 * math.log10(ms / (32768.0 * 32768.0)))


@dataclass
class _Chan:
    fed_until: float = 0.0
    fed_any: bool = False
    run_start: float | None = None  # current speech run (VAD + hangover)
    last_speech_end: float | None = None
    # loudness: ~100 ms energy smoothing, then a baseline over the speaker's speech frames
    recent_energy: deque[tuple[float, float]] = field(default_factory=deque)  # (mean square, seconds)
    levels: deque[float] = field(default_factory=deque)  # smoothed dBFS of recent speech frames
    level_durs: deque[float] = field(default_factory=deque)
    levels_s: float = 0.0
    baseline_db: float | None = None
    baseline_at: float = 0.0  # speech seconds when the baseline was last recomputed
    speech_s: float = 0.0
    spike_start: float | None = None
    spike_peak: float = DBFS_FLOOR
    spike_emitted: bool = False
    spike_last: float = 0.0
    # speaking rate: (words, speaking seconds, end time) per final
    finals: deque[tuple[int, float, float]] = field(default_factory=deque)
    rate_state: str = "normal"


class AcousticMonitor:
    """Per-call acoustic signals. Not thread-safe: one caller (the call's task) feeds it."""

    name = "acoustic"
    version = "1"

    def __init__(self, call_id: str, cfg: dict[str, Any] | None = None, channels: tuple[Channel, ...] = CHANNELS) -> None:
        c = (cfg if cfg is not None else load_risk_config())["acoustic"]
        self.call_id = call_id
        self.talkover_min = float(c["talkover_min_s"])
        self.hangover = float(c["vad_hangover_s"])
        self.talkover_merge = float(c["talkover_merge_s"])
        self.dead_air_s = float(c["dead_air_s"])
        self.hold_max_s = float(c["hold_max_s"])
        self.loud_delta = float(c["loudness_delta_db"])
        self.loud_min = float(c["loudness_min_s"])
        self.loud_merge = float(c["loudness_merge_s"])
        self.warmup = float(c["baseline_warmup_s"])
        self.baseline_window = float(c["baseline_window_s"])
        self.baseline_pct = float(c["baseline_percentile"])
        self.baseline_every = 0.2  # seconds of speech between percentile recomputations
        self.smooth_s = float(c["loudness_smooth_s"])
        self.rate_window = float(c["rate_window_s"])
        self.rate_min_words = int(c["rate_min_words"])
        self.rate_fast = float(c["rate_fast_wpm"])
        self.rate_slow = float(c["rate_slow_wpm"])
        for k, v in (("talkover_min_s", self.talkover_min), ("dead_air_s", self.dead_air_s), ("baseline_window_s", self.baseline_window)):
            if v <= 0:
                raise ValueError(f"acoustic.{k} must be > 0, got {v}")
        bad = [ch for ch in channels if ch not in CHANNELS]
        if bad or not channels:
            raise ValueError(f"channels must be a non-empty subset of {CHANNELS}, got {channels}")
        self.channels = channels
        self._ch: dict[str, _Chan] = {ch: _Chan() for ch in channels}
        self._talkover_until = -1e9  # end of the last reported overlap episode
        self._silence_reported_for: float | None = None  # last-speech time of the reported silence
        self._hold_since: float | None = None
        self._hold_reported = False
        self._quiet_floor = 0.0

    # ------------------------------------------------------------------ inputs

    def feed(self, channel: Channel, offset_s: float, pcm16: bytes, sample_rate: int, is_speech: bool) -> list[Signal]:
        """One frame of one channel on the call clock; returns any signals it completes."""
        if channel not in self._ch:
            raise ValueError(f"unknown channel {channel!r}; this monitor has {self.channels}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if not math.isfinite(offset_s) or offset_s < 0:
            raise ValueError(f"offset_s must be a finite call-clock time >= 0, got {offset_s}")
        dur = len(pcm16) / 2 / sample_rate
        end = offset_s + dur
        st = self._ch[channel]
        st.fed_any = True
        st.fed_until = max(st.fed_until, end)
        out: list[Signal] = []
        db = frame_dbfs(pcm16)
        if is_speech:
            if st.run_start is None or st.last_speech_end is None or offset_s - st.last_speech_end > self.hangover:
                st.run_start = offset_s
            st.last_speech_end = end
            out += self._loudness(channel, st, offset_s, end, pcm16, db, dur)
            out += self._talkover(channel)
        else:
            st.recent_energy.clear()
            if st.spike_start is not None and offset_s - st.spike_last > self.loud_merge:
                st.spike_start = None
        out += self._silence(min(c.fed_until for c in self._ch.values() if c.fed_any))
        return out

    def tick(self, now_call_time: float) -> list[Signal]:
        """Timer check for when audio stops arriving altogether (both channels silent)."""
        return self._silence(now_call_time)

    def set_hold(self, on: bool, at: float) -> list[Signal]:
        """The platform (or agent desktop) says the customer is on / off hold at call time `at`."""
        if on and self._hold_since is None:
            self._hold_since, self._hold_reported = at, False
        elif not on and self._hold_since is not None:
            # coming back from hold is activity: silence is counted from here, not from before the hold
            self._hold_since = None
            self._quiet_floor = at
        return self._silence(at)

    def on_transcript(self, t: Transcript) -> list[Signal]:
        """Speaking rate from a final's word timings (partials are ignored: words still move)."""
        if not t.is_final or t.channel not in self._ch or not t.words:
            return []
        st = self._ch[t.channel]
        span = t.words[-1].end - t.words[0].start
        if span <= 0:
            return []
        st.finals.append((len(t.words), span, t.words[-1].end))
        while st.finals and st.finals[0][2] < t.words[-1].end - self.rate_window:
            st.finals.popleft()
        wpm = self.speaking_rate(t.channel)
        if wpm is None:
            return []
        state = "fast" if wpm >= self.rate_fast else "slow" if wpm <= self.rate_slow else "normal"
        if state == st.rate_state:
            return []
        st.rate_state = state
        if state == "normal":
            return []
        n = sum(f[0] for f in st.finals)
        conf = min(1.0, 0.5 + abs(wpm - (self.rate_fast if state == "fast" else self.rate_slow)) / 100)
        first_end, first_span = st.finals[0][2], st.finals[0][1]
        return [self._signal(f"speaking_{state}", conf, t.channel, first_end - first_span, t.words[-1].end,
                             {"wpm": round(wpm, 1), "words": n, "window_s": self.rate_window}, segment_id=t.segment_id, words=[w.text for w in t.words])]

    def speaking_rate(self, channel: Channel) -> float | None:
        """Words per minute of speaking time over the rate window, None until enough words."""
        st = self._ch[channel]
        n = sum(f[0] for f in st.finals)
        secs = sum(f[1] for f in st.finals)
        if n < self.rate_min_words or secs <= 0:
            return None
        return 60.0 * n / secs

    # ------------------------------------------------------------------ detectors

    def _talkover(self, channel: Channel) -> list[Signal]:
        me = self._ch[channel]
        out = []
        for other_ch, other in self._ch.items():
            if other_ch == channel or other.run_start is None or other.last_speech_end is None:
                continue
            assert me.run_start is not None and me.last_speech_end is not None
            start = max(me.run_start, other.run_start)
            stop = min(me.last_speech_end, other.last_speech_end)
            if stop <= start:
                continue
            if start <= self._talkover_until + self.talkover_merge:
                # still the reported episode (speech resumed after a short pause): extend it
                self._talkover_until = max(self._talkover_until, stop)
                continue
            if stop - start >= self.talkover_min:
                self._talkover_until = stop
                interrupter = channel if me.run_start >= other.run_start else other_ch
                out.append(self._signal("talk_over", min(1.0, 0.6 + 0.2 * (stop - start - self.talkover_min)), interrupter, start, stop,
                                        {"duration_s": round(stop - start, 3), "interrupter": interrupter}))
        return out

    def _silence(self, known_until: float) -> list[Signal]:
        speech_ends = [c.last_speech_end for c in self._ch.values() if c.last_speech_end is not None]
        last = max([*speech_ends, self._quiet_floor])
        quiet = known_until - last
        if self._hold_since is not None:
            held = known_until - self._hold_since
            if held >= self.hold_max_s and not self._hold_reported:
                self._hold_reported = True
                return [self._signal("long_hold", 1.0, "agent", self._hold_since, known_until,
                                     {"duration_s": round(held, 3), "hold_max_s": self.hold_max_s})]
            return []
        if quiet >= self.dead_air_s and self._silence_reported_for != last:
            self._silence_reported_for = last
            return [self._signal("dead_air", min(1.0, 0.7 + 0.3 * (quiet - self.dead_air_s) / self.dead_air_s), "agent", last, known_until,
                                 {"duration_s": round(quiet, 3), "threshold_s": self.dead_air_s})]
        return []

    def _loudness(self, channel: Channel, st: _Chan, offset: float, end: float, pcm16: bytes, db: float, dur: float) -> list[Signal]:
        x = np.frombuffer(pcm16, dtype="<i2").astype(np.float32)
        st.recent_energy.append((float(np.mean(x * x)) if x.size else 0.0, dur))
        while sum(d for _, d in st.recent_energy) > self.smooth_s + 1e-9 and len(st.recent_energy) > 1:
            st.recent_energy.popleft()
        ms = sum(e * d for e, d in st.recent_energy) / max(1e-9, sum(d for _, d in st.recent_energy))
        smooth = DBFS_FLOOR if ms <= 0 else max(DBFS_FLOOR, 10 * math.log10(ms / 32768.0**2))
        st.speech_s += dur
        # baseline = a high percentile of the speaker's own recent speech levels: their usual
        # *peaks*. Against a mean, ordinary stressed syllables already stand 10-15 dB out.
        st.levels.append(smooth)
        st.level_durs.append(dur)
        st.levels_s += dur
        while st.levels_s > self.baseline_window and len(st.levels) > 1:
            st.levels.popleft()
            st.levels_s -= st.level_durs.popleft()
        if st.baseline_db is None or st.speech_s - st.baseline_at >= self.baseline_every:
            st.baseline_db = float(np.percentile(np.fromiter(st.levels, dtype=np.float32), self.baseline_pct))
            st.baseline_at = st.speech_s
        loud = st.speech_s >= self.warmup and smooth > st.baseline_db + self.loud_delta
        if not loud:
            # a raised voice dips between words: only a longer calm ends the episode
            if st.spike_start is not None and offset - st.spike_last > self.loud_merge:
                st.spike_start = None
            return []
        if st.spike_start is None:
            st.spike_start, st.spike_peak, st.spike_emitted = offset, smooth, False
        st.spike_last = end
        st.spike_peak = max(st.spike_peak, smooth)
        if not st.spike_emitted and end - st.spike_start >= self.loud_min:
            st.spike_emitted = True
            delta = st.spike_peak - st.baseline_db
            return [self._signal("loudness_spike", min(1.0, 0.5 + (delta - self.loud_delta) / 20), channel, st.spike_start, end,
                                 {"peak_dbfs": round(st.spike_peak, 1), "baseline_dbfs": round(st.baseline_db, 1), "delta_db": round(delta, 1)})]
        return []

    def _signal(self, name: str, conf: float, channel: str, start: float, end: float, attrs: dict[str, Any],
                segment_id: int = -1, words: list[str] | None = None) -> Signal:
        return Signal(
            call_id=self.call_id, kind="acoustic", name=name, confidence=round(max(0.0, min(1.0, conf)), 3),
            detector=self.name, detector_version=self.version,
            evidence=Evidence(channel=channel, text="", start=round(start, 3), end=round(end, 3),  # type: ignore[arg-type]
                              segment_id=segment_id, revision=0, is_final=True, words=words or []),
            attrs=attrs | {"channel": channel},
        )


class AcousticDetector(Detector):
    """The acoustic monitor as a detector: one monitor per call in `ctx.state`, fed audio
    frames from both decoder threads (serialized by a per-call lock), ticked once a second,
    and told about finals for the speaking rate."""

    name = "acoustic"
    per_sentence = False  # speaking rate is a property of the utterance
    version = "1"
    inputs = frozenset({"audio", "tick", "text"})
    produces = frozenset({"signal:acoustic"})

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        self.cfg = cfg if cfg is not None else load_risk_config()

    def monitor(self, ctx: CallContext) -> tuple[AcousticMonitor, threading.Lock] | None:
        """The call's monitor; None for an interaction without audio (a chat): there is no
        silence, hold or talk-over to hear in text."""
        st = ctx.state.get(self.name)
        if st is None:
            channels = tuple(ctx.metadata.get("channels", CHANNELS))
            if not channels:
                return None
            st = ctx.state.setdefault(self.name, (AcousticMonitor(ctx.call_id, self.cfg, channels=channels),
                                                  threading.Lock()))  # fmt: skip
        return st

    def on_audio(self, frame: AudioFrame, ctx: CallContext) -> list[Signal]:
        if (st := self.monitor(ctx)) is None:
            return []
        mon, lock = st
        with lock:
            return mon.feed(frame.channel, frame.offset, frame.pcm, frame.sample_rate, frame.is_speech) or []

    def on_tick(self, ctx: CallContext, call_time: float) -> list[Signal]:
        if (st := self.monitor(ctx)) is None:
            return []
        mon, lock = st
        with lock:
            return mon.tick(call_time) or []

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        if not t.is_final or (st := self.monitor(ctx)) is None:
            return []
        mon, lock = st
        with lock:
            return mon.on_transcript(t) or []
