"""Fuzzing every wire parser, the client message handlers and the config loaders.

Each target may refuse input only in its documented way (a `ProtocolError` with a close
code, an `error` reply, a loader error naming the file); anything else is a crash. The
example budget is fixed so CI stays fast; `CALLCUE_FUZZ_EXAMPLES=20000` runs the long mode.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcue.egress.serializers import (
    JsonSerializer,
    MsgpackSerializer,
    SerializerError,
)
from callcue.platforms.audiofork import AudioForkProtocol
from callcue.platforms.audiohook import AudioHookProtocol
from callcue.platforms.audiosocket import AudioSocketProtocol, frame
from callcue.platforms.base import ProtocolError, json_object
from callcue.platforms.native import NativeProtocol
from callcue.platforms.twilio import TwilioProtocol
from callcue.platforms.vonage import VonageProtocol
from callcue.platforms.webrtc import OfferError, parse_offer

EXAMPLES = int(os.environ.get("CALLCUE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# JSON-ish values, lone surrogates and huge numbers included
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["\ud800", "CA\ud800x", "", "*", "inbound", "outbound", "1", "-1", "9" * 30]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def feed_all(p: Any, frames: list[str | bytes]) -> None:
    """Every frame to the parser; the only refusal allowed is a ProtocolError with a close code."""
    for f in frames:
        try:
            p.receive_text(f) if isinstance(f, str) else p.receive_bytes(f)
        except ProtocolError as e:
            assert 1000 <= e.close_code <= 4999
    p.receive_eof()


def _dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=True, allow_nan=True)


def twilio_messages() -> st.SearchStrategy[str]:
    start = st.fixed_dictionaries({
        "event": st.just("start"), "sequenceNumber": st.one_of(st.just("2"), values),
        "start": st.fixed_dictionaries({
            "callSid": st.one_of(st.just("CA1"), values), "streamSid": st.one_of(st.just("MZ1"), values),
            "accountSid": values, "tracks": st.one_of(st.just(["inbound", "outbound"]), values),
            "customParameters": st.one_of(st.just({"agent_id": "agent-1"}), values),
            "mediaFormat": st.one_of(st.just({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}), values),
        }),
        "streamSid": st.one_of(st.just("MZ1"), values),
    })
    media = st.fixed_dictionaries({
        "event": st.just("media"), "streamSid": st.one_of(st.just("MZ1"), values),
        "sequenceNumber": values,
        "media": st.fixed_dictionaries({"track": st.one_of(st.sampled_from(["inbound", "outbound"]), values),
                                        "chunk": st.one_of(st.integers(1, 10).map(str), values),
                                        "timestamp": st.one_of(st.integers(0, 10**6).map(str), values),
                                        "payload": st.one_of(st.just("////"), values)}),
    })
    other = st.fixed_dictionaries({"event": st.sampled_from(["connected", "mark", "dtmf", "stop", "bogus"]),
                                   "streamSid": st.one_of(st.just("MZ1"), values),
                                   "mark": values, "dtmf": values, "stop": values})
    return st.one_of(start, media, other, values).map(_dumps) | st.text(max_size=60) | st.just("[" * 5000)


@FUZZ
@given(st.lists(twilio_messages(), max_size=8))
def test_twilio_parser_refuses_only_with_protocol_errors(frames: list[str]) -> None:
    feed_all(TwilioProtocol(max_message_bytes=4096), frames)


def native_frames() -> st.SearchStrategy[str | bytes]:
    start = st.fixed_dictionaries({
        "type": st.just("start"), "call_id": st.one_of(st.just("c1"), values),
        "encoding": st.one_of(st.sampled_from(["L16", "PCMU", "PCMA"]), values),
        "sample_rate": st.one_of(st.sampled_from([8000, 16000]), values),
        "channels": st.one_of(st.just(["customer", "agent"]), values), "agent_id": values, "metadata": values,
    })
    other = st.fixed_dictionaries({"type": st.sampled_from(["stop", "dtmf", "mark", "nope"]), "digit": values,
                                   "name": values, "reason": values})
    text = st.one_of(start, other, values).map(_dumps) | st.text(max_size=40)
    return text | st.binary(max_size=200) | st.builds(lambda b: b"\x00" + b, st.binary(max_size=50))


@FUZZ
@given(st.lists(native_frames(), max_size=8))
def test_native_parser_refuses_only_with_protocol_errors(frames: list[str | bytes]) -> None:
    feed_all(NativeProtocol(max_message_bytes=1024), frames)


@FUZZ
@given(st.one_of(st.text(max_size=200), values.map(_dumps)))
def test_json_frames_parse_or_refuse_with_1007_or_1009(text: str) -> None:
    try:
        msg = json_object(text, 1000)
    except ProtocolError as e:
        assert e.close_code in (1007, 1009)
    else:
        json.dumps(msg, ensure_ascii=False).encode("utf-8")  # what passed is storable


@FUZZ
@given(st.one_of(st.text(max_size=200), values.map(_dumps), st.binary(max_size=200)))
def test_client_serializers_parse_or_refuse_with_serializer_error(data: str | bytes) -> None:
    for ser in (JsonSerializer(), MsgpackSerializer()):
        try:
            msg = ser.loads(data)
        except SerializerError:
            continue
        json.dumps(msg, ensure_ascii=False, allow_nan=False).encode("utf-8")


# ------------------------------------------------------------------ handlers with real parts

@pytest.fixture
def loop():
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _client_messages() -> st.SearchStrategy[dict[str, Any]]:
    kinds = st.sampled_from(["subscribe", "unsubscribe", "feedback", "ping", "approve", "reject", "cancel",
                             "rollback", "override", "pause_playbook", "resume_playbook", "list_actions",
                             "get_action", "audit_query", "kpis", "disposition", "calibrate", "list_thresholds",
                             "shadow_threshold", "promote_threshold", "list_intent_datasets", "get_intent_dataset",
                             "nope"])
    return st.fixed_dictionaries({"type": kinds}, optional={
        k: values for k in ("call_id", "hint_id", "action", "action_id", "playbook_id", "reason", "limit",
                            "after_seq", "version", "since", "until", "by", "outcome", "correction", "id")})


def test_agent_and_supervisor_handlers_answer_every_message(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    """The `/ws/agent` message router over a real engine, audit log, learning store and call
    store on SQLite: every message gets a reply (or None), never an exception."""
    from callcue.audit.log import AuditLog
    from callcue.auth import Authenticator, Principal
    from callcue.config import REPO_CONFIG_DIR, load_settings
    from callcue.decide.actions.dispatcher import ActionDispatcher
    from callcue.decide.engine import DecisionEngine
    from callcue.decide.playbooks import PlaybookSet
    from callcue.egress.access import CallAccess
    from callcue.egress.agent_ws import AgentGateway, handle_client_message
    from callcue.egress.hub import Hub, Subscriber
    from callcue.egress.supervisor_api import SupervisorCommands
    from callcue.learning.store import Learning
    from callcue.pipeline.sink import Sink
    from callcue.pipeline.streams import CallStreams
    from callcue.store.calls import CallStore
    from callcue.store.db import Database

    async def build() -> tuple[AgentGateway, list[Subscriber], Any]:
        db = await Database.connect(f"sqlite:///{tmp_path}/fuzz.db")
        store = CallStore(db)
        await store.open()
        audit = AuditLog(db)
        await audit.init()
        learning = Learning(db, audit)
        await learning.init()
        hub = Hub()
        sink = Sink(store, audit, hub)
        streams = CallStreams(sink)
        engine = DecisionEngine(PlaybookSet.load(REPO_CONFIG_DIR / "playbooks"), streams,
                                ActionDispatcher(publish_to_agent=streams.to_call, publish_to_supervisors=streams.to_supervisors),
                                learning=learning, enter=streams.enter)  # fmt: skip
        cmds = SupervisorCommands(engine, audit, None, learning=learning, writer=sink)
        calls = SimpleNamespace(calls={}, get=lambda call_id: None)  # no call starts here: an empty registry
        gw = AgentGateway(Authenticator(load_settings().auth), hub, CallAccess(calls, store, sink, engine),
                          sink.rejection, cmds.handle_supervisor_message)  # fmt: skip
        subs = [Subscriber(Principal("agent-1", "agent")), Subscriber(Principal("sup", "supervisor"))]

        async def close() -> None:
            await engine.close()
            await store.close()
            await db.close()

        return gw, subs, close

    gw, subs, close = loop.run_until_complete(build())
    ser = JsonSerializer()

    @FUZZ
    @given(_client_messages(), st.booleans())
    def one(msg: dict[str, Any], as_supervisor: bool) -> None:
        try:
            parsed = ser.loads(json.dumps(msg, ensure_ascii=True, allow_nan=True))
        except SerializerError:
            return  # refused at the boundary with an error reply
        reply = loop.run_until_complete(handle_client_message(gw, subs[as_supervisor], parsed))
        assert reply is None or isinstance(reply.get("type"), str)
        if reply is not None:
            json.dumps(reply, default=str, ensure_ascii=False).encode("utf-8")

    try:
        one()
    finally:
        loop.run_until_complete(close())


# ------------------------------------------------------------------ loaders

LOADERS = ["playbook", "phrases", "risks", "entities", "intents", "config"]


def _load(which: str, path: Path) -> None:
    from callcue.config import ConfigError, load_settings
    from callcue.decide.playbooks import PlaybookError, PlaybookSet
    from callcue.understand.common import RiskConfigError, load_risk_config
    from callcue.understand.entities_config import (
        EntitiesConfigError,
        load_entities_config,
    )
    from callcue.understand.intents import IntentConfigError, load_intents
    from callcue.understand.phrases import RulesError, load_rules

    expected: tuple[type[BaseException], ...] = (PlaybookError, RiskConfigError, EntitiesConfigError,
                                                 IntentConfigError, ConfigError, RulesError, ValueError)  # fmt: skip
    try:
        if which == "playbook":
            PlaybookSet.load(path.parent)
        elif which == "phrases":
            load_rules(path)
        elif which == "risks":
            load_risk_config(path)
        elif which == "entities":
            load_entities_config(path)
        elif which == "intents":
            load_intents(path)
        else:
            load_settings(path)
    except expected as e:
        assert str(e), f"{which} loader raised an empty {type(e).__name__}"


yaml_docs = st.one_of(
    values.map(lambda v: json.dumps(v, ensure_ascii=False, allow_nan=False) if _finite(v) else "x: 1"),
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["when: " + "not " * 3000 + "True", "a: 2026-13-45", "[" * 2000, "\udcff: 1", "\x00\x01",
                     "id: x\nversion: 1\ntrigger: {}\nautonomy: auto\nactions: [{kind: hint, title: t}]\nwhen: '" + "(" * 500 + "'"]),
)


def _finite(v: Any) -> bool:
    try:
        json.dumps(v, allow_nan=False)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("which", LOADERS)
def test_loaders_name_the_file_and_never_crash(which: str, tmp_path: Path) -> None:
    @FUZZ
    @given(yaml_docs)
    def one(doc: str) -> None:
        d = tmp_path / "case"
        d.mkdir(exist_ok=True)
        name = {"playbook": "p.yaml", "config": "callcue.toml"}.get(which, f"{which}.yaml")
        p = d / name
        p.write_bytes(doc.encode("utf-8", "surrogatepass"))  # lone surrogates: bytes that are not UTF-8
        _load(which, p)

    one()


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=64), st.builds(lambda k, p: bytes([k]) + len(p).to_bytes(2, "big") + p,
                                                           st.sampled_from([0, 1, 3, 0x10, 0x12, 0x18, 0xFF, 0x42]),
                                                           st.binary(max_size=40))), max_size=10))
def test_audiosocket_parser_after_a_uuid_refuses_only_with_protocol_errors(chunks: list[bytes]) -> None:
    """Once the call's UUID frame has come: any later chunks (a later test of the same name
    used to shadow this one, so it never ran)."""
    from callcue.platforms.audiosocket import AudioSocketProtocol

    p = AudioSocketProtocol(max_message_bytes=1024)
    p.receive_bytes(bytes([1, 0, 16]) + bytes(16))
    for c in chunks:
        try:
            p.receive_bytes(c)
        except ProtocolError as e:
            assert 1000 <= e.close_code <= 4999
            break
    p.receive_eof()


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=64), values.map(_dumps),
                          st.fixed_dictionaries({"callSid": st.one_of(st.just("c1"), values),
                                                 "sampleRate": st.one_of(st.sampled_from([8000, 16000, "16k"]), values),
                                                 "mixType": st.one_of(st.sampled_from(["mono", "stereo", "mixed"]), values)}).map(_dumps)),
                max_size=8))
def test_audiofork_parser_without_secrets_refuses_only_with_protocol_errors(frames: list[str | bytes]) -> None:
    """No secrets configured (a later test of the same name used to shadow this one)."""
    from callcue.platforms.audiofork import AudioForkProtocol

    feed_all(AudioForkProtocol(max_message_bytes=1024), frames)


AH_SID = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
AH_ORG = "d7934305-0972-4844-938e-9060eef73d05"


def audiohook_frames() -> st.SearchStrategy[list[str | bytes]]:
    """Mostly well-formed envelopes in order (so the fuzzer reaches every state), with any
    field and parameter replaced by junk."""
    media = st.one_of(st.just([{"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}]),
                      st.just([{"type": "audio", "format": "L16", "channels": ["external"], "rate": 8000}]), values)
    params = {
        "open": st.fixed_dictionaries({"organizationId": st.one_of(st.just(AH_ORG), values),
                                       "conversationId": st.one_of(st.just("090eaa2f-72fa-480a-83e0-8667ff89c0ec"),
                                                                   st.just("00000000-0000-0000-0000-000000000000"), values),
                                       "participant": values, "media": media, "continuedSessions": values,
                                       "customConfig": values, "supportedLanguages": values}),
        "ping": st.fixed_dictionaries({"rtt": st.one_of(st.just("PT0.05S"), values)}),
        "paused": st.just({}), "update": st.fixed_dictionaries({"language": values}),
        "resumed": st.fixed_dictionaries({"start": st.one_of(st.just("PT1S"), values), "discarded": st.one_of(st.just("PT0.5S"), values)}),
        "discarded": st.fixed_dictionaries({"start": st.one_of(st.just("PT1S"), values), "discarded": st.one_of(st.just("PT2S"), values)}),
        "error": values, "close": st.fixed_dictionaries({"reason": st.one_of(st.sampled_from(["end", "reconnect", "error"]), values)}),
        "bogus": values,
    }
    one = st.sampled_from(sorted(params)).flatmap(lambda t: st.tuples(st.just(t), params[t], st.integers(0, 3), values, st.booleans()))

    def build(items: list) -> list[str | bytes]:
        out: list[str | bytes] = []
        seq = 0
        for mtype, p, audio_frames, junk, corrupt in items:
            seq += 1
            msg = {"version": "2", "id": AH_SID, "type": mtype, "seq": seq, "serverseq": 0, "position": f"PT{seq}S", "parameters": p}
            if corrupt:
                msg[sorted(msg)[seq % len(msg)]] = junk
            out.append(_dumps(msg))
            out.extend([b"\xff" * (160 * (seq % 3 + 1)), b"\x01"][: audio_frames])
        return out

    return st.lists(one, max_size=8).map(build)


@FUZZ
@given(audiohook_frames())
def test_audiohook_parser_refuses_only_with_protocol_errors(frames: list[str | bytes]) -> None:
    p = AudioHookProtocol(session_id=AH_SID, organization_id=AH_ORG, max_message_bytes=4096)
    for f in frames:
        try:
            p.receive_text(f) if isinstance(f, str) else p.receive_bytes(f)
        except ProtocolError as e:
            assert 1000 <= e.close_code <= 4999
            p.fail(e)
        for out in p.data_to_send():
            msg = json.loads(out)  # every reply is a well-formed server message
            assert msg["version"] == "2" and msg["id"] == AH_SID and isinstance(msg["seq"], int)
    p.receive_eof()


vonage_msgs = st.one_of(
    st.fixed_dictionaries({"event": st.just("websocket:connected"),
                           "content-type": st.one_of(st.sampled_from(["audio/l16;rate=16000", "audio/l16;rate=8000"]), values),
                           "secret": st.one_of(st.just("s3cret"), values), "call_uuid": values, "channel": values,
                           "agent_id": values}),
    st.fixed_dictionaries({"event": st.sampled_from(["websocket:dtmf", "websocket:notify", "websocket:cleared", "x"]),
                           "digit": values, "payload": values}),
    values).map(_dumps) | st.text(max_size=40)


@FUZZ
@given(st.lists(st.one_of(vonage_msgs, st.binary(max_size=700)), max_size=8))
def test_vonage_parser_refuses_only_with_protocol_errors(frames: list[str | bytes]) -> None:
    feed_all(VonageProtocol(secrets=("s3cret",), max_message_bytes=4096), frames)


audiofork_meta = st.one_of(
    st.fixed_dictionaries({"callSid": values, "sampleRate": st.one_of(st.sampled_from([8000, 16000, "16k"]), values),
                           "mixType": st.one_of(st.sampled_from(["mono", "stereo", "mixed"]), values),
                           "secret": st.one_of(st.just("s3cret"), values), "metadata": values}),
    values).map(_dumps) | st.text(max_size=40)


@FUZZ
@given(st.lists(st.one_of(audiofork_meta, st.binary(max_size=700)), max_size=8), st.booleans())
def test_audiofork_parser_refuses_only_with_protocol_errors(frames: list[str | bytes], need_secret: bool) -> None:
    feed_all(AudioForkProtocol(max_message_bytes=4096, secrets=("s3cret",), authorized=not need_secret), frames)


audiosocket_bytes = st.lists(st.one_of(
    st.builds(frame, st.sampled_from([0x00, 0x01, 0x03, 0x10, 0x11, 0x12, 0x13, 0x16, 0x18, 0xFF, 0x42]), st.binary(max_size=400)),
    st.binary(max_size=30)), max_size=10).map(b"".join)


@FUZZ
@given(audiosocket_bytes, st.integers(1, 64))
def test_audiosocket_parser_refuses_only_with_protocol_errors(stream: bytes, cut: int) -> None:
    """A byte stream cut into TCP reads anywhere."""
    feed_all(AudioSocketProtocol(max_message_bytes=4096), [stream[i:i + cut] for i in range(0, len(stream), cut)])


@FUZZ
@given(st.one_of(values.map(_dumps), st.text(max_size=200), st.just("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")),
       st.sampled_from(["application/json", "application/sdp", "text/plain", ""]),
       st.dictionaries(st.sampled_from(["role", "call_id", "agent_id"]), st.text(max_size=10), max_size=3),
       st.sampled_from(["agent", "supervisor"]))
def test_webrtc_offers_parse_or_refuse_with_an_http_status(body: str, ctype: str, query: dict, role: str) -> None:
    try:
        req = parse_offer(body.encode("utf-8", "surrogatepass"), ctype, query, user_id="agent-1", role=role)
    except OfferError as e:
        assert 400 <= e.status < 500 and e.message
    else:
        assert req.sdp.startswith("v=0") and req.channels
