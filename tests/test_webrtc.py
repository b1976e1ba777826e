"""WebRTC ingress: the offer's meaning (sans-I/O), then a real aiortc peer on loopback
sending real speech as Opus through ICE/DTLS/SRTP to a real server, JSON and WHIP."""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer

from callcue.platforms.webrtc import FrameConverter, OfferError, parse_offer
from tests.conftest import require_shared
from tests.serverkit import (
    AGENT_TOKEN,
    SUPERVISOR_TOKEN,
    agent,
    make_settings,
    quick_disclosure,
    real_call,
    server,
)

SDP_ONE = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
SDP_TWO = SDP_ONE + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


def offer(body: dict | str, ctype: str = "application/json", query: dict | None = None, role: str = "agent",
          user: str = "agent-1"):
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return parse_offer(raw, ctype, query or {}, user_id=user, role=role)


def test_offers_json_and_whip() -> None:
    req = offer({"type": "offer", "sdp": SDP_ONE})
    assert (req.role, req.channels, req.agent_id, req.whip) == ("agent", ("agent",), "agent-1", False)
    assert req.call_id.startswith("webrtc-")
    req = offer(SDP_TWO, "application/sdp", {"role": "both", "call_id": "call-42"})
    assert (req.channels, req.call_id, req.whip) == (("customer", "agent"), "call-42", True)
    sup = offer({"type": "offer", "sdp": SDP_ONE, "role": "customer", "agent_id": "agent-9"}, role="supervisor", user="s")
    assert sup.agent_id == "agent-9"


@pytest.mark.parametrize(("body", "ctype", "status", "words"), [
    ({"type": "answer", "sdp": SDP_ONE}, "application/json", 400, "type must be 'offer'"),
    ({"type": "offer"}, "application/json", 400, "sdp must be a string"),
    ("not json", "application/json", 400, "not JSON"),
    ({"type": "offer", "sdp": "hello"}, "application/json", 400, "v=0"),
    ({"type": "offer", "sdp": SDP_ONE, "role": "both"}, "application/json", 400, "2 audio m-line"),
    ({"type": "offer", "sdp": SDP_ONE, "role": "boss"}, "application/json", 400, "role"),
    ({"type": "offer", "sdp": SDP_ONE, "agent_id": "agent-2"}, "application/json", 403, "agent's token"),
    ({"type": "offer", "sdp": SDP_ONE + "a=x:" + "y" * 40000}, "application/json", 413, "exceeds"),
    ("v=0", "text/plain", 415, "Content-Type"),
])
def test_bad_offers_get_precise_statuses(body: dict | str, ctype: str, status: int, words: str) -> None:
    with pytest.raises(OfferError) as ei:
        offer(body, ctype)
    assert ei.value.status == status and words in ei.value.message


def test_decoded_frames_become_16k_mono() -> None:
    conv = FrameConverter()
    t = np.arange(960 * 50) / 48000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    out = b""
    for i in range(50):  # one second of 20 ms stereo frames, as aiortc's Opus decoder gives them
        chunk = tone[i * 960:(i + 1) * 960]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk], axis=1).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 48000
        out += conv.convert(frame)
    pcm = np.frombuffer(out, "<i2")
    assert 15000 <= len(pcm) <= 16000 and conv.samples_in == 48000
    assert 5000 < np.abs(pcm[2000:]).max() < 9000  # the tone, at its level, mono


def _write(path: Path, pcm: np.ndarray, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


async def _peer(base: str, tracks: list[Path], token: str, **fields: object) -> tuple[RTCPeerConnection, dict, list]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    players = [MediaPlayer(str(p)) for p in tracks]
    for p in players:
        pc.addTrack(p.audio)
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=base.replace("ws", "http")) as http:
        r = await http.post("/webrtc/offer", json={"type": "offer", "sdp": pc.localDescription.sdp, **fields},
                            headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    answer = r.json()
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    return pc, answer, players


@pytest.mark.slow
async def test_a_two_track_softphone_reaches_the_desk_with_transcript_and_hint(tmp_path: Path) -> None:
    audio = real_call(require_shared())
    cust = _write(tmp_path / "customer.wav", audio.channels["customer"])
    agt = _write(tmp_path / "agent.wav", audio.channels["agent"])
    s = make_settings(tmp_path, understanding=quick_disclosure(tmp_path))
    async with server(s) as (base, _app):
        async with agent(base, SUPERVISOR_TOKEN) as desk:
            pc, answer, _players = await _peer(base, [cust, agt], AGENT_TOKEN, role="both", call_id="rtc-call-1")
            assert answer["call_id"] == "rtc-call-1" and answer["location"].startswith("/webrtc/sessions/")
            # real time: the whole call plays, then the softphone hangs up with DELETE
            await desk.wait_for(lambda e: e.get("type") == "hint" and e["call_id"] == "rtc-call-1"
                                and "disclosure" in e["title"].lower(), 60)  # fmt: skip
            await asyncio.sleep(max(0.0, audio.duration - 6.0))
            async with httpx.AsyncClient(base_url=base.replace("ws", "http")) as http:
                r = await http.delete(answer["location"], headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
                assert r.status_code == 200
                assert (await http.delete(answer["location"], headers={"Authorization": f"Bearer {AGENT_TOKEN}"})).status_code == 404
            await pc.close()
            ended = await desk.wait_for(lambda e: e.get("type") == "call_ended" and e["call_id"] == "rtc-call-1", 60)
            assert ended
            finals = [e for e in desk.of_type("transcript") if e["is_final"] and e["call_id"] == "rtc-call-1"]
            by_ch = {ch: " ".join(f["text"].lower() for f in finals if f["channel"] == ch) for ch in ("customer", "agent")}
            assert "country" in by_ch["customer"] and ("glad" in by_ch["agent"] or "phil" in by_ch["agent"]), by_ch
            started = [e for e in desk.of_type("call_started") if e["call_id"] == "rtc-call-1"]
            assert len(started) == 1


async def test_whip_auth_cors_and_refusals(tmp_path: Path) -> None:
    jfk = require_shared("speech", "telephone_sim", "jfk__jfk.wav")
    s = make_settings(tmp_path, platforms={"webrtc": {"enabled": True, "allowed_origins": ["https://crm.example.com"],
                                                      "ice_servers": [], "default_role": "agent"}})  # fmt: skip
    async with server(s) as (base, _app):
        http_base = base.replace("ws", "http")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        player = MediaPlayer(str(jfk))
        # a desk phone's offer: PCMU only
        tr = pc.addTransceiver(player.audio, direction="sendonly")
        tr.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/PCMU"])
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        assert "opus" not in sdp.lower()
        async with agent(base, SUPERVISOR_TOKEN) as desk, httpx.AsyncClient(base_url=http_base) as http:
            # no token, a bad token, a token in the URL: refused
            assert (await http.post("/webrtc/offer", content=sdp, headers={"Content-Type": "application/sdp"})).status_code == 401
            r = await http.post("/webrtc/offer", content=sdp, headers={"Content-Type": "application/sdp", "Authorization": "Bearer nope"})
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            r = await http.post(f"/webrtc/offer?token={AGENT_TOKEN}", content=sdp, headers={"Content-Type": "application/sdp"})
            assert r.status_code == 401
            # CORS: the configured origin passes the preflight, another does not
            pre = await http.options("/webrtc/offer", headers={"Origin": "https://crm.example.com", "Access-Control-Request-Method": "POST",
                                                               "Access-Control-Request-Headers": "authorization,content-type"})
            assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://crm.example.com"
            bad = await http.options("/webrtc/offer", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
            assert "access-control-allow-origin" not in bad.headers
            # WHIP: 201, the answer as application/sdp, a Location to DELETE
            r = await http.post("/webrtc/offer?role=customer&call_id=whip-call-1", content=sdp,
                                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {AGENT_TOKEN}",
                                         "Origin": "https://crm.example.com"})  # fmt: skip
            assert r.status_code == 201 and r.headers["content-type"].startswith("application/sdp"), r.text
            assert r.headers["location"].startswith("/webrtc/sessions/") and r.text.startswith("v=0")
            assert r.headers["access-control-allow-origin"] == "https://crm.example.com"
            await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
            location = r.headers["location"]
            # the same call and channel again is a conflict, and other sessions are untouched
            pc2 = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc2.addTrack(MediaPlayer(str(jfk)).audio)
            await pc2.setLocalDescription(await pc2.createOffer())
            r2 = await http.post("/webrtc/offer", json={"type": "offer", "sdp": pc2.localDescription.sdp, "role": "customer",
                                                        "call_id": "whip-call-1"}, headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
            assert r2.status_code == 409 and "customer" in r2.json()["error"]
            await pc2.close()
            await desk.wait_for(lambda e: e.get("type") == "transcript" and e["is_final"] and e["call_id"] == "whip-call-1"
                                and "country" in e["text"].lower(), 60)  # fmt: skip
            calls = _app.state.runtime.get().calls
            assert "whip-call-1" in calls.calls
            # another agent may not hang up this session; its owner may
            assert (await http.delete(location, headers={"Authorization": "Bearer nope"})).status_code == 401
            assert (await http.delete(location, headers={"Authorization": f"Bearer {AGENT_TOKEN}"})).status_code == 200
            await pc.close()
            for _ in range(100):
                if "whip-call-1" not in calls.calls:
                    break
                await asyncio.sleep(0.1)
            assert "whip-call-1" not in calls.calls


@pytest.mark.slow
async def test_a_browser_caller_hears_the_virtual_agent_on_its_track(tmp_path: Path) -> None:
    """A customer's WebRTC call naming a flow: the answer is sendrecv, the bot's voice comes
    back on the track as Opus, in real time; recognised back, it greets and then asks for
    the card's digits after the caller (espeak-ng) says they lost it."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from callcue.asr.select import load_engine
    from callcue.bot.voice import EspeakVoice
    from callcue.evaluation.asr_eval import decode_clip

    said = np.frombuffer(b"".join(EspeakVoice().synthesize("I lost my card and I need to block it.", 16000)), np.int16)
    caller = np.concatenate([np.zeros(16000 * 9, np.int16), said, np.zeros(16000 * 8, np.int16)])
    wav = _write(tmp_path / "caller.wav", caller, 16000)
    settings = make_settings(tmp_path)
    heard_pcm: list[bytes] = []
    async with server(settings) as (base, _app):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        player = MediaPlayer(str(wav))
        pc.addTrack(player.audio)
        conv = FrameConverter()
        got_track = asyncio.Event()
        pulling: list[asyncio.Task] = []

        @pc.on("track")
        def _on_track(track) -> None:
            async def pull() -> None:
                while True:
                    try:
                        heard_pcm.append(conv.convert(await track.recv()))
                    except Exception:
                        return

            got_track.set()
            pulling.append(asyncio.ensure_future(pull()))

        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(base_url=base.replace("ws", "http")) as http:
            r = await http.post("/webrtc/offer", json={"type": "offer", "sdp": pc.localDescription.sdp, "role": "customer",
                                                       "call_id": "rtc-bot-1", "metadata": {"flow": "bank"}},
                                headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"})  # fmt: skip
            assert r.status_code == 200, r.text
            answer = r.json()
            assert "a=sendrecv" in answer["sdp"]
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
            await asyncio.wait_for(got_track.wait(), 10)
            t0 = time.monotonic()
            await asyncio.sleep(len(caller) / 16000)
            elapsed = time.monotonic() - t0
            await http.delete(answer["location"], headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"})
        await pc.close()
    audio = b"".join(heard_pcm)
    assert abs(len(audio) / 32000 - elapsed) < 3.0, "the track runs in real time"
    engine, _ = load_engine(settings.asr)
    with ThreadPoolExecutor(2) as pool:
        first = await decode_clip(engine, audio[: 32000 * 9], 16000, pool, settings.vad)
        later = await decode_clip(engine, audio[32000 * 11 :], 16000, pool, settings.vad)
    assert "northwind" in first.text.lower() or "assistant" in first.text.lower(), first.text
    assert any(w in later.text.lower() for w in ("four", "digits", "block")), later.text
