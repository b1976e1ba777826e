"""The package's shape, checked from its imports, and its extension points, used from here.

1. The import graph of `server/callcue` (parsed with `ast`, lazy imports inside functions
   included, `if TYPE_CHECKING:` blocks excluded since they never run) has no cycle and no
   import that points up the layers below; no module is over 500 lines.
2. Only the Sink and the composition root hold the call store for writing.
3. A toy detector and a toy action kind are registered from this module and run in a real
   assembled server: the detector's signal fires a playbook whose action is the toy kind.
4. A hint shown to the agent, its stored row and its audit entry are the same event.
"""

from __future__ import annotations

import ast
import json
import shutil
import time
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from callcue.config import PlatformLimits
from callcue.decide.actions.base import ActionKind, ActionPorts, ActionSpec
from callcue.decide.actions.kinds import ACTION_KINDS
from callcue.decide.actions.record import ActionRecord
from callcue.events import Evidence, Signal, Transcript, Word
from callcue.platforms.base import AudioIn, CallStart, CallStop, Platform, ProtocolError
from callcue.understand.base import CallContext, Detector
from callcue.understand.detectors import DETECTORS
from callcue.understand.registry import DetectorOrderError, order_detectors

PKG = Path(__file__).resolve().parents[1] / "server" / "callcue"

# lowest first; a module may import its own layer and the ones below, never above
LAYERS: list[set[str]] = [
    {"callcue", "callcue.events", "callcue.config", "callcue.logs", "callcue.metrics", "callcue.auth", "callcue.privacy"},
    {"callcue.audio", "callcue.asr", "callcue.store"},
    {"callcue.platforms", "callcue.audit"},
    {"callcue.understand", "callcue.learning", "callcue.qa", "callcue.analytics", "callcue.knowledge", "callcue.governance"},
    {"callcue.decide", "callcue.bot"},
    {"callcue.pipeline"},
    {"callcue.transports", "callcue.egress", "callcue.cluster"},
    {"callcue.wiring"},
    {"callcue.app", "callcue.cli", "callcue.clients", "callcue.evaluation"},
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(mod: str) -> int:
    best, depth = -1, -1
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if (mod == prefix or mod.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = i, prefix.count(".")
    assert best >= 0, f"{mod} is in no layer: add it to LAYERS in {__file__}"
    return best


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("callcue"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("callcue"):
                found.add(child.module)
                # `from callcue.x import y` where y is a submodule imports that module
                found.update(f"{child.module}.{a.name}" for a in child.names if f"{child.module}.{a.name}" in modules)
            visit(child)

    visit(tree)
    return {m for m in found if m in modules}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    mods = set(files)
    return {m: imports_of(p, mods) - {m} for m, p in files.items()}


def test_no_import_cycles() -> None:
    g = graph()
    try:
        TopologicalSorter(g).prepare()
    except CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


def test_no_upward_imports_between_layers() -> None:
    bad = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
           for m, deps in graph().items() for d in sorted(deps) if layer_of(d) > layer_of(m)]
    assert bad == [], "\n".join(bad)


def test_no_module_over_500_lines() -> None:
    long = {module_name(p): n for p in PKG.rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}


def test_only_the_sink_and_the_composition_root_hold_the_call_store() -> None:
    holders = sorted(m for m, deps in graph().items() if "callcue.store.calls" in deps)
    assert holders == ["callcue.pipeline.sink", "callcue.wiring"]


def test_the_graph_test_sees_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """The checks above can fail: a two-module cycle and a pipeline -> wiring import."""
    (tmp_path / "a.py").write_text("from callcue.pipeline import b\n")
    (tmp_path / "b.py").write_text("import callcue.pipeline.a\nfrom callcue.wiring import Runtime\n")
    mods = {"callcue.pipeline.a", "callcue.pipeline.b", "callcue.wiring"}
    g = {"callcue.pipeline.a": imports_of(tmp_path / "a.py", mods), "callcue.pipeline.b": imports_of(tmp_path / "b.py", mods)}
    with pytest.raises(CycleError):
        TopologicalSorter(g).prepare()
    assert layer_of("callcue.wiring") > layer_of("callcue.pipeline.b") and "callcue.wiring" in g["callcue.pipeline.b"]


# ------------------------------------------------------------------ detector ordering

class _Fake(Detector):
    def __init__(self, name: str, produces: set[str] = frozenset(), consumes: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.name, self.produces, self.consumes = name, frozenset(produces), frozenset(consumes)


def test_detectors_are_ordered_by_what_they_read_not_by_list_order() -> None:
    dets = [_Fake("combiner", {"signal:risk"}, {"signal:intent", "fact:trend"}), _Fake("intent", {"signal:intent"}),
            _Fake("trend", {"fact:trend"}), _Fake("plain")]
    assert [d.name for d in order_detectors(dets)] == ["intent", "trend", "plain", "combiner"]
    with pytest.raises(DetectorOrderError, match="cycle"):
        order_detectors([_Fake("a", {"x"}, {"y"}), _Fake("b", {"y"}, {"x"})])
    with pytest.raises(DetectorOrderError, match="share the name"):
        order_detectors([_Fake("a"), _Fake("a")])


# ------------------------------------------------------------------ toy extensions, registered here

class BananaDetector(Detector):
    """Says when the customer mentions bananas; runs after intents because it reads them."""

    name = "banana"
    version = "0"
    produces = frozenset({"signal:fruit"})
    consumes = frozenset({"signal:intent"})

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        if not t.is_final or "banana" not in t.text.lower():
            return []
        ev = Evidence(channel=t.channel, text=t.text, start=t.start, end=t.end, segment_id=t.segment_id,
                      revision=t.revision, is_final=True)
        return [Signal(t.call_id, "fruit", "banana", 1.0, self.name, self.version, evidence=ev)]


class NoteAction(ActionSpec):
    kind: Literal["note"]
    text: str


class NoteKind(ActionKind):
    name = "note"
    spec = NoteAction
    ran: ClassVar[list[str]] = []

    async def run(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        assert isinstance(rec.spec, NoteAction)
        self.ran.append(rec.call_id)
        await ports.publish_to_agent(rec.call_id, {"type": "note", "call_id": rec.call_id, "text": rec.spec.text})
        return {"noted": rec.spec.text}


TOY_PLAYBOOK = """
id: banana_note
version: 1
trigger: {kinds: [fruit]}
autonomy: auto
actions:
  - {kind: note, text: "Customer likes bananas"}
"""


def final(call_id: str, text: str, seg: int, start: float) -> Transcript:
    words, t = [], start
    for w in text.split():
        words.append(Word(w, t, t + 0.3, 0.95))
        t += 0.35
    return Transcript(call_id=call_id, channel="customer", segment_id=seg, revision=1, text=text, is_final=True,
                      start=start, end=t, words=words, confidence=0.9, audio_received_at=time.time())


@pytest.fixture
def toys(tmp_path: Path):
    from callcue.config import REPO_CONFIG_DIR

    DETECTORS.register("banana", lambda env: BananaDetector())
    kind = ACTION_KINDS.register(NoteKind())
    books = tmp_path / "playbooks"
    shutil.copytree(REPO_CONFIG_DIR / "playbooks", books)
    (books / "banana.yaml").write_text(TOY_PLAYBOOK)
    try:
        yield books, kind
    finally:
        DETECTORS.unregister("banana")
        ACTION_KINDS.unregister("note")


async def _runtime(tmp_path: Path, **sections: dict[str, Any]):
    from serverkit import make_settings

    from callcue.egress.hub import Principal, Subscriber
    from callcue.wiring import assemble

    rt = await assemble(make_settings(tmp_path, **sections))
    sub = Subscriber(Principal("sup", "supervisor"), queue_size=10_000)
    sub.all_calls = True
    rt.hub.register(sub)
    return rt, sub


def _drain(sub: Any) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


async def test_a_toy_detector_and_a_toy_action_kind_run_in_a_real_server(tmp_path: Path, toys: Any) -> None:
    books, kind = toys
    rt, sub = await _runtime(tmp_path, decision={"playbooks_dir": str(books)})
    try:
        names = [d.name for d in rt.understanding.detectors]
        assert "banana" in names and names.index("banana") > names.index("intent")
        call = await rt.calls.start(CallStart("toy-1", "PCMU", 8000, ("customer", "agent"), agent_id="agent-1"))
        await call.pipeline.push(final("toy-1", "I would like to talk about bananas today", 1, 1.0))
        await rt.calls.stop("toy-1")
        events = _drain(sub)
        assert any(e.get("type") == "signal" and e.get("kind") == "fruit" for e in events)
        assert [e["text"] for e in events if e.get("type") == "note"] == ["Customer likes bananas"]
        assert kind.ran == ["toy-1"]
        kinds = [e.kind for e in await rt.audit.query(call_id="toy-1")]
        assert "action_succeeded" in kinds and "playbook_matched" in kinds
    finally:
        await rt.close()


async def test_the_hint_shown_its_row_and_its_audit_entry_are_one_event(tmp_path: Path) -> None:
    rt, sub = await _runtime(tmp_path)
    try:
        call = await rt.calls.start(CallStart("one-1", "PCMU", 8000, ("customer", "agent"), agent_id="agent-1"))
        await call.pipeline.push(final("one-1", "I want to cancel my account and close it today", 1, 1.0))
        await rt.calls.stop("one-1")
        await rt.store.flush()
        shown = [e for e in _drain(sub) if e.get("type") == "hint"]
        assert shown, "the cancel request raised no hint"
        rows = {h["hint_id"]: h for h in (await rt.store.call_record("one-1"))["hints"]}
        audited = {e.payload["hint_id"]: e for e in await rt.audit.query(call_id="one-1", kind="hint_shown")}
        for h in shown:
            row, entry = rows[h["hint_id"]], audited[h["hint_id"]]
            assert (row["title"], row["source"]) == (h["title"], h["source"]) == (entry.payload["title"], entry.payload["source"])
            assert json.loads(row["signal_ids"]) == entry.payload["signal_ids"] == h["signal_ids"]
            assert entry.call_id == "one-1" and entry.agent_id == "agent-1"
        assert set(rows) == set(audited) == {h["hint_id"] for h in shown}
    finally:
        await rt.close()


# ------------------------------------------------------------------ a toy platform: one module, one registration

class EchoConfig(PlatformLimits):
    """The toy platform's own section: `[platforms.echo] greeting = ...`."""

    greeting: str = "hello"


class EchoProtocol:
    def __init__(self, max_bytes: int, cfg: EchoConfig) -> None:
        self.max_bytes, self.cfg, self.call_id = max_bytes, cfg, None
        self.out: list[str | bytes] = []

    def receive_text(self, text: str) -> list[Any]:
        if not text.startswith("start ") or self.call_id:
            raise ProtocolError(1008, "expected one 'start <id>'")
        self.call_id = text[6:]
        self.out.append(self.cfg.greeting)
        return [CallStart(self.call_id, "L16", 8000, ("customer",))]

    def receive_bytes(self, data: bytes) -> list[Any]:
        if self.call_id is None or len(data) > self.max_bytes:
            raise ProtocolError(1008, "audio before start, or too big")
        return [AudioIn(self.call_id, "customer", data)]

    def receive_eof(self) -> list[Any]:
        return [CallStop(self.call_id, "disconnected")] if self.call_id else []

    def data_to_send(self) -> list[str | bytes]:
        out, self.out = self.out, []
        return out


ECHO = Platform("echo", "/ws/echo", lambda max_bytes, cfg, handshake: EchoProtocol(max_bytes, cfg), config_model=EchoConfig)


def test_a_toy_platform_with_its_own_config_section_is_served(tmp_path: Path) -> None:
    from serverkit import make_settings
    from starlette.testclient import TestClient

    from callcue.app import create_app
    from callcue.platforms.registry import PLATFORMS, register

    with pytest.raises(ValueError, match=r"\[platforms.echo\] names no registered platform"):
        create_app(make_settings(tmp_path / "a", platforms={"echo": {"greeting": "hi there"}}))
    register(ECHO)
    try:
        with pytest.raises(ValueError, match=r"(?s)\[platforms.echo\]: .*greting"):
            create_app(make_settings(tmp_path / "b", platforms={"echo": {"greting": "typo"}}))
        app = create_app(make_settings(tmp_path / "c", platforms={"echo": {"greeting": "hi there"}}))
        with TestClient(app) as client, client.websocket_connect("/ws/echo") as ws:
            ws.send_text("start echo-1")
            assert ws.receive_text() == "hi there"
            ws.send_bytes(b"\0" * 320)
    finally:
        PLATFORMS.pop("echo", None)
