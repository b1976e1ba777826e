"""The virtual agent: flows validated, dialogs driven from text, chat through a real server
(the demo backend blocks the card), handoff with context to the agent's desk, and voice over
a Twilio bidirectional stream (the bot's audio recognised back; barge-in clears it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callcue.bot.dialog import Dialog, Handoff, Run, Say
from callcue.bot.flows import FlowError, load_flows
from callcue.bot.slots import fill, parse_amount, parse_date
from callcue.config import REPO_CONFIG_DIR
from tests.serverkit import make_settings, server

NATIVE = {"Authorization": "Bearer demo-native-token"}
SUP = {"Authorization": "Bearer demo-supervisor-token"}


def _bank():
    return load_flows(REPO_CONFIG_DIR / "flows")["bank"]


def _said(outs) -> str:
    return " ".join(o.text for o in outs if isinstance(o, Say))


def test_the_lost_card_task_from_text() -> None:
    d = Dialog(_bank())
    assert "virtual assistant" in _said(d.start())
    assert "last four digits" in _said(d.hear("I think my card was stolen"))
    assert "say just the last four" in _said(d.hear("umm hang on")).lower()  # re-prompt
    assert "date of birth" in _said(d.hear("four four one one"))
    assert "ending in 4411" in _said(d.hear("July 4th 1980"))
    [run] = [o for o in d.hear("yes please") if isinstance(o, Run)]
    assert run.step.kind == "webhook" and run.slots == {"last4": "4411", "dob": "1980-07-04"}
    after = d.action_done(run.step, True, {"status": "blocked"})
    assert "blocked" in _said(after) and "anything else" in _said(after)
    assert d.hear("no that's all")[-1].__class__.__name__ == "End"


def test_handoff_on_request_on_repeated_misunderstanding_on_risk_and_over_a_limit() -> None:
    d = Dialog(_bank()); d.start()  # noqa: E702
    [h] = [o for o in d.hear("can I talk to a real person") if isinstance(o, Handoff)]
    assert h.reason == "caller asked for a person" and "not recognized" in h.context["summary"]
    d = Dialog(_bank()); d.start()  # noqa: E702
    d.hear("blah"); d.hear("blah blah")  # noqa: E702
    assert any(isinstance(o, Handoff) for o in d.hear("more blah"))
    d = Dialog(_bank()); d.start()  # noqa: E702
    assert any(isinstance(o, Handoff) and "abuse" in o.reason for o in d.hear("you idiots", risks={"abuse"}))
    d = Dialog(_bank()); d.start()  # noqa: E702
    d.hear("where is my refund")
    outs = d.hear("seven hundred dollars")
    [h] = [o for o in outs if isinstance(o, Handoff)]
    assert "500" in _said(outs) and h.context["slots"] == {"amount": "700"} and h.context["wanted"] == "payment_status"
    # a request a person handles (the flow's on_intents) goes to one; the flow's own phrases still win
    d = Dialog(_bank()); d.start()  # noqa: E702
    [h] = [o for o in d.hear("a charge I never made is on my bill", [("billing_dispute", 0.9)]) if isinstance(o, Handoff)]
    assert h.reason == "a person handles: billing_dispute"
    d = Dialog(_bank()); d.start()  # noqa: E702
    assert not any(isinstance(o, Handoff) for o in d.hear("how much is the overdraft fee", [("billing_dispute", 0.9)]))
    assert d.task is not None and d.task.id == "hours_and_fees"


def test_slot_types() -> None:
    assert parse_date("the twelfth of may nineteen seventy two") == "1972-05-12"
    assert parse_amount("forty two dollars fifty") == 42.5
    from callcue.bot.flows import Slot

    assert fill(Slot(name="x", type="digits", length=4, prompt="?"), "it's 4 4 1 1") == "4411"
    assert fill(Slot(name="x", type="digits", length=4, prompt="?"), "four one") is None
    assert fill(Slot(name="x", type="yes_no", prompt="?"), "yes that's right") == "yes"
    assert fill(Slot(name="x", type="choice", choices=["savings", "checking"], prompt="?"), "my saving account") == "savings"


def test_a_turn_ends_sooner_on_a_complete_answer_and_later_on_a_trailing_and() -> None:
    from callcue.bot.flows import Slot
    from callcue.bot.turns import LONG_MS, SHORT_MS, hangover_ms

    four = Slot(name="last4", type="digits", length=4, prompt="The last four digits?")
    assert hangover_ms("four four one one", four, False, 600) == SHORT_MS
    assert hangover_ms("four four", four, False, 600) == 600  # not yet complete
    assert hangover_ms("it's four four one one and", four, False, 600) == LONG_MS
    assert hangover_ms("yes", None, True, 600) == SHORT_MS
    assert hangover_ms("I lost my card and", None, False, 600) == LONG_MS
    assert hangover_ms("what are your opening hours", None, False, 600) == SHORT_MS
    assert hangover_ms("I lost my card", None, False, 600) == 600
    assert hangover_ms("", four, False, 600) == 600


def test_the_vad_hangover_follows_the_turn_policy() -> None:
    """The same audio (speech, then 0.4 s of silence, then more speech) is one segment with
    the default 600 ms hang-over and two with 250 ms set between the words."""
    import numpy as np

    from callcue.audio.vad import SpeechEnded, VadSegmenter

    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    voiced = (3000 * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * rng.standard_normal(8000))).astype(np.int16).tobytes()
    gap = bytes(2 * int(8000 * 0.4))

    def ends(hangover: int | None) -> int:
        vad = VadSegmenter(8000, aggressiveness=1)
        n = sum(isinstance(e, SpeechEnded) for e in vad.feed(voiced))
        if hangover is not None:
            vad.set_hangover(hangover)
        n += sum(isinstance(e, SpeechEnded) for e in vad.feed(gap + voiced + bytes(16000)))
        return n

    assert ends(None) == 1 and ends(250) == 2


def test_a_bad_flow_stops_the_server_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text("id: x\nversion: 1\ngreeting: hi\nnot_understood: what\ntasks:\n"
                                     "  - id: t\n    slots: [{name: a, type: digits, prompt: p}]\n")
    with pytest.raises(FlowError, match="needs a length"):
        load_flows(tmp_path)
    (tmp_path / "f.yaml").write_text("id: x\nversion: 1\ngreeting: hi\nnot_understood: what\ntasks:\n"
                                     "  - id: t\n    actions: [{kind: kb_answer, autonomy: approve}]\n")
    with pytest.raises(FlowError, match="only webhook steps can wait"):
        load_flows(tmp_path)


async def test_a_chat_completes_the_lost_card_task_and_a_second_is_handed_to_the_desk(tmp_path: Path) -> None:
    import httpx

    from tests.serverkit import agent

    settings = make_settings(tmp_path)
    async with server(settings) as (ws_base, app):
        base = ws_base.replace("ws://", "http://", 1)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            turns = ["Hi, I lost my debit card", "4 4 1 1", "the fourth of july nineteen eighty", "yes",
                     "what are your opening hours on saturday?", "no that's all"]  # fmt: skip
            r = await http.post("/api/v1/interactions", headers=NATIVE, json={
                "interaction_id": "bot-1", "channel": "chat", "metadata": {"flow": "bank"},
                "turns": [{"role": "customer", "text": t, "time": 10.0 * i} for i, t in enumerate(turns)]})
            assert r.status_code == 200, r.text
            call_id = r.json()["call_id"]
            rec = (await http.get(f"/api/v1/calls/{call_id}", headers=SUP)).json()
            bot = [t["text"] for t in rec["transcripts"] if t["channel"] == "agent"]
            assert any("ending in 4411" in b for b in bot) and any("is blocked" in b for b in bot), bot
            assert any("9 am to 1 pm on Saturdays" in b for b in bot), bot  # answered from the knowledge base
            assert any("Goodbye" in b for b in bot)
            rt = app.state.runtime.get()
            assert rt.demo_backend.blocked[-1]["last4"] == "4411"
            kinds = [e["kind"] for e in (await http.get("/api/v1/audit", params={"call_id": call_id, "limit": 500},
                                                        headers=SUP)).json()["entries"]]  # fmt: skip
            assert {"bot_started", "bot_heard", "bot_said", "bot_action_started", "bot_action_succeeded", "bot_ended"} <= set(kinds)
            # a caller who wants a person: the agent's desk gets the call with its context
            async with agent(ws_base) as desk:
                r = await http.post("/api/v1/interactions", headers=NATIVE, json={
                    "interaction_id": "bot-2", "channel": "chat", "metadata": {"flow": "bank"},
                    "turns": [{"role": "customer", "text": "my card was stolen"},
                              {"role": "customer", "text": "1 2 3 4"},
                              {"role": "customer", "text": "I want to speak to an agent"}]})  # fmt: skip
                cid = r.json()["call_id"]
                ev = await desk.wait_for(lambda e: e.get("type") == "handoff" and e.get("call_id") == cid, timeout=20)
                assert ev["wanted"] == "lost_card" and ev["slots"] == {"last4": "1234"}
                assert ev["reason"] == "caller asked for a person" and "lost card" in ev["summary"]
                assert [t["who"] for t in ev["transcript"]][:2] == ["bot", "caller"]
                assert json.dumps(ev).count("1234") >= 1


@pytest.mark.slow
async def test_a_twilio_caller_hears_the_bot_and_can_interrupt_it(tmp_path: Path) -> None:
    """A Twilio `<Connect><Stream>` with customParameters flow=bank: the greeting comes back
    as media, the caller (espeak-ng) speaks over it and gets a `clear`, and the bot's answer,
    recognised back, asks for the card's last four digits."""
    import base64
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from callcue.asr.select import load_engine
    from callcue.audio.codecs import decode
    from callcue.bot.voice import EspeakVoice
    from callcue.evaluation.asr_eval import decode_clip

    sys.path.insert(0, str(REPO_CONFIG_DIR.parent / "bench"))
    from voicebot import converse  # the benchmark's caller: silence, speech over the greeting, silence

    caller = b"".join(EspeakVoice().synthesize("Hello. I lost my card and I need to block it.", 8000))
    settings = make_settings(tmp_path)
    async with server(settings) as (base, _app):
        c = await converse(base, caller)
    got, speak_at = c.got, c.speech_start
    assert any(m.get("event") == "media" and t < speak_at for t, m in got), "no greeting audio"
    clears = [t for t, m in got if m.get("event") == "clear"]
    assert clears and clears[0] - speak_at < 1.5, "the caller spoke over the bot and playback was not cleared"
    after = b"".join(base64.b64decode(m["media"]["payload"]) for t, m in got if m.get("event") == "media" and t > clears[0])
    assert after, "no answer after the barge-in"
    engine, _ = load_engine(settings.asr)
    with ThreadPoolExecutor(2) as pool:
        heard = await decode_clip(engine, decode("PCMU", after), 8000, pool, settings.vad)
    assert "four" in heard.text.lower() or "digits" in heard.text.lower() or "block" in heard.text.lower(), heard.text


@pytest.mark.slow
async def test_a_twilio_caller_completes_the_lost_card_task_by_voice(tmp_path: Path) -> None:
    """The whole task by voice over a Twilio bidirectional stream: a synthetic caller (the
    Piper voice at 8 kHz) answers each question once the bot's audio has played, the way a
    person would (asked again, they say it again another way); the demo backend blocks the
    card ending 4411; the bot's last answer, recognised back, says so."""
    import asyncio
    import base64
    import time
    from concurrent.futures import ThreadPoolExecutor

    from callcue.asr.select import load_engine
    from callcue.audio.codecs import decode, encode
    from callcue.bot.voice import PiperVoice
    from callcue.clients.twilio_stream import TwilioMessages, connect_twilio
    from callcue.evaluation.asr_eval import decode_clip

    voice = PiperVoice()
    # what the caller answers to each question the bot asks, a second way if asked again
    answers = {"how can i help": ["I lost my card.", "I want to block my lost card."],
               "four digits": ["4 4 1 1.", "Four. Four. One. One."],
               "date of birth": ["July fourth, nineteen eighty.", "The fourth of July, nineteen eighty."],
               "is that right": ["Yes.", "Yes, that's right."]}  # fmt: skip
    asked: dict[str, int] = {}
    settings = make_settings(tmp_path)
    msgs = TwilioMessages(agent_id=None, custom={"flow": "bank"})
    heard: list[tuple[float, bytes]] = []  # (when it arrived, mu-law)
    async with server(settings) as (base, app):
        async with connect_twilio(f"{base}/ws/twilio") as ws:

            async def read() -> None:
                async for raw in ws:
                    m = json.loads(raw)
                    if m.get("event") == "media":
                        heard.append((time.monotonic(), base64.b64decode(m["media"]["payload"])))

            reader = asyncio.create_task(read())
            await ws.send(msgs.connected())
            await ws.send(msgs.start(["inbound"]))
            ts = 0

            async def play(pcm: bytes) -> None:
                nonlocal ts
                ulaw = encode("PCMU", pcm)
                t0 = time.monotonic()
                for i in range(0, len(ulaw), 160):
                    await ws.send(msgs.media("inbound", ts, ulaw[i : i + 160].ljust(160, b"\xff")))
                    ts += 20
                    await asyncio.sleep(max(0.0, t0 + (i // 160 + 1) * 0.02 - time.monotonic()))

            async def until_the_bot_has_spoken(since: int, timeout: float = 25.0) -> int:
                """Silence in, until the bot's answer came and has played out (as Twilio would)."""
                t0 = time.monotonic()
                while time.monotonic() - t0 < timeout:
                    await play(b"\0\0" * 1600)  # 0.2 s
                    new = heard[since:]
                    if new:
                        played_until = new[0][0] + sum(len(b) for _, b in new) / 8000
                        if time.monotonic() > played_until + 0.6 and time.monotonic() - new[-1][0] > 1.0:
                            return len(heard)
                raise AssertionError(f"the bot said nothing within {timeout} s")

            rt = app.state.runtime.get()
            mark = await until_the_bot_has_spoken(0)  # the greeting
            before_last = mark
            for _ in range(8):
                lines = [e.payload["text"] for e in await rt.audit.query(call_id=msgs.call_sid, kind="bot_said")]
                key = next((k for k in answers if k in lines[-1].lower()), None) if lines else None
                if key is None:  # the task is done ("anything else?"), or the bot said something unexpected
                    break
                n = asked.get(key, 0)
                asked[key] = n + 1
                await play(b"".join(voice.synthesize(answers[key][min(n, 1)], 8000)))
                before_last, mark = mark, await until_the_bot_has_spoken(mark)
            await ws.send(msgs.stop())
            await asyncio.sleep(0.3)
            reader.cancel()
        entries = await rt.audit.query(call_id=msgs.call_sid, limit=1000)
        said_heard = [(e.kind, e.payload.get("text")) for e in entries if e.kind in ("bot_heard", "bot_said")]
        assert rt.demo_backend.blocked and rt.demo_backend.blocked[-1]["last4"] == "4411", said_heard
        trail = [e.kind for e in entries]
    assert trail.count("bot_heard") >= 4 and "bot_action_succeeded" in trail
    last = decode("PCMU", b"".join(b for _, b in heard[before_last:]))  # the answer to "yes"
    engine, _ = load_engine(settings.asr)
    with ThreadPoolExecutor(2) as pool:
        answer = await decode_clip(engine, last, 8000, pool, settings.vad)
    assert "blocked" in answer.text.lower() or "replacement" in answer.text.lower(), answer.text


@pytest.mark.slow
async def test_an_asterisk_audiosocket_caller_hears_the_bot_paced_and_can_interrupt_it(tmp_path: Path) -> None:
    """AudioSocket to the flow port: the greeting comes back as 20 ms audio frames of the
    call's own kind, paced to real time (Asterisk plays what it reads at once); the caller
    speaking over it stops them; the answer, recognised back, asks for the card's digits."""
    import asyncio
    import time
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from callcue.asr.select import load_engine
    from callcue.bot.voice import EspeakVoice
    from callcue.clients.demo import free_port
    from callcue.evaluation.asr_eval import decode_clip
    from callcue.platforms.audiosocket import HANGUP, UUID, frame

    caller = b"".join(EspeakVoice().synthesize("Hello. I lost my card and I need to block it.", 8000))
    port = free_port()
    settings = make_settings(tmp_path, platforms={"audiosocket": {"flow": "bank", "flow_port": port}})
    got: list[tuple[float, int, bytes]] = []
    async with server(settings) as (_base, _app):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def read() -> None:
            buf = b""
            while chunk := await reader.read(65536):
                buf += chunk
                while len(buf) >= 3 and len(buf) >= 3 + int.from_bytes(buf[1:3], "big"):
                    n = int.from_bytes(buf[1:3], "big")
                    got.append((time.monotonic(), buf[0], buf[3 : 3 + n]))
                    buf = buf[3 + n :]

        task = asyncio.create_task(read())
        writer.write(frame(UUID, uuid.uuid4().bytes))

        async def play(pcm: bytes) -> None:
            t0 = time.monotonic()
            for i in range(0, len(pcm), 320):
                writer.write(frame(0x10, pcm[i : i + 320].ljust(320, b"\0")))
                await writer.drain()
                await asyncio.sleep(max(0.0, t0 + (i // 320 + 1) * 0.02 - time.monotonic()))

        await play(b"\0\0" * 16000)
        speech_start = time.monotonic()
        await play(caller)
        speech_end = time.monotonic()
        await play(b"\0\0" * 32000)
        writer.write(frame(HANGUP))
        await writer.drain()
        await asyncio.sleep(0.3)
        task.cancel()
        writer.close()
    assert got and all(kind == 0x10 and len(pcm) == 320 for _, kind, pcm in got), "only 20 ms slin frames go to Asterisk"
    greeting = [t for t, _, _ in got if t < speech_start]
    assert len(greeting) > 25, "no greeting audio"
    span = greeting[-1] - greeting[0]
    assert span >= 0.02 * len(greeting) - 0.2, f"{len(greeting)} frames in {span:.2f} s: a burst, not paced"
    # barge-in: frames stop soon after the caller starts, and resume only after they finish
    during = [t for t, _, _ in got if speech_start + 1.2 < t < speech_end]
    assert not during, f"{len(during)} bot frames while the caller spoke"
    after = b"".join(pcm for t, _, pcm in got if t > speech_end)
    assert after, "no answer after the caller spoke"
    engine, _ = load_engine(settings.asr)
    with ThreadPoolExecutor(2) as pool:
        heard = await decode_clip(engine, after, 8000, pool, settings.vad)
    assert "four" in heard.text.lower() or "digits" in heard.text.lower() or "block" in heard.text.lower(), heard.text


async def test_a_chat_over_the_native_socket_is_answered_by_the_flow(tmp_path: Path) -> None:

    from callcue.clients.twilio_stream import connect_native

    async with server(make_settings(tmp_path)) as (base, _app):
        async with connect_native(f"{base}/ws/native") as ws:
            await ws.send(json.dumps({"type": "start", "call_id": "chat-native-1", "channels": [],
                                      "metadata": {"flow": "bank"}}))  # fmt: skip
            assert "virtual assistant" in await bot_line(ws, "virtual assistant")
            await ws.send(json.dumps({"type": "text", "channel": "customer", "text": "I lost my card"}))
            assert "last four digits" in await bot_line(ws, "last four")
            await ws.send(json.dumps({"type": "text", "channel": "customer", "text": "let me talk to an agent"}))
            assert "colleagues" in await bot_line(ws, "colleagues")
            await ws.send(json.dumps({"type": "stop"}))


@pytest.mark.slow
async def test_a_native_audio_caller_hears_the_bot_in_its_own_encoding(tmp_path: Path) -> None:
    """A native-protocol call with audio and a flow: the greeting comes back as binary
    frames `[2][audio]` in the start's encoding and rate (16 kHz L16 here), each sentence
    followed by a mark; recognised back, it is the greeting."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from callcue.asr.select import load_engine
    from callcue.clients.twilio_stream import connect_native
    from callcue.evaluation.asr_eval import decode_clip
    from callcue.platforms.native import encode_audio_frame

    settings = make_settings(tmp_path)
    audio, marks, lines = b"", [], []
    async with server(settings) as (base, _app):
        async with connect_native(f"{base}/ws/native") as ws:
            await ws.send(json.dumps({"type": "start", "call_id": "native-voice-1", "channels": ["customer"],
                                      "encoding": "L16", "sample_rate": 16000, "metadata": {"flow": "bank"}}))  # fmt: skip

            async def listen() -> None:
                nonlocal audio
                async for m in ws:
                    if isinstance(m, bytes):
                        assert m[0] == 2 and len(m) % 2 == 1
                        audio += m[1:]
                    else:
                        msg = json.loads(m)
                        (marks if msg.get("type") == "mark" else lines).append(msg)

            task = asyncio.create_task(listen())
            for _ in range(150):  # 3 s of the caller's silence, in real time
                await ws.send(encode_audio_frame(0, b"\0\0" * 320))
                await asyncio.sleep(0.02)
            await ws.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(task, 20)
    assert any(m.get("type") == "bot" and "virtual assistant" in m["text"] for m in lines)
    assert marks and len(audio) / 32000 > 3.0
    engine, _ = load_engine(settings.asr)
    with ThreadPoolExecutor(2) as pool:
        heard = await decode_clip(engine, audio, 16000, pool, settings.vad)
    assert "northwind" in heard.text.lower() or "calling" in heard.text.lower() or "assistant" in heard.text.lower(), heard.text


async def test_the_kill_switch_sends_a_flows_calls_to_a_person(tmp_path: Path) -> None:
    import httpx

    async with server(make_settings(tmp_path)) as (ws_base, _app):
        base = ws_base.replace("ws://", "http://", 1)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            flows = (await http.get("/api/v1/flows", headers=SUP)).json()["flows"]
            assert [(f["id"], f["paused"]) for f in flows] == [("bank", False)]
            agent_h = {"Authorization": "Bearer demo-agent-token"}
            assert (await http.post("/api/v1/flows/bank/pause", json={}, headers=agent_h)).status_code == 403
            r = await http.post("/api/v1/flows/bank/pause", json={"reason": "backend down"}, headers=SUP)
            assert r.json()["paused"] is True
            r = await http.post("/api/v1/interactions", headers=NATIVE, json={
                "interaction_id": "paused-1", "channel": "chat", "metadata": {"flow": "bank"},
                "turns": [{"role": "customer", "text": "I lost my card"}]})
            rec = (await http.get(f"/api/v1/calls/{r.json()['call_id']}", headers=SUP)).json()
            assert not [t for t in rec["transcripts"] if t["channel"] == "agent"]  # the bot said nothing
            assert rec["call"]["agent_id"] == "agent-1"  # a person has it
            assert (await http.post("/api/v1/flows/bank/resume", json={}, headers=SUP)).json()["paused"] is False
            kinds = [e["kind"] for e in (await http.get("/api/v1/audit", params={"kind": "flow_paused"}, headers=SUP)).json()["entries"]]
            assert kinds == ["flow_paused"]


def test_eval_bot_prints_its_table(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "callcue.cli", "eval", "bot", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "CALLCUE_MODELS_DIR": str(tmp_path / "m")})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "task success" in out.stdout and "turns to completion" in out.stdout
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["scripted"]["callers"] >= 10 and res["scripted"]["task_success"] >= 0.8


APPROVAL_FLOW = """
id: approvals
version: 1
greeting: "Hello, refunds desk."
not_understood: "Sorry?"
tasks:
  - id: refund
    phrases: ["refund"]
    slots:
      - {name: amount, type: amount, prompt: "How much?"}
    actions:
      - {kind: webhook, url: "$backend/payments/status", payload: {amount: "$amount"}, autonomy: approve, deadline_s: 20,
         hold: "Please hold while a supervisor approves the refund."}
    done: "The refund of $amount is approved and on its way."
"""


def approval_flows(tmp_path: Path) -> Path:
    """A flows folder with the bank flow and APPROVAL_FLOW, whose refund waits on a supervisor."""
    import shutil

    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(REPO_CONFIG_DIR / "flows" / "bank.yaml", flows / "bank.yaml")
    (flows / "approvals.yaml").write_text(APPROVAL_FLOW)
    return flows


async def bot_line(ws, containing: str, timeout: float = 20) -> str:
    """The next line of the virtual agent on a native chat socket that contains `containing`."""
    import asyncio

    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if msg.get("type") == "bot" and containing in msg["text"]:
            return str(msg["text"])


async def hold_for_a_refund(ws, call_id: str, timeout: float = 20) -> None:
    """A chat with APPROVAL_FLOW up to the refund of 80 waiting on a supervisor (the caller holds)."""
    await ws.send(json.dumps({"type": "start", "call_id": call_id, "channels": [], "metadata": {"flow": "approvals"}}))
    await bot_line(ws, "refunds desk", timeout)
    await ws.send(json.dumps({"type": "text", "channel": "customer", "text": "I need a refund"}))
    await bot_line(ws, "How much", timeout)
    await ws.send(json.dumps({"type": "text", "channel": "customer", "text": "80 dollars"}))
    await bot_line(ws, "Please hold", timeout)


async def test_a_bot_action_waits_for_a_supervisors_approval_while_the_caller_holds(tmp_path: Path) -> None:

    from callcue.clients.twilio_stream import connect_native
    from tests.serverkit import SUPERVISOR_TOKEN, agent

    flows = approval_flows(tmp_path)
    async with server(make_settings(tmp_path, bot={"flows_dir": str(flows)})) as (base, _app):
        async with agent(base, token=SUPERVISOR_TOKEN) as sup, connect_native(f"{base}/ws/native") as ws:
            await hold_for_a_refund(ws, "chat-approve-1")
            req = await sup.wait_for(lambda e: e.get("type") == "bot_approval_request", timeout=20)
            assert req["task"] == "refund" and req["slots"] == {"amount": "80"}
            await sup.ws.send(json.dumps({"type": "bot_approve", "action_id": req["action_id"], "note": "fine"}))
            await sup.wait_for(lambda e: e.get("type") == "bot_approve_result", timeout=20)
            assert "is approved" in await bot_line(ws, "approved and on its way")
            await ws.send(json.dumps({"type": "stop"}))


async def test_flow_versions_are_promoted_and_rolled_back_and_a_rollback_outlives_a_restart(tmp_path: Path) -> None:
    import asyncio
    import shutil

    import httpx

    from callcue.clients.twilio_stream import connect_native
    from tests.serverkit import SUPERVISOR_TOKEN

    flows = tmp_path / "flows"
    shutil.copytree(REPO_CONFIG_DIR / "flows", flows)
    bank = (flows / "bank.yaml").read_text()
    sup = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}

    async def greeting(base: str, n: int) -> str:
        async with connect_native(f"{base}/ws/native") as ws:
            await ws.send(json.dumps({"type": "start", "call_id": f"ver-{n}", "channels": [], "metadata": {"flow": "bank"}}))
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if msg.get("type") == "bot":
                    await ws.send(json.dumps({"type": "stop"}))
                    return str(msg["text"])

    settings = make_settings(tmp_path, bot={"flows_dir": str(flows)})
    async with server(settings) as (base, _app):
        assert "Northwind Bank" in await greeting(base, 1)
    v2 = bank.replace("version: ", "version: 1", 1).replace("Thank you for calling Northwind Bank", "Welcome to Northwind Bank, version two")
    assert v2 != bank
    (flows / "bank.yaml").write_text(v2)
    async with server(settings) as (base, _app):  # a higher version number on disk is promoted when it loads
        assert "version two" in await greeting(base, 2)
        async with httpx.AsyncClient(base_url=base.replace("ws", "http")) as http:
            listed = (await http.get("/api/v1/flows/bank/versions", headers=sup)).json()["versions"]
            assert len(listed) == 2 and [v["active"] for v in listed] == [False, True]
            assert (await http.post("/api/v1/flows/bank/rollback", headers={"Authorization": "Bearer demo-agent-token"},
                                    json={})).status_code == 403  # fmt: skip
            r = await http.post("/api/v1/flows/bank/rollback", headers=sup, json={"reason": "v2 confuses callers"})
            assert r.status_code == 200, r.text
        assert "Thank you for calling" in await greeting(base, 3)  # new calls take the rolled-back version
    async with server(settings) as (base, _app):  # the file on disk is still v2: the rollback holds
        assert "Thank you for calling" in await greeting(base, 4)
        async with httpx.AsyncClient(base_url=base.replace("ws", "http")) as http:
            version = next(v["version"] for v in (await http.get("/api/v1/flows/bank/versions", headers=sup)).json()["versions"]
                           if not v["active"])  # fmt: skip
            r = await http.post(f"/api/v1/flows/bank/versions/{version}/promote", headers=sup, json={"reason": "fixed"})
            assert r.status_code == 200 and r.json()["version"] == version
            assert (await http.post("/api/v1/flows/bank/versions/999/promote", headers=sup, json={})).status_code == 404
            trail = (await http.get("/api/v1/audit?kind=flow_promoted", headers=sup)).json()["entries"]
        assert "version two" in await greeting(base, 5)
    assert [e["actor"] for e in trail] == ["system", "system", "supervisor-1", "supervisor-1"]
    assert trail[2]["payload"]["reason"] == "v2 confuses callers"
