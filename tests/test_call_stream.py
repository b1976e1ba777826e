"""One way out of a call: what a decision produces flows down the call's own stream to the
Sink, every hint behind its `hint_shown` intent, and a supervisor's command on a live call
runs in that stream (not beside it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from test_structure import _runtime, final

from callcue.events import AuditIntent, CallEvent, Hint
from callcue.pipeline.processor import Processor
from callcue.platforms.base import CallStart


class Spy(Processor):
    """Sits just before the Sink and notes what passes."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[object] = []

    async def process(self, item: object) -> AsyncIterator[object]:
        self.seen.append(item)
        yield item


def _spied(call: Any) -> Spy:
    spy = Spy()
    call.pipeline.processors.insert(len(call.pipeline.processors) - 1, spy)
    return spy


def _hints_follow_their_intents(seen: list[object]) -> list[Hint]:
    hints = [(i, x) for i, x in enumerate(seen) if isinstance(x, Hint)]
    for i, h in hints:
        before = seen[i - 1]
        assert isinstance(before, AuditIntent) and before.kind == "hint_shown", f"hint {h.title!r} not right behind its entry"
        assert before.fields["payload"]["hint_id"] == h.hint_id
    return [h for _, h in hints]


async def test_playbook_and_fallback_hints_leave_through_the_stream_behind_their_entries(tmp_path: Path) -> None:
    rt, _sub = await _runtime(tmp_path)
    try:
        call = await rt.calls.start(CallStart("out-1", "PCMU", 8000, ("customer", "agent"), agent_id="agent-1"))
        spy = _spied(call)
        await call.pipeline.push(final("out-1", "I want to cancel my account and close it today", 1, 1.0))
        await call.pipeline.push(final("out-1", "also I lost my credit card yesterday", 2, 6.0))
        hints = _hints_follow_their_intents(spy.seen)
        sources = {h.source.split("@")[0] for h in hints}
        assert "retention_offer" in sources, sources  # a playbook's hint passed the stages after decide
        assert "phrases/lost_card" in sources, sources  # and the fallback's, in the same order
        assert any(isinstance(x, AuditIntent) and x.kind == "action_proposed" for x in spy.seen)
        assert any(isinstance(x, CallEvent) and x.event.get("type") == "action_update" for x in spy.seen)
        await rt.calls.stop("out-1")
        await rt.store.flush()
        entries = sorted(await rt.audit.query(call_id="out-1", limit=1000), key=lambda e: e.seq)
        [playbook_hint] = [h for h in hints if h.source.startswith("retention_offer@")]
        kinds = [e.kind for e in entries if e.action_id == playbook_hint.attrs["action_id"]]
        # proposed, dispatched, its entry, then succeeded (it was stored and shown in between)
        assert kinds == ["action_proposed", "action_dispatched", "hint_shown", "action_succeeded"]
    finally:
        await rt.close()


async def test_a_supervisors_approval_on_a_live_call_runs_in_the_calls_stream(tmp_path: Path) -> None:
    rt, _sub = await _runtime(tmp_path)
    try:
        call = await rt.calls.start(CallStart("out-2", "PCMU", 8000, ("customer", "agent"), agent_id="agent-1"))
        spy = _spied(call)
        await call.pipeline.push(final("out-2", "I need a refund of 500 dollars for the double charge", 1, 1.0))
        [pending] = [r for r in rt.engine.actions(call_id="out-2", state="pending_approval") if r.kind == "hint"]
        spy.seen.clear()
        recs = await rt.engine.approve(pending.action_id, "sup-1")
        assert any(r.kind == "hint" and r.state == "succeeded" for r in recs)
        # what the approval produced went down this call's pipeline, in its stream
        hints = _hints_follow_their_intents(spy.seen)
        assert [h.title for h in hints] == ["Refund above limit - approved"]
        assert any(isinstance(x, AuditIntent) and x.kind == "action_approved" for x in spy.seen)
        await rt.calls.stop("out-2")
    finally:
        await rt.close()
