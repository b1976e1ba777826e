"""Twilio Media Streams parser, driven by message sequences built exactly like Twilio sends
them (string sequenceNumber/chunk/timestamp, 20 ms base64 mu-law frames) from real
telephone-band recordings."""

from __future__ import annotations

import base64
import json
import wave
from pathlib import Path

import pytest

from callcue.audio.codecs import encode
from callcue.platforms.base import (
    AudioIn,
    CallStart,
    CallStop,
    Dtmf,
    GapFilled,
    Mark,
    ProtocolError,
)
from callcue.platforms.twilio import TwilioProtocol
from tests.conftest import require_shared

CALL_SID = "CA0123456789abcdef0123456789abcdef"
STREAM_SID = "MZ0123456789abcdef0123456789abcdef"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
FRAME = 160  # 20 ms of 8 kHz mu-law


def mulaw_of(name: str) -> bytes:
    p: Path = require_shared("speech", "telephone_sim", f"{name}.wav")
    with wave.open(str(p)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return encode("PCMU", w.readframes(w.getnframes()))


class TwilioSim:
    """Builds the JSON text frames of one Twilio stream, numbering like Twilio does."""

    def __init__(self, tracks: tuple[str, ...] = ("inbound",), custom: dict | None = None) -> None:
        self.seq = 0
        self.tracks = tracks
        self.custom = custom if custom is not None else {"agent_id": "agent-7"}
        self.chunk = {t: 0 for t in tracks}

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, **fmt_override) -> str:
        fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1} | fmt_override
        return json.dumps(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": ACCOUNT_SID,
                    "streamSid": STREAM_SID,
                    "callSid": CALL_SID,
                    "tracks": list(self.tracks),
                    "mediaFormat": fmt,
                    "customParameters": self.custom,
                },
                "streamSid": STREAM_SID,
            }
        )

    def media(self, track: str, payload: bytes, timestamp_ms: int) -> str:
        self.chunk[track] += 1
        return json.dumps(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "media": {
                    "track": track,
                    "chunk": str(self.chunk[track]),
                    "timestamp": str(timestamp_ms),
                    "payload": base64.b64encode(payload).decode(),
                },
                "streamSid": STREAM_SID,
            }
        )

    def frames(self, track: str, mulaw: bytes, start_ms: int = 0) -> list[str]:
        return [self.media(track, mulaw[i : i + FRAME], start_ms + i // 8) for i in range(0, len(mulaw), FRAME)]

    def dtmf(self, digit: str) -> str:
        return json.dumps(
            {"event": "dtmf", "streamSid": STREAM_SID, "sequenceNumber": self._next(), "dtmf": {"track": "inbound_track", "digit": digit}}
        )

    def mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "sequenceNumber": self._next(), "streamSid": STREAM_SID, "mark": {"name": name}})

    def stop(self) -> str:
        return json.dumps(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": STREAM_SID,
                "stop": {"accountSid": ACCOUNT_SID, "callSid": CALL_SID},
            }
        )


def run(parser: TwilioProtocol, msgs: list[str]) -> list:
    out = []
    for m in msgs:
        out += parser.receive_text(m)
    return out


def channel_bytes(events: list, channel: str) -> bytes:
    """Concatenate a channel's audio, asserting that offsets are contiguous (the call clock)."""
    buf = bytearray()
    for e in events:
        if isinstance(e, AudioIn) and e.channel == channel:
            assert e.offset == pytest.approx(len(buf) / 8000), "offset must equal the bytes already emitted"
            buf += e.payload
    return bytes(buf)


def test_full_call_inbound_only():
    audio = mulaw_of("jfk__jfk")
    sim = TwilioSim()
    msgs = [sim.connected(), sim.start(), *sim.frames("inbound", audio), sim.dtmf("5"), sim.mark("greeting-done"), sim.stop()]
    p = TwilioProtocol()
    events = run(p, msgs)
    start = events[0]
    assert isinstance(start, CallStart)
    assert (start.call_id, start.encoding, start.sample_rate, start.channels) == (CALL_SID, "PCMU", 8000, ("customer",))
    assert start.agent_id == "agent-7" and start.platform == "twilio"
    assert start.metadata["stream_sid"] == STREAM_SID and start.metadata["protocol_version"] == "1.0.0"
    assert channel_bytes(events, "customer") == audio
    assert not any(isinstance(e, GapFilled) for e in events)
    assert [type(e) for e in events[-3:]] == [Dtmf, Mark, CallStop]
    assert events[-3].digit == "5" and events[-2].name == "greeting-done" and events[-1].call_id == CALL_SID
    c = p.counters
    assert (c.frames, c.bytes, c.gaps, c.dropped, c.errors, c.sequence_gaps) == (len(audio) // FRAME + (len(audio) % FRAME > 0), len(audio), 0, 0, 0, 0)
    assert p.state == "stopped"


def test_two_tracks_outbound_starts_late_is_padded_on_call_clock():
    cust = mulaw_of("pocketsphinx__goforward")
    agent = mulaw_of("pocketsphinx__cards_001")
    sim = TwilioSim(tracks=("inbound", "outbound"))
    msgs = [sim.connected(), sim.start()]
    n_in, n_out = len(cust) // FRAME, len(agent) // FRAME
    for k in range(max(n_in, n_out + 50)):
        if k < n_in:
            msgs.append(sim.media("inbound", cust[k * FRAME : (k + 1) * FRAME], k * 20))
        if 50 <= k < 50 + n_out:
            j = k - 50
            msgs.append(sim.media("outbound", agent[j * FRAME : (j + 1) * FRAME], 1000 + j * 20))
    msgs.append(sim.stop())
    p = TwilioProtocol()
    events = run(p, msgs)
    assert events[0].channels == ("customer", "agent")
    gaps = [e for e in events if isinstance(e, GapFilled)]
    assert len(gaps) == 1 and gaps[0].channel == "agent" and gaps[0].missing_seconds == pytest.approx(1.0)
    assert gaps[0].reason == "track started late"
    agent_bytes = channel_bytes(events, "agent")
    assert agent_bytes[:8000] == b"\xff" * 8000  # mu-law digital silence
    assert agent_bytes[8000:] == agent[: n_out * FRAME]
    assert channel_bytes(events, "customer") == cust[: n_in * FRAME]
    agent_frames = [e for e in events if isinstance(e, AudioIn) and e.channel == "agent"]
    assert agent_frames[0].offset == 0.0 and agent_frames[1].offset == pytest.approx(1.0)


def test_lost_frames_are_filled_with_silence_and_clock_stays_true():
    audio = mulaw_of("cmu_arctic__aew_a0001")
    sim = TwilioSim()
    head = [sim.connected(), sim.start()]
    frames = sim.frames("inbound", audio)
    lost = set(range(40, 45))  # 100 ms lost in the network
    msgs = [*head, *[f for i, f in enumerate(frames) if i not in lost], sim.stop()]
    p = TwilioProtocol()
    events = run(p, msgs)
    gaps = [e for e in events if isinstance(e, GapFilled)]
    assert len(gaps) == 1
    assert gaps[0].missing_seconds == pytest.approx(0.1) and gaps[0].reason == "5 chunk(s) missing"
    got = channel_bytes(events, "customer")
    assert len(got) == len(audio)  # the call clock did not shrink
    assert got[40 * FRAME : 45 * FRAME] == b"\xff" * (5 * FRAME)
    assert got[: 40 * FRAME] == audio[: 40 * FRAME] and got[45 * FRAME :] == audio[45 * FRAME :]
    assert (p.counters.gaps, p.counters.gap_seconds, p.counters.sequence_gaps) == (1, pytest.approx(0.1), 5)


def test_out_of_order_and_duplicate_frames_are_dropped_and_counted():
    audio = mulaw_of("pocketsphinx__cards_002")
    sim = TwilioSim()
    head = [sim.connected(), sim.start()]
    frames = sim.frames("inbound", audio)
    order = list(range(len(frames)))
    order[20], order[21] = 21, 20  # chunk 22 overtakes chunk 21
    order.insert(31, 30)  # chunk 31 delivered twice
    msgs = [*head, *[frames[i] for i in order], sim.stop()]
    p = TwilioProtocol()
    events = run(p, msgs)
    assert p.counters.dropped == 2
    assert p.counters.gaps == 1  # the hole chunk 21 left, since it arrived too late to use
    got = channel_bytes(events, "customer")
    assert len(got) == len(audio)
    assert got[20 * FRAME : 21 * FRAME] == b"\xff" * FRAME
    assert got[21 * FRAME :] == audio[21 * FRAME :]


def test_overlapping_timestamp_is_trimmed_not_duplicated():
    audio = mulaw_of("pocketsphinx__cards_003")
    sim = TwilioSim()
    msgs = [sim.connected(), sim.start(), sim.media("inbound", audio[:FRAME], 0), sim.media("inbound", audio[80 : 80 + FRAME], 10)]
    p = TwilioProtocol()
    got = channel_bytes(run(p, msgs), "customer")
    assert got == audio[: 80 + FRAME] and p.counters.trimmed_bytes == 80


def test_unknown_event_is_ignored_and_counted():
    sim = TwilioSim()
    p = TwilioProtocol()
    run(p, [sim.connected(), sim.start()])
    assert p.receive_text(json.dumps({"event": "transcription", "sequenceNumber": "3", "streamSid": STREAM_SID})) == []
    assert p.counters.unknown_events == 1 and p.counters.errors == 0 and p.state == "started"


def _started() -> tuple[TwilioProtocol, TwilioSim]:
    sim = TwilioSim()
    p = TwilioProtocol(max_message_bytes=4096)
    run(p, [sim.connected(), sim.start()])
    return p, sim


def _media(payload: str = "//8=", **media) -> str:
    return json.dumps({"event": "media", "sequenceNumber": "9", "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload} | media})


ERROR_CASES = [
    ("malformed JSON", True, '{"event": "media", ', 1007, "invalid JSON"),
    ("not an object", True, '["media"]', 1007, "JSON object"),
    ("no event", True, '{"sequenceNumber": "3"}', 1007, "'event'"),
    ("bad base64", True, _media("not base64!!"), 1007, "base64"),
    ("payload not a string", True, _media(None), 1007, "media.payload"),
    ("bad chunk", True, _media(chunk="one"), 1007, "media.chunk"),
    ("bad sequenceNumber", True, json.dumps({"event": "mark", "sequenceNumber": "x", "mark": {"name": "a"}}), 1007, "sequenceNumber"),
    ("media before start", False, _media(), 1008, "before 'start'"),
    ("undeclared track", True, _media(track="outbound"), 1008, "did not announce"),
    ("unknown track", True, _media(track="sideways"), 1007, "media.track"),
    ("bad dtmf", True, json.dumps({"event": "dtmf", "dtmf": {"digit": "55"}}), 1007, "dtmf.digit"),
    ("mark without name", True, json.dumps({"event": "mark", "mark": {}}), 1007, "mark.name"),
    ("second start", True, TwilioSim().start(), 1008, "second 'start'"),
    ("wrong stream", True, json.dumps({"event": "mark", "streamSid": "MZother", "mark": {"name": "a"}}), 1008, "streamSid"),
    ("oversize", True, json.dumps({"event": "mark", "mark": {"name": "x" * 5000}}), 1009, "exceeds 4096"),
    ("huge timestamp jump", True, _media(timestamp="999999999"), 1007, "jumps"),
]


@pytest.mark.parametrize(("name", "after_start", "text", "code", "needle"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_cases_close_with_the_right_code(name, after_start, text, code, needle):
    if after_start:
        p, _ = _started()
    else:
        p = TwilioProtocol(max_message_bytes=4096)
        p.receive_text(TwilioSim().connected())
    with pytest.raises(ProtocolError) as ei:
        p.receive_text(text)
    assert ei.value.close_code == code and ei.value.fatal
    assert needle in ei.value.reason
    assert p.counters.errors == 1 and p.state == "failed"
    with pytest.raises(ProtocolError) as again:  # a failed connection stays failed
        p.receive_text(TwilioSim().connected())
    assert again.value.close_code == 1008


@pytest.mark.parametrize(
    ("override", "needle"),
    [({"encoding": "audio/x-alaw"}, "encoding"), ({"sampleRate": 16000}, "sampleRate"), ({"channels": 2}, "channels")],
)
def test_unsupported_media_format_is_1003(override, needle):
    sim = TwilioSim()
    p = TwilioProtocol()
    p.receive_text(sim.connected())
    with pytest.raises(ProtocolError) as ei:
        p.receive_text(sim.start(**override))
    assert ei.value.close_code == 1003 and needle in ei.value.reason


def test_missing_call_sid_names_the_field():
    msg = json.loads(TwilioSim().start())
    del msg["start"]["callSid"]
    with pytest.raises(ProtocolError) as ei:
        TwilioProtocol().receive_text(json.dumps(msg))
    assert ei.value.close_code == 1007 and "start.callSid" in ei.value.reason


def test_anything_after_stop_is_1008():
    p, sim = _started()
    p.receive_text(sim.stop())
    with pytest.raises(ProtocolError) as ei:
        p.receive_text(sim.media("inbound", b"\xff" * FRAME, 0))
    assert ei.value.close_code == 1008 and "after 'stop'" in ei.value.reason


def test_binary_frame_is_1003():
    p, _ = _started()
    with pytest.raises(ProtocolError) as ei:
        p.receive_bytes(b"\x00\x01")
    assert ei.value.close_code == 1003


def test_eof_without_stop_ends_the_call_once():
    p, sim = _started()
    assert [(type(e), e.reason) for e in p.receive_eof()] == [(CallStop, "disconnected")]
    assert p.receive_eof() == []
    q, sim = _started()
    q.receive_text(sim.stop())
    assert q.receive_eof() == []  # already ended by 'stop'


def test_without_timestamps_missing_chunks_are_still_filled():
    audio = mulaw_of("pocketsphinx__cards_004")
    sim = TwilioSim()
    head = [sim.connected(), sim.start()]
    frames = [json.loads(f) for f in sim.frames("inbound", audio)]
    for f in frames:
        del f["media"]["timestamp"]
    kept = [json.dumps(f) for i, f in enumerate(frames) if i not in (7, 8)]
    p = TwilioProtocol()
    events = run(p, [*head, *kept])
    got = channel_bytes(events, "customer")
    assert len(got) == len(audio) and got[7 * FRAME : 9 * FRAME] == b"\xff" * (2 * FRAME)
    assert [g.reason for g in events if isinstance(g, GapFilled)] == ["2 chunk(s) missing"]


def test_lost_frames_keep_vad_times_true_through_decode_resample_vad():
    """End to end on the call clock: 1 s of frames lost before the caller speaks must not
    pull the detected speech onset 1 s earlier."""
    from callcue.audio.codecs import Resampler, decode
    from callcue.audio.vad import SpeechStarted, VadSegmenter

    speech = mulaw_of("pocketsphinx__goforward")
    lead = b"\xff" * (3 * 8000)  # 3 s of line silence before the caller speaks
    call = lead + speech
    sim = TwilioSim()
    head = [sim.connected(), sim.start()]
    frames = sim.frames("inbound", call)
    lost = set(range(50, 100))  # frames 1.0-2.0 s never arrive
    p = TwilioProtocol()
    events = run(p, [*head, *[f for i, f in enumerate(frames) if i not in lost]])

    def onset(wire_chunks: list[bytes]) -> float:
        r, v = Resampler(8000, 16000), VadSegmenter(sample_rate=16000)
        out = []
        for c in wire_chunks:
            out += v.feed(r.process(decode("PCMU", c)))
        out += v.feed(r.flush()) + v.flush()
        return next(e.speech_offset for e in out if isinstance(e, SpeechStarted))

    via_twilio = onset([e.payload for e in events if isinstance(e, AudioIn)])
    reference = onset([call[i : i + FRAME] for i in range(0, len(call), FRAME)])
    assert p.counters.gaps == 1
    assert via_twilio == pytest.approx(reference, abs=0.021) and via_twilio > 3.0
