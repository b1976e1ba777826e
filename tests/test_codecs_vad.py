"""Codecs, streaming resampler and VAD segmenter on real recordings.

VAD ground truth: where the clean recording's 10 ms energy is within 30 dB of its loudest
frame (computed independently of webrtcvad), shifted by the silence we pad around it.
"""

from __future__ import annotations

import itertools
import wave

import numpy as np
import pytest
import soxr

from callcue.audio.codecs import (
    Resampler,
    decode,
    duration_seconds,
    encode,
    rms_dbfs,
    silence,
)
from callcue.audio.vad import SpeechAudio, SpeechEnded, SpeechStarted, VadSegmenter
from tests.conftest import require_shared

PAD_S = 2.0


def load(*parts: str) -> tuple[int, bytes]:
    with wave.open(str(require_shared("speech", *parts))) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getframerate(), w.readframes(w.getnframes())


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def snr_db(ref: bytes, test: bytes) -> float:
    x, y = samples(ref), samples(test)
    return float(10 * np.log10((x**2).sum() / ((x - y) ** 2).sum()))


def energy_bounds(pcm: bytes, rate: int, below_peak_db: float = 30.0) -> tuple[float, float]:
    x = samples(pcm)
    hop = rate // 100
    n = len(x) // hop
    e = 20 * np.log10(np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1)) + 1e-9)
    active = np.flatnonzero(e > e.max() - below_peak_db)
    return active[0] / 100, (active[-1] + 1) / 100


def on_a_line(pcm: bytes, rng: np.random.Generator, sigma: float = 30.0) -> bytes:
    """Mix in white hiss (sigma 30 = -61 dBFS, 100 = -50 dBFS) over the whole call, speech
    included, then G.711 round trip: what a phone line sounds like, not digital zeros."""
    x = samples(pcm) + rng.normal(0, sigma, len(pcm) // 2)
    return decode("PCMU", encode("PCMU", np.clip(x, -32768, 32767).astype("<i2").tobytes()))


# -- codecs ---------------------------------------------------------------------------
@pytest.mark.parametrize("clip", [("jfk", "jfk.wav"), ("cmu_arctic", "aew_a0001.wav"), ("pocketsphinx", "goforward.wav")])
@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
def test_g711_round_trip_snr_on_real_speech(clip, encoding):
    _, pcm = load(*clip)
    wire = encode(encoding, pcm)
    assert len(wire) == len(pcm) // 2
    back = decode(encoding, wire)
    assert len(back) == len(pcm)
    # G.711 gives ~38 dB SQNR on speech at normal level (measured 36.6-37.5 dB on these clips)
    assert snr_db(pcm, back) > 34.0
    # decoding is a fixed point: re-encoding decoded G.711 is lossless
    assert encode(encoding, back) == wire


def test_l16_passthrough_and_errors():
    _, pcm = load("pocketsphinx", "cards_001.wav")
    assert decode("L16", pcm) == pcm
    with pytest.raises(ValueError, match="odd byte count"):
        decode("L16", pcm[:-1])
    with pytest.raises(ValueError, match="unsupported encoding 'G729'"):
        decode("G729", b"\x00")


@pytest.mark.parametrize(("encoding", "nbytes", "max_abs"), [("PCMU", 800, 0), ("PCMA", 800, 8), ("L16", 1600, 0)])
def test_silence_decodes_to_digital_silence(encoding, nbytes, max_abs):
    s = silence(encoding, 0.1, 8000)
    assert len(s) == nbytes and duration_seconds(len(s), encoding, 8000) == pytest.approx(0.1)
    assert np.abs(samples(decode(encoding, s))).max() <= max_abs  # A-law has no exact zero
    assert silence(encoding, samples=3) == s[: 3 * (2 if encoding == "L16" else 1)]
    with pytest.raises(ValueError):
        silence(encoding)


@pytest.mark.parametrize(("in_rate", "out_rate", "clip"), [(8000, 16000, ("telephone_sim", "jfk__jfk.wav")), (16000, 8000, ("jfk", "jfk.wav"))])
def test_streaming_resampler_matches_one_shot_across_chunk_boundaries(in_rate, out_rate, clip):
    rate, pcm = load(*clip)
    assert rate == in_rate
    one_shot = soxr.resample(np.frombuffer(pcm, "<i2"), in_rate, out_rate, quality="HQ").astype(int)
    rng = np.random.default_rng(7)
    for sizes in ("20ms", "random"):
        r = Resampler(in_rate, out_rate)
        out = bytearray()
        i = 0
        while i < len(pcm):
            n = in_rate // 50 * 2 if sizes == "20ms" else int(rng.integers(1, 700)) * 2
            out += r.process(pcm[i : i + n])
            i += n
        out += r.flush()
        y = np.frombuffer(bytes(out), "<i2").astype(int)
        assert len(y) == len(one_shot) == len(pcm) // 2 * out_rate // in_rate
        # only int16 rounding differs (measured max 2 LSB); a reset filter at a chunk
        # boundary would show up as hundreds of LSB
        assert np.abs(y - one_shot).max() <= 4, sizes
        assert (r.samples_in, r.samples_out) == (len(pcm) // 2, len(y))
    with pytest.raises(RuntimeError, match="after flush"):
        r.process(b"\x00\x00")
    r.reset()
    assert len(r.process(pcm[:3200]) + r.flush()) == 3200 * out_rate // in_rate


def test_resampler_same_rate_is_passthrough_and_rejects_torn_samples():
    r = Resampler(16000, 16000)
    assert r.process(b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04" and r.flush() == b""
    with pytest.raises(ValueError, match="odd byte count"):
        Resampler(8000, 16000).process(b"\x00")


# -- VAD ------------------------------------------------------------------------------
def segment_all(v: VadSegmenter, pcm: bytes, chunk: int) -> tuple[list, bool]:
    events: list = []
    for i in range(0, len(pcm), chunk):
        events += v.feed(pcm[i : i + chunk])
    closed_before_flush = not v.in_speech
    events += v.flush()
    return events, closed_before_flush


def check_stream_shape(events: list, rate: int) -> list[tuple[SpeechStarted, SpeechEnded]]:
    """Starts/audio/ends alternate, audio is contiguous from start.offset to end.offset."""
    segs = []
    cur: SpeechStarted | None = None
    pos = 0.0
    for e in events:
        if isinstance(e, SpeechStarted):
            assert cur is None
            cur, pos = e, e.offset
            assert e.offset <= e.speech_offset
        elif isinstance(e, SpeechAudio):
            assert cur is not None and e.offset == pytest.approx(pos, abs=1e-9)
            pos += len(e.pcm) / (2 * rate)
        else:
            assert cur is not None and e.offset == pytest.approx(pos, abs=1e-9)
            assert e.speech_end <= e.offset
            segs.append((cur, e))
            cur = None
    assert cur is None
    return segs


CLIPS = [
    ("telephone_sim", "jfk__jfk.wav"),
    ("telephone_sim", "pocketsphinx__cards_001.wav"),
    ("telephone_sim", "pocketsphinx__goforward.wav"),
    ("telephone_sim", "cmu_arctic__aew_a0001.wav"),
    ("telephone_sim", "vosk_example__test.wav"),
    ("jfk", "jfk.wav"),
    ("pocketsphinx", "librivox_0870.wav"),
    ("pocketsphinx", "cards_004.wav"),
]


@pytest.mark.parametrize("clip", CLIPS, ids=[c[1] for c in CLIPS])
@pytest.mark.parametrize(("vad_rate", "hiss"), [(8000, 30.0), (16000, 30.0), (8000, 100.0)])
def test_vad_boundaries_on_real_speech_on_a_noisy_line(clip, vad_rate, hiss):
    rate, speech = load(*clip)
    onset, offset = energy_bounds(speech, rate)
    rng = np.random.default_rng(3)
    call = on_a_line(silence("L16", PAD_S, rate) + speech + silence("L16", PAD_S + 1.0, rate), rng, hiss)
    if rate != vad_rate:  # what the channel pipeline does before the VAD
        r = Resampler(rate, vad_rate)
        call = r.process(call) + r.flush()
    v = VadSegmenter(sample_rate=vad_rate)
    events, closed = segment_all(v, call, chunk=1234)  # deliberately not a frame multiple
    assert v.clock == pytest.approx(len(call) / (2 * vad_rate))  # every sample counted
    segs = check_stream_shape(events, vad_rate)
    assert segs, "no speech found"
    first, last = segs[0][0], segs[-1][1]
    assert first.speech_offset == pytest.approx(PAD_S + onset, abs=0.3)
    assert last.speech_end == pytest.approx(PAD_S + offset, abs=0.5)
    assert closed, "hangover never closed the segment in 3 s of line noise"
    assert len(segs) <= 4  # jfk has 3 long pauses; nothing else splits
    # pre-roll: the segment opens 240 ms (12 frames) before the detected onset
    assert first.speech_offset - first.offset == pytest.approx(0.24, abs=1e-9)
    # hangover: the segment closes ~600 ms after the last voiced frame
    assert 0.5 <= last.offset - last.speech_end <= 0.62
    # nothing is detected in the leading noise
    assert first.offset >= PAD_S - 0.3


def test_chunking_does_not_change_segments():
    rate, speech = load("telephone_sim", "jfk__jfk.wav")
    call = silence("L16", 1.0, rate) + speech + silence("L16", 1.0, rate)
    whole, _ = segment_all(VadSegmenter(sample_rate=rate), call, chunk=len(call))
    odd, _ = segment_all(VadSegmenter(sample_rate=rate), call, chunk=37)  # odd: splits samples too
    def key(evs: list) -> list:
        return [(type(e).__name__, round(e.offset, 6)) for e in evs if not isinstance(e, SpeechAudio)]

    def audio(evs: list) -> bytes:
        return b"".join(e.pcm for e in evs if isinstance(e, SpeechAudio))

    assert key(whole) == key(odd)
    assert audio(whole) == audio(odd)


def test_max_segment_force_splits_without_losing_audio():
    rate, speech = load("jfk", "jfk.wav")
    v = VadSegmenter(sample_rate=rate, max_segment_s=2.0)
    events, _ = segment_all(v, speech, chunk=640)
    segs = check_stream_shape(events, rate)
    assert any(end.forced for _, end in segs)
    for start, end in segs:
        assert end.offset - start.offset <= 2.0 + 1e-9
    # a forced split and the next segment are back to back: no audio falls in between
    for (_, end), (nxt, _) in itertools.pairwise(segs):
        if end.forced:
            assert nxt.offset == pytest.approx(end.offset, abs=0.02)


def test_flush_closes_open_segment_at_end_of_call():
    rate, speech = load("telephone_sim", "pocketsphinx__goforward.wav")
    call = silence("L16", 1.0, rate) + speech[: len(speech) // 2] + b"\x01\x00\x02"  # ends mid-speech, mid-frame
    v = VadSegmenter(sample_rate=rate)
    events = v.feed(call)
    assert v.in_speech and not any(isinstance(e, SpeechEnded) for e in events)
    tail = v.flush()
    assert isinstance(tail[-1], SpeechEnded) and not tail[-1].forced
    assert tail[-1].offset == pytest.approx((len(call) // 2) / rate)
    assert v.flush() == [] and not v.in_speech


def test_silence_only_advances_the_clock():
    v = VadSegmenter(sample_rate=8000)
    assert v.feed(silence("L16", 5.0, 8000)) == [] and v.flush() == []
    assert v.clock == pytest.approx(5.0) and v.segments == 0


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"sample_rate": 11025}, "sample rates"),
        ({"frame_ms": 25}, "frames of"),
        ({"aggressiveness": 4}, "aggressiveness"),
        ({"hangover_ms": 10}, "hangover_ms"),
        ({"max_segment_s": 1.0}, "max_segment_s"),
        ({"start_ratio": 0.0}, "start_ratio"),
    ],
)
def test_vad_config_errors(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        VadSegmenter(**kwargs)


def test_one_segment_per_utterance_in_a_conversation_of_clips():
    """Utterances separated by 1.5 s of line noise: each is found once, none are merged."""
    names = ["cards_001", "cards_002", "cards_003", "cards_004", "goforward", "librivox_0880"]
    call = bytearray(silence("L16", 1.0, 8000))
    truth = []
    for n in names:
        rate, pcm = load("telephone_sim", f"pocketsphinx__{n}.wav")
        on, off = energy_bounds(pcm, rate)
        t0 = len(call) / 16000
        truth.append((t0 + on, t0 + off))
        call += pcm + silence("L16", 1.5, 8000)
    noisy = on_a_line(bytes(call), np.random.default_rng(11))
    events, closed = segment_all(VadSegmenter(sample_rate=8000), noisy, chunk=160)
    segs = check_stream_shape(events, 8000)
    assert closed
    for on, off in truth:
        inside = [(s, e) for s, e in segs if s.speech_offset < off and e.speech_end > on]
        assert inside, f"utterance at {on:.2f}-{off:.2f}s not found"
        assert inside[0][0].speech_offset == pytest.approx(on, abs=0.3)
        assert inside[-1][1].speech_end == pytest.approx(off, abs=0.5)
    # no segment spans two utterances
    for s, e in segs:
        assert sum(1 for on, off in truth if s.speech_offset < off and e.speech_end > on) == 1


def test_rms_dbfs_levels():
    _, pcm = load("jfk", "jfk.wav")
    x = samples(pcm)
    expect = 20 * np.log10(np.sqrt((x**2).mean()) / 32768)
    assert rms_dbfs(pcm) == pytest.approx(expect, abs=0.05)
    assert rms_dbfs(silence("L16", 0.02, 8000)) == rms_dbfs(b"") == -120.0


def test_quiet_single_digits_are_found():
    """The quietest speaker in fsdd_8k (peaks near -35 dBFS): every digit yields a segment."""
    rng = np.random.default_rng(5)
    paths = sorted(require_shared("speech", "fsdd_8k").glob("*_theo_*.wav"))[::5]
    assert len(paths) >= 20
    missed = []
    for p in paths:
        _, pcm = load("fsdd_8k", p.name)
        call = on_a_line(silence("L16", 1.0, 8000) + pcm + silence("L16", 1.0, 8000), rng)
        v = VadSegmenter(sample_rate=8000)
        if not any(isinstance(e, SpeechStarted) for e in v.feed(call) + v.flush()):
            missed.append(p.name)
    assert len(missed) <= len(paths) // 20, missed
