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
from typing import Any

import pytest
from callcue.egress.serializers import (
    JsonSerializer,
    MsgpackSerializer,
    SerializerError,
)
from callcue.platforms.base import ProtocolError, json_object
from callcue.platforms.native import NativeProtocol
from callcue.platforms.twilio import TwilioProtocol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    from callcue.pipeline.manager import CallManager
    from callcue.pipeline.sink import Sink
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
        engine = DecisionEngine(PlaybookSet.load(REPO_CONFIG_DIR / "playbooks"), sink,
                                ActionDispatcher(publish_to_agent=sink.to_call, publish_to_supervisors=sink.to_supervisors),
                                learning=learning)  # fmt: skip
        cmds = SupervisorCommands(engine, audit, None, learning=learning, writer=sink)
        calls = CallManager(None)  # type: ignore[arg-type]  # no call starts here
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
def test_audiosocket_parser_refuses_only_with_protocol_errors(chunks: list[bytes]) -> None:
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
def test_audiofork_parser_refuses_only_with_protocol_errors(frames: list[str | bytes]) -> None:
    from callcue.platforms.audiofork import AudioForkProtocol

    feed_all(AudioForkProtocol(max_message_bytes=1024), frames)
