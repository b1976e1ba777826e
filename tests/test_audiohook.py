"""Genesys Cloud AudioHook v2: the message sequences of the protocol documentation and of the
reference implementation's client and test suite, against the sans-I/O parser and a real
server with real speech."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from callcue.clients.audiohook_client import (
    DEMO_AUDIOHOOK_API_KEY,
    DEMO_AUDIOHOOK_CLIENT_SECRET,
    DEMO_ORGANIZATION_ID,
    MONO_PCMU,
    STEREO_PCMU,
    AudioHookSession,
    audiohook_headers,
    connect_audiohook,
    media_frames,
)
from callcue.config import AudioHookApiKey, AudioHookPlatformConfig
from callcue.platforms.audiohook import (
    NULL_UUID,
    AudioHookProtocol,
    authenticate,
    choose_media,
)
from callcue.platforms.audiohook_auth import NonceCache, verify_upgrade
from callcue.platforms.base import (
    AudioIn,
    CallStart,
    CallStop,
    CloseConnection,
    EndUtterance,
    GapFilled,
    Handshake,
    Heartbeat,
    Paused,
    ProtocolError,
    Resumed,
)
from tests.conftest import require_shared
from tests.serverkit import (
    SUPERVISOR_TOKEN,
    agent,
    make_settings,
    quick_disclosure,
    real_call,
    server,
)

SID = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
CONV = "090eaa2f-72fa-480a-83e0-8667ff89c0ec"


class Client:
    """Builds client messages for the sans-I/O tests, numbering them as Genesys does."""

    def __init__(self, p: AudioHookProtocol) -> None:
        self.p, self.seq, self.serverseq, self.position = p, 0, 0, 0.0

    def send(self, mtype: str, params: dict | None = None, **override: Any) -> list:
        self.seq += 1
        msg = {"version": "2", "id": SID, "type": mtype, "seq": self.seq, "serverseq": self.serverseq,
               "position": f"PT{self.position}S", "parameters": params or {}, **override}
        return self.p.receive_text(json.dumps(msg))

    def replies(self) -> list[dict]:
        out = [json.loads(m) for m in self.p.data_to_send()]
        if out:
            self.serverseq = out[-1]["seq"]
        return out

    def open(self, conv: str = CONV, media: list | None = None, **extra: Any) -> list:
        return self.send("open", {"organizationId": DEMO_ORGANIZATION_ID, "conversationId": conv,
                                  "participant": {"id": str(uuid.uuid4()), "ani": "+1555", "aniName": "", "dnis": "+1666"},
                                  "media": media or [STEREO_PCMU, MONO_PCMU], **extra})


def proto(**kw: Any) -> tuple[AudioHookProtocol, Client]:
    p = AudioHookProtocol(session_id=SID, organization_id=DEMO_ORGANIZATION_ID, **kw)
    return p, Client(p)


def test_open_audio_ping_close_follow_the_protocol() -> None:
    p, c = proto()
    [start] = c.open(supportedLanguages=True, customConfig={"agent_id": "agent-1"})
    [opened] = c.replies()
    assert opened["type"] == "opened" and opened["seq"] == 1 and opened["clientseq"] == 1 and opened["id"] == SID
    assert opened["parameters"] == {"media": [STEREO_PCMU], "startPaused": False, "supportedLanguages": ["en-US"]}
    assert isinstance(start, CallStart) and start.call_id == CONV and start.channels == ("customer", "agent")
    assert (start.encoding, start.sample_rate, start.agent_id, start.join) == ("PCMU", 8000, "agent-1", "exact")
    cust, agt = p.receive_bytes(bytes([1, 2, 3, 4, 5, 6]))  # interleaved external, internal
    assert isinstance(cust, AudioIn) and cust.payload == bytes([1, 3, 5]) and agt.payload == bytes([2, 4, 6])
    assert agt.channel == "agent"
    c.position = 0.4
    assert isinstance(c.send("ping", {"rtt": "PT0.045S"})[0], Heartbeat)
    [pong] = c.replies()
    assert (pong["type"], pong["seq"], pong["clientseq"], pong["parameters"]) == ("pong", 2, 2, {})
    assert p.rtt == pytest.approx(0.045)
    assert c.send("update", {"language": "es-ES"}) == [EndUtterance(CONV)] and p.language == "es-ES"
    stop, close = c.send("close", {"reason": "end"})
    assert isinstance(stop, CallStop) and not stop.linger and isinstance(close, CloseConnection)
    assert c.replies()[0]["type"] == "closed"


def test_internal_as_customer_and_l16_mono_when_only_that_is_offered() -> None:
    media = [{"type": "audio", "format": "L16", "channels": ["internal"], "rate": 8000}]
    p, c = proto(customer="internal")
    [start] = c.open(media=media)
    assert start.channels == ("customer",) and start.encoding == "L16"
    assert c.replies()[0]["parameters"]["media"] == media
    [a] = p.receive_bytes(np.array([1, -1], "<i2").tobytes())
    assert np.frombuffer(a.payload, "<i2").tolist() == [1, -1]
    with pytest.raises(ProtocolError, match="whole"):
        p.receive_bytes(b"\x01\x02\x03")


def test_media_choice_is_one_offer_unmodified_and_stereo_first() -> None:
    odd = {"type": "audio", "format": "opus", "channels": ["external"], "rate": 48000}
    stereo = {"type": "audio", "format": "L16", "channels": ["internal", "external"], "rate": 8000}
    assert choose_media([odd, MONO_PCMU, stereo]) is stereo
    assert choose_media([odd]) is None and choose_media("PCMU") is None


def test_probe_is_answered_without_a_call() -> None:
    p, c = proto()
    assert c.open(conv=NULL_UUID) == []
    assert c.replies()[0]["type"] == "opened"
    assert p.receive_bytes(b"\xff" * 16) == []
    assert c.send("close", {"reason": "end"}) == [CloseConnection(1000, "closed")]
    assert c.replies()[0]["type"] == "closed"


@pytest.mark.parametrize(("override", "words"), [
    ({"seq": 5}, "seq 5 out of order"),
    ({"serverseq": 7}, "serverseq 7"),
    ({"id": str(uuid.uuid4())}, "session's id"),
    ({"version": "1"}, "version"),
    ({"position": "1.5"}, "ISO 8601"),
])
def test_envelope_errors_become_disconnect_error_then_close_closed(override: dict, words: str) -> None:
    p, c = proto()
    c.open()
    c.replies()
    with pytest.raises(ProtocolError, match=words) as ei:
        c.send("ping", **override)
    assert p.fail(ei.value) is True
    [disc] = c.replies()
    assert disc["type"] == "disconnect" and disc["parameters"]["reason"] == "error" and words.split()[0] in disc["parameters"]["info"]
    assert p.receive_bytes(b"\xff" * 16) == []  # audio in flight meanwhile is dropped, not an error
    if "seq" in override:
        c.seq = override["seq"]  # the client's own numbering goes on from what it sent
    stop, close = c.send("close", {"reason": "disconnect"})
    assert isinstance(stop, CallStop) and not stop.linger and isinstance(close, CloseConnection)
    assert c.replies()[0]["type"] == "closed"


def test_position_may_not_go_back() -> None:
    p, c = proto()
    c.open()
    c.replies()
    c.position = 2.0
    c.send("ping")
    c.position = 1.0
    with pytest.raises(ProtocolError, match="goes back"):
        c.send("ping")


def test_unsupported_media_is_an_error_not_a_call() -> None:
    p, c = proto()
    with pytest.raises(ProtocolError, match="no offered media") as ei:
        c.open(media=[{"type": "audio", "format": "opus", "channels": ["external"], "rate": 48000}])
    assert ei.value.close_code == 1003 and p.call_id is None


def test_pause_resume_and_discarded_keep_the_call_clock() -> None:
    p, c = proto()
    c.open(media=[MONO_PCMU])
    c.replies()
    p.receive_bytes(b"\xff" * 800)
    p.pause()
    assert c.replies()[0]["type"] == "pause"
    paused, ends = c.send("paused")
    assert isinstance(paused, Paused) and isinstance(ends, EndUtterance) and p.state == "paused"
    with pytest.raises(ProtocolError, match="audio in state paused"):
        p.receive_bytes(b"\xff" * 160)
    p.resume()
    assert c.replies()[0]["type"] == "resume"
    c.position = 0.1 + 2.0
    resumed, gap, silence = c.send("resumed", {"start": "PT0.1S", "discarded": "PT2S"})
    assert isinstance(resumed, Resumed) and isinstance(gap, GapFilled) and gap.missing_seconds == 2.0
    assert silence.payload == b"\xff" * 16000 and silence.offset == pytest.approx(0.1)
    # a discard the position does not show (the audio came anyway) is no gap
    assert c.send("discarded", {"start": "PT2.1S", "discarded": "PT0.5S"}) == []
    c.position = 2.6  # the stream ran on 0.5 s with nothing sent: that is the gap
    gap2, more = c.send("discarded", {"start": "PT9.0S", "discarded": "PT0.5S"})
    assert more.offset == pytest.approx(2.1) and len(more.payload) == 4000
    [a] = p.receive_bytes(b"\x00" * 80)
    assert a.offset == pytest.approx(2.6)


def test_gaps_cannot_run_ahead_of_the_session() -> None:
    p, c = proto(gap_slack_s=5.0)
    c.open(media=[MONO_PCMU])
    c.position = 600.0
    with pytest.raises(ProtocolError, match="gaps"):
        c.send("discarded", {"start": "PT0S", "discarded": "PT600S"})


def test_refused_credentials_answer_open_with_unauthorized() -> None:
    p, c = proto(refused="unknown X-API-KEY")
    assert c.open() == []
    [disc] = c.replies()
    assert disc["type"] == "disconnect" and disc["parameters"] == {"reason": "unauthorized", "info": "unknown X-API-KEY"}
    assert c.send("close", {"reason": "disconnect"}) == [CloseConnection(1000, "closed")]


def test_organization_must_match_the_upgrade() -> None:
    p = AudioHookProtocol(session_id=SID, organization_id=str(uuid.uuid4()))
    c = Client(p)
    assert c.open() == []
    assert c.replies()[0]["parameters"]["reason"] == "unauthorized"


def test_lost_socket_and_reconnect_close_leave_the_call_waiting() -> None:
    p, c = proto()
    c.open()
    [stop] = p.receive_eof()
    assert stop.linger and stop.reason == "disconnected"
    p, c = proto()
    c.open()
    stop, _ = c.send("close", {"reason": "reconnect"})
    assert stop.linger


# -- authentication ----------------------------------------------------------------------
DOC_HEADERS = {
    "host": "audiohook.example.com",
    "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
    "audiohook-session-id": SID,
    "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "x-api-key": DEMO_AUDIOHOOK_API_KEY,
    "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
                       '"audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
                       'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430',
}
DOC_URL = "wss://audiohook.example.com/api/v1/voicebiometrics/ws"


def test_the_documentation_example_signature_verifies_once() -> None:
    nonces = NonceCache()
    check = lambda h, **kw: verify_upgrade(DOC_URL, h, DEMO_AUDIOHOOK_API_KEY, DEMO_AUDIOHOOK_CLIENT_SECRET,
                                           max_age_s=10, now=kw.get("now", 1641013204), nonces=nonces)
    assert check(DOC_HEADERS) is None
    assert "replayed" in check(DOC_HEADERS)
    assert "older than 10 s" in check(DOC_HEADERS, now=1641013300)
    tampered = {**DOC_HEADERS, "audiohook-correlation-id": str(uuid.uuid4())}
    assert "does not verify" in check(tampered)


def cfg(secret: str = DEMO_AUDIOHOOK_CLIENT_SECRET) -> AudioHookPlatformConfig:
    return AudioHookPlatformConfig(api_keys=[AudioHookApiKey(api_key=DEMO_AUDIOHOOK_API_KEY, client_secret=secret)])


def hs(headers: dict[str, str], url: str = "ws://callcue.test/ws/audiohook") -> Handshake:
    return Handshake(url=url, headers={k.lower(): v for k, v in headers.items()}, client="127.0.0.1")


def test_authenticate_signed_unsigned_and_wrong_keys() -> None:
    url = "ws://callcue.test/ws/audiohook"
    good = audiohook_headers(url, session_id=str(uuid.uuid4()))
    assert authenticate(hs(good), cfg()) is None
    assert "unknown X-API-KEY" in authenticate(hs({**audiohook_headers(url, session_id=str(uuid.uuid4()), api_key="bm9wZQ==")}), cfg())
    unsigned = audiohook_headers(url, session_id=str(uuid.uuid4()), client_secret=None)
    assert "Signature and Signature-Input are required" in authenticate(hs(unsigned), cfg())
    assert authenticate(hs(unsigned), cfg(secret="")) is None
    wrong = audiohook_headers(url, session_id=str(uuid.uuid4()), client_secret="d3Jvbmctc2VjcmV0LWZvci10aGlzLWtleQ==")
    assert "does not verify" in authenticate(hs(wrong), cfg())
    stale = audiohook_headers(url, session_id=str(uuid.uuid4()),
                              created=datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=60))
    assert authenticate(hs(stale), cfg()) is not None
    other_url = audiohook_headers("ws://elsewhere.test/ws/audiohook", session_id=str(uuid.uuid4()))
    assert "does not verify" in authenticate(hs(other_url), cfg())
    no_session = {k: v for k, v in good.items() if k != "Audiohook-Session-Id"}
    assert "audiohook-session-id" in authenticate(hs(no_session), cfg())


# -- a real server -----------------------------------------------------------------------
def _words(text: str) -> set[str]:
    return {w.strip(".,!?'\"").lower() for w in text.split()}


async def test_a_genesys_conversation_reaches_the_desk_with_transcript_and_hint(tmp_path: Path) -> None:
    audio = real_call(require_shared())
    frames = media_frames(audio, STEREO_PCMU)
    s = make_settings(tmp_path, understanding=quick_disclosure(tmp_path))
    conv = str(uuid.uuid4())
    async with server(s) as (base, _app), agent(base, SUPERVISOR_TOKEN) as desk:
        sid = str(uuid.uuid4())
        async with connect_audiohook(f"{base}/ws/audiohook", sid) as ws:
            ah = AudioHookSession(ws, sid)
            opened = await ah.open(conv, custom={"agent_id": "agent-1"})
            assert opened["type"] == "opened" and opened["parameters"]["media"] == [STEREO_PCMU]
            assert opened["parameters"]["supportedLanguages"] == ["en-US"]
            await ah.ping()
            await ah.stream(frames, speed=4.0, ping_every_s=3.0)
            closed = await ah.close("end")
            assert closed["clientseq"] == ah.seq
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ah.protocol_errors == [] and ws.close_code == 1000
        await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == conv, 90)
        finals = [e for e in desk.of_type("transcript") if e["is_final"] and e["call_id"] == conv]
        by_ch = {ch: " ".join(f["text"] for f in finals if f["channel"] == ch) for ch in ("customer", "agent")}
        assert {"country", "ask"} <= _words(by_ch["customer"]), by_ch
        assert {"glad", "phil"} & _words(by_ch["agent"]), by_ch
        hints = [h for h in desk.of_type("hint") if h["call_id"] == conv]
        assert any("disclosure" in h["title"].lower() for h in hints), hints
        started = [e for e in desk.of_type("call_started") if e["call_id"] == conv]
        assert len(started) == 1 and started[0].get("platform", "audiohook") == "audiohook"


async def test_probe_and_bad_sessions_get_audiohook_errors_while_a_call_runs(tmp_path: Path) -> None:
    audio = real_call(require_shared())
    frames = media_frames(audio, MONO_PCMU)
    s = make_settings(tmp_path)
    url = None
    conv = str(uuid.uuid4())
    async with server(s) as (base, app):
        url = f"{base}/ws/audiohook"
        async with agent(base, SUPERVISOR_TOKEN) as desk:
            sid = str(uuid.uuid4())
            async with connect_audiohook(url, sid) as live_ws:
                live = AudioHookSession(live_ws, sid)
                assert (await live.open(conv, [MONO_PCMU]))["type"] == "opened"
                streaming = asyncio.create_task(live.stream(frames, speed=2.0))

                async def session(open_media: list | None = None, **connect_kw: Any) -> tuple[AudioHookSession, dict]:
                    sid = str(uuid.uuid4())
                    ws = await connect_audiohook(url, sid, **connect_kw)
                    ah = AudioHookSession(ws, sid)
                    first = await ah.open(str(uuid.uuid4()), open_media)
                    return ah, first

                # the connection probe: opened, then closed, and no call
                sid = str(uuid.uuid4())
                async with connect_audiohook(url, sid) as ws:
                    probe = AudioHookSession(ws, sid)
                    assert (await probe.open(NULL_UUID))["type"] == "opened"
                    await probe.close("end")
                    await asyncio.wait_for(ws.wait_closed(), 10)
                # credentials: unauthorized, in AudioHook's own terms
                for kw in ({"client_secret": "d3Jvbmctc2VjcmV0LWZvci10aGlzLWtleQ=="}, {"api_key": "bm8tc3VjaC1rZXk="},
                           {"client_secret": None}):
                    ah, first = await session(**kw)
                    assert first["type"] == "disconnect" and first["parameters"]["reason"] == "unauthorized", first
                    await ah.close("disconnect")
                    await asyncio.wait_for(ah.ws.wait_closed(), 10)
                # unsupported media
                ah, first = await session([{"type": "audio", "format": "opus", "channels": ["external"], "rate": 48000}])
                assert first["type"] == "disconnect" and first["parameters"]["reason"] == "error"
                assert "no offered media" in first["parameters"]["info"]
                await ah.close("disconnect")
                # wrong sequence number, then an oversized frame
                ah, first = await session()
                await ah.send("ping", seq=ah.seq + 3)
                disc = await ah.expect("disconnect")
                assert disc["parameters"]["reason"] == "error" and "out of order" in disc["parameters"]["info"]
                ah.seq += 3
                await ah.close("disconnect")
                ah, first = await session()
                await ah.ws.send(b"\xff" * (s.server.max_frame_bytes + 2))
                disc = await ah.expect("disconnect")
                assert "exceeds" in disc["parameters"]["info"]
                await ah.close("disconnect")
                await streaming
                await live.close("end")
            ended = await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == conv, 90)
            assert ended
            finals = [e for e in desk.of_type("transcript") if e["is_final"] and e["call_id"] == conv]
            assert {"country"} <= _words(" ".join(f["text"] for f in finals))
            started = {e["call_id"] for e in desk.of_type("call_started")}
            assert NULL_UUID not in started
        async with httpx.AsyncClient(base_url=base.replace("ws", "http")) as http:
            rejected = (await http.get("/metrics", headers={"Authorization": "Bearer demo-metrics-token"})).text
            assert 'platform="audiohook"' in rejected


async def test_a_continued_session_resumes_the_same_call(tmp_path: Path) -> None:
    audio = real_call(require_shared())
    frames = media_frames(audio, STEREO_PCMU)
    half = len(frames) // 2
    s = make_settings(tmp_path)
    conv = str(uuid.uuid4())
    async with server(s) as (base, app):
        url = f"{base}/ws/audiohook"
        async with agent(base, SUPERVISOR_TOKEN) as desk:
            sid1 = str(uuid.uuid4())
            async with connect_audiohook(url, sid1) as ws:
                first = AudioHookSession(ws, sid1)
                await first.open(conv)
                await first.stream(frames[:half], speed=4.0)
                await first.close("reconnect")
            calls = app.state.runtime.get().calls
            assert conv in calls.calls  # waiting for the continued session, not ended
            sid2 = str(uuid.uuid4())
            async with connect_audiohook(url, sid2) as ws:
                second = AudioHookSession(ws, sid2)
                opened = await second.open(conv, continued=[{"id": sid1, "serverseq": first.serverseq, "clientseq": first.seq}])
                assert opened["type"] == "opened"
                await second.stream(frames[half:half + len(frames) // 4], speed=4.0)
            # the socket dropped without close: the call waits again; a third session goes on
            await asyncio.sleep(0.3)
            assert conv in calls.calls
            sid3 = str(uuid.uuid4())
            async with connect_audiohook(url, sid3) as ws:
                third = AudioHookSession(ws, sid3)
                await third.open(conv, continued=[{"id": sid2, "serverseq": second.serverseq, "clientseq": second.seq}])
                # the seconds the call waited for this session are on its clock (as silence)
                sent = (half + len(frames) // 4) * 0.1
                clock = calls.calls[conv].channels["customer"].audio_seconds
                assert sent + 0.3 <= clock <= sent + s.platforms.reconnect_grace_s, (sent, clock)
                await third.stream(frames[half + len(frames) // 4:], speed=4.0)
                await third.close("end")
            await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == conv, 90)
            assert len([e for e in desk.of_type("call_started") if e["call_id"] == conv]) == 1
            finals = [e for e in desk.of_type("transcript") if e["is_final"] and e["call_id"] == conv]
            # the call clock went on across sessions: the agent's last sentence sits after JFK's
            cust = [f for f in finals if f["channel"] == "customer"]
            last_agent = [f for f in finals if f["channel"] == "agent"][-1]
            assert last_agent["start"] > min(f["start"] for f in cust) + 5.0, finals
            assert last_agent["end"] <= audio.duration + 2.0  # plus the reconnect gaps, filled


async def test_a_paused_stream_is_not_idle(tmp_path: Path) -> None:
    s = make_settings(tmp_path, platforms={"idle_timeout_s": 1.0})
    async with server(s) as (base, app):
        sid = str(uuid.uuid4())
        conv = str(uuid.uuid4())
        async with connect_audiohook(f"{base}/ws/audiohook", sid) as ws:
            ah = AudioHookSession(ws, sid)
            await ah.open(conv, [MONO_PCMU])
            await ah.audio(b"\xff" * 800)
            await ah.send("paused")
            await asyncio.sleep(2.0)  # twice the idle timeout, no audio and no ping
            ah.samples += 16000
            await ah.send("resumed", {"start": "PT0.1S", "discarded": "PT2S"})
            await ah.audio(b"\xff" * 800)
            assert (await ah.ping())["type"] == "pong"
            await asyncio.sleep(1.6)  # active again: the idle timeout runs
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1008 and "no audio" in ws.close_reason


async def test_pause_recording_asks_genesys_to_pause(tmp_path: Path) -> None:
    """A playbook's `call_control: pause_recording` (the card-number playbook) reaches an
    AudioHook call as the server's `pause`; `resume_recording` as `resume`."""
    s = make_settings(tmp_path)
    async with server(s) as (base, app):
        sid, conv = str(uuid.uuid4()), str(uuid.uuid4())
        async with connect_audiohook(f"{base}/ws/audiohook", sid) as ws:
            ah = AudioHookSession(ws, sid)
            await ah.open(conv, [MONO_PCMU])
            await ah.audio(b"\xff" * 800)
            calls = app.state.runtime.get().calls
            for _ in range(50):
                if calls.streams.remotes.get(conv):
                    break
                await asyncio.sleep(0.05)
            assert calls.streams.remote(conv, "pause") == 1
            await ah.audio(b"\xff" * 800)  # the next frame carries the server's pause back
            assert (await ah.expect("pause"))["parameters"] == {}
            await ah.send("paused")
            assert calls.streams.remote(conv, "resume") == 1
            await ah.ping()
            await ah.expect("resume")
            ah.samples += 8000
            await ah.send("resumed", {"start": "PT0.2S", "discarded": "PT1S"})
            await ah.audio(b"\xff" * 800)
            await ah.close("end")
            assert ah.protocol_errors == []
        for _ in range(200):  # detached once the call's stop (after `closed` went out) is done
            if conv not in calls.streams.remotes:
                break
            await asyncio.sleep(0.05)
        assert conv not in calls.streams.remotes


def test_positions_as_javascript_prints_them() -> None:
    """The reference client formats `PT${seconds.toString()}S`: a float's shortest repr."""
    p, c = proto()
    c.open()
    for pos in ("0.30000000000000004", "1.1", "12", "12."):
        c.position = pos  # type: ignore[assignment]
        c.send("ping")
    with pytest.raises(ProtocolError, match="ISO 8601"):
        c.position = "1e-7"  # type: ignore[assignment]
        c.send("ping")


async def test_transcript_events_go_back_to_genesys_before_closed(tmp_path: Path) -> None:
    """`transcript_events = true` (a Transcription Connector integration): every final comes
    back as an `event` with a `transcript` entity, offsets on the session's stream, the
    channel as its index in the selected media; the last ones before `closed`."""
    audio = real_call(require_shared())
    frames = media_frames(audio, STEREO_PCMU)
    s = make_settings(tmp_path, platforms={"audiohook": {"transcript_events": True}})
    async with server(s) as (base, _app):
        sid, conv = str(uuid.uuid4()), str(uuid.uuid4())
        async with connect_audiohook(f"{base}/ws/audiohook", sid) as ws:
            ah = AudioHookSession(ws, sid)
            await ah.open(conv)
            await ah.stream(frames, speed=4.0)
            await ah.close("end")
            assert ah.protocol_errors == []
        types = [m["type"] for m in ah.received]
        assert types[-1] == "closed" and "event" in types
        entities = [m["parameters"]["entities"][0] for m in ah.received if m["type"] == "event"]
        assert all(e["type"] == "transcript" and e["data"]["isFinal"] for e in entities)
        by_channel = {0: "", 1: ""}
        for e in entities:
            d = e["data"]
            alt = d["alternatives"][0]
            assert 0.0 <= alt["confidence"] <= 1.0 and alt["interpretations"][0]["type"] == "display"
            offset = float(d["offset"][2:-1])
            assert 0.0 <= offset <= audio.duration and float(d["duration"][2:-1]) > 0
            for tok in alt["interpretations"][0]["tokens"]:
                assert tok["type"] == "word" and float(tok["offset"][2:-1]) >= offset - 0.5
            by_channel[d["channelId"]] += " " + alt["interpretations"][0]["transcript"].lower()
        # external (index 0 of the selected media) is the customer: JFK; internal the agent
        assert "country" in by_channel[0] and "country" not in by_channel[1], by_channel
        assert "glad" in by_channel[1] or "phil" in by_channel[1], by_channel
