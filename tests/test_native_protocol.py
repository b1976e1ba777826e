"""Native ingress protocol: real two-leg calls as a client would send them, every error with
its close code, and the examples in docs/protocol-native.md parsed for real."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import pytest

from callcue.audio.codecs import encode
from callcue.platforms.base import (
    AudioIn,
    CallStart,
    CallStop,
    Dtmf,
    Mark,
    ProtocolError,
)
from callcue.platforms.native import NativeProtocol, encode_audio_frame
from tests.conftest import REPO, require_shared


def pcm_of(*parts: str) -> tuple[int, bytes]:
    p: Path = require_shared("speech", *parts)
    with wave.open(str(p)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getframerate(), w.readframes(w.getnframes())


def start_msg(**over) -> str:
    msg = {
        "type": "start",
        "call_id": "call-42",
        "agent_id": "agent-7",
        "channels": ["customer", "agent"],
        "encoding": "L16",
        "sample_rate": 16000,
        "metadata": {"queue": "billing"},
    }
    msg.update(over)
    return json.dumps({k: v for k, v in msg.items() if v is not ...})


def per_channel(events: list) -> dict[str, bytes]:
    out: dict[str, bytearray] = {}
    for e in events:
        if isinstance(e, AudioIn):
            buf = out.setdefault(e.channel, bytearray())
            out[e.channel] = buf
            buf += e.payload
    return {k: bytes(v) for k, v in out.items()}


def test_two_leg_l16_call_from_real_audio():
    rate, cust = pcm_of("jfk", "jfk.wav")
    _, agent = pcm_of("pocketsphinx", "goforward.wav")
    assert rate == 16000
    p = NativeProtocol()
    events = p.receive_text(start_msg())
    frame = 640  # 20 ms of 16 kHz L16
    for i in range(0, max(len(cust), len(agent)), frame):
        if i < len(cust):
            events += p.receive_bytes(encode_audio_frame(0, cust[i : i + frame]))
        if i < len(agent):
            events += p.receive_bytes(encode_audio_frame(1, agent[i : i + frame]))
    events += p.receive_text('{"type": "dtmf", "digit": "#"}')
    events += p.receive_text('{"type": "mark", "name": "hold-start"}')
    events += p.receive_text('{"type": "stop", "reason": "hangup"}')
    start = events[0]
    assert isinstance(start, CallStart)
    assert (start.call_id, start.agent_id, start.channels, start.encoding, start.sample_rate) == (
        "call-42", "agent-7", ("customer", "agent"), "L16", 16000,
    )
    assert start.metadata == {"queue": "billing"} and start.platform == "native"
    assert per_channel(events) == {"customer": cust, "agent": agent}
    # offsets are the call clock: bytes so far / (2 * rate)
    agent_frames = [e for e in events if isinstance(e, AudioIn) and e.channel == "agent"]
    assert [round(e.offset, 3) for e in agent_frames[:3]] == [0.0, 0.02, 0.04]
    assert agent_frames[-1].offset == pytest.approx((len(agent) - len(agent_frames[-1].payload)) / 32000)
    assert isinstance(events[-3], Dtmf) and events[-3].digit == "#"
    assert isinstance(events[-2], Mark) and events[-2].name == "hold-start"
    assert isinstance(events[-1], CallStop) and events[-1].reason == "hangup"
    assert p.counters.bytes == len(cust) + len(agent) and p.counters.errors == 0
    assert p.counters.per_channel_bytes == {"customer": len(cust), "agent": len(agent)}


@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
def test_g711_single_channel_8k(encoding):
    rate, pcm = pcm_of("telephone_sim", "pocketsphinx__cards_005.wav")
    wire = encode(encoding, pcm)
    p = NativeProtocol()
    events = p.receive_text(start_msg(channels=["customer"], encoding=encoding, sample_rate=rate, agent_id=None, metadata=...))
    assert events[0].agent_id is None and events[0].metadata == {}
    for i in range(0, len(wire), 160):
        events += p.receive_bytes(encode_audio_frame(0, wire[i : i + 160]))
    assert per_channel(events) == {"customer": wire}
    last = events[-1]
    assert last.offset == pytest.approx((len(wire) - len(last.payload)) / 8000)


def _started(**over) -> NativeProtocol:
    p = NativeProtocol(max_message_bytes=1024)
    p.receive_text(start_msg(**over))
    return p


TEXT_ERRORS = [
    ("malformed JSON", None, '{"type": "start"', 1007, "invalid JSON"),
    ("not an object", None, '"start"', 1007, "JSON object"),
    ("no type", None, '{"call_id": "x"}', 1007, "'type'"),
    ("unknown type", None, '{"type": "pause"}', 1007, "unknown type 'pause'"),
    ("stop before start", None, '{"type": "stop"}', 1008, "before 'start'"),
    ("missing call_id", None, start_msg(call_id=...), 1007, "'call_id'"),
    ("bad call_id", None, start_msg(call_id="has space"), 1007, "'call_id'"),
    ("bad agent_id", None, start_msg(agent_id=7), 1007, "'agent_id'"),
    ("bad channels", None, start_msg(channels=["customer", "customer"]), 1007, "'channels'"),
    ("three channels", None, start_msg(channels=["customer", "agent", "agent"]), 1007, "'channels'"),
    ("no encoding", None, start_msg(encoding=...), 1007, "'encoding'"),
    ("unsupported encoding", None, start_msg(encoding="OPUS"), 1003, "unsupported encoding 'OPUS'"),
    ("rate not int", None, start_msg(sample_rate="16000"), 1007, "'sample_rate'"),
    ("unsupported rate", None, start_msg(sample_rate=44100), 1003, "unsupported sample_rate 44100"),
    ("metadata not object", None, start_msg(metadata=[1]), 1007, "'metadata'"),
    ("second start", {}, start_msg(), 1008, "second 'start'"),
    ("bad dtmf", {}, '{"type": "dtmf", "digit": "12"}', 1007, "'digit'"),
    ("mark without name", {}, '{"type": "mark"}', 1007, "'name'"),
    ("oversize text", {}, json.dumps({"type": "mark", "name": "x" * 2000}), 1009, "exceeds 1024"),
    ("text without channel", {}, '{"type": "text", "text": "hi"}', 1007, "'channel'"),
    ("empty text", {}, '{"type": "text", "channel": "agent", "text": "  "}', 1007, "'text'"),
    ("text time not a number", {}, '{"type": "text", "channel": "agent", "text": "hi", "time": "5"}', 1007, "'time'"),
    ("text ending before it starts", {}, '{"type": "text", "channel": "agent", "text": "hi", "time": 5, "end": 2}', 1007, "'end'"),
    ("text before start", None, '{"type": "text", "channel": "agent", "text": "hi"}', 1008, "before 'start'"),
]


@pytest.mark.parametrize(("name", "started", "text", "code", "needle"), TEXT_ERRORS, ids=[c[0] for c in TEXT_ERRORS])
def test_text_errors(name, started, text, code, needle):
    p = _started(**started) if started is not None else NativeProtocol(max_message_bytes=1024)
    with pytest.raises(ProtocolError) as ei:
        p.receive_text(text)
    assert (ei.value.close_code, ei.value.fatal) == (code, True)
    assert needle in ei.value.reason
    assert p.counters.errors == 1 and p.state == "failed"


BINARY_ERRORS = [
    ("audio before start", None, b"\x00\x00\x00", 1008, "before 'start'"),
    ("unknown channel index", {"channels": ["customer"]}, b"\x01\x00\x00", 1007, "channel index 1"),
    ("channel index 7", {}, b"\x07\x00\x00", 1007, "channel index 7"),
    ("L16 odd length", {}, b"\x00\x00\x00\x00", 1007, "16-bit samples"),
    ("header only", {}, b"\x00", 1007, "no payload"),
    ("empty frame", {}, b"", 1007, "no payload"),
    ("oversize binary", {}, b"\x00" + bytes(1024), 1009, "exceeds 1024"),
]


@pytest.mark.parametrize(("name", "started", "data", "code", "needle"), BINARY_ERRORS, ids=[c[0] for c in BINARY_ERRORS])
def test_binary_errors(name, started, data, code, needle):
    p = _started(**started) if started is not None else NativeProtocol(max_message_bytes=1024)
    with pytest.raises(ProtocolError) as ei:
        p.receive_bytes(data)
    assert ei.value.close_code == code and needle in ei.value.reason
    with pytest.raises(ProtocolError) as again:
        p.receive_bytes(b"\x00\x00\x00")
    assert again.value.close_code == 1008 and "already failed" in again.value.reason


def test_odd_length_is_fine_for_g711():
    p = _started(encoding="PCMU", sample_rate=8000)
    assert p.receive_bytes(b"\x01\xff\xff\xff")[0].payload == b"\xff\xff\xff"


@pytest.mark.parametrize("late", [b"\x00\x00\x00", '{"type": "mark", "name": "x"}'])
def test_anything_after_stop_is_1008(late):
    p = _started()
    p.receive_text('{"type": "stop"}')
    with pytest.raises(ProtocolError) as ei:
        p.receive_bytes(late) if isinstance(late, bytes) else p.receive_text(late)
    assert ei.value.close_code == 1008 and "after 'stop'" in ei.value.reason


def test_spec_examples_parse():
    """Every ```json block and the hex dump in the spec go through the real parser."""
    doc = (REPO / "docs" / "protocol-native.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", doc, re.DOTALL)]
    kinds = [b["type"] for b in blocks]
    assert kinds[0] == "start" and "stop" in kinds
    hexdump = re.search(r"```hexdump\n(.*?)```", doc, re.DOTALL).group(1)
    frame = bytes.fromhex("".join(line.split("|")[0].split(":", 1)[1] for line in hexdump.strip().splitlines()))
    p = NativeProtocol()
    events = p.receive_text(json.dumps(blocks[0]))
    events += p.receive_bytes(frame)
    for b in blocks[1:]:
        events += p.receive_text(json.dumps(b))
    audio = [e for e in events if isinstance(e, AudioIn)]
    assert len(audio) == 1 and audio[0].channel == blocks[0]["channels"][frame[0]]
    assert isinstance(events[-1], CallStop)


def test_a_text_only_interaction_takes_turns_and_refuses_audio():
    p = NativeProtocol()
    (start,) = p.receive_text(json.dumps({"type": "start", "call_id": "chat-1", "channels": []}))
    assert start.channels == () and start.encoding == "L16"
    (turn,) = p.receive_text('{"type": "text", "channel": "customer", "text": " I want to dispute a charge ", "time": 4}')
    assert (turn.call_id, turn.channel, turn.text, turn.at, turn.end) == ("chat-1", "customer", "I want to dispute a charge", 4.0, None)
    with pytest.raises(ProtocolError) as ei:
        p.receive_bytes(b"\x00\x00\x00")
    assert ei.value.close_code == 1007 and "channel index 0" in ei.value.reason


def test_eof_without_stop_ends_the_call_once():
    assert NativeProtocol().receive_eof() == []  # nothing started
    p = _started()
    assert [(type(e), e.reason) for e in p.receive_eof()] == [(CallStop, "disconnected")]
    assert p.receive_eof() == []
