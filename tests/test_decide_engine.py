"""The decision engine end to end: real playbooks, real webhook receiver, real audit trail.

Approval deadlines are real asyncio timers (a few hundred ms); cooldowns use an injected
clock so they can be tested without waiting minutes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from test_webhooks import Receiver, start_receiver

from callcue.decide.actions.dispatcher import ActionDispatcher
from callcue.decide.engine import (
    CallInfo,
    DecisionEngine,
    InvalidTransition,
    UnknownAction,
)
from callcue.decide.playbooks import PlaybookSet
from callcue.decide.webhooks import WebhookClient
from callcue.egress.hub import Principal
from callcue.egress.supervisor_api import SupervisorCommands
from callcue.egress.supervisor_http import routes
from callcue.events import Evidence, Signal

REPO = Path(__file__).resolve().parents[1]
try:
    from callcue.audit.log import AuditLog
    from callcue.store.db import Database

    HAVE_AUDIT = True
except ImportError:  # the audit store lands separately; the engine contract is still tested
    HAVE_AUDIT = False


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


class TeeAudit:
    """Keeps every entry for assertions and also writes it to the real AuditLog (SQLite) when
    that module is present, so the engine is exercised against the real store's contract."""

    def __init__(self, real: Any = None) -> None:
        self.entries: list[dict[str, Any]] = []
        self.real = real

    async def append(self, kind: str, **kw: Any) -> Any:
        self.entries.append({"kind": kind, **kw})
        if self.real is not None:
            return await self.real.append(kind, **kw)
        return None

    def kinds(self, action_id: str | None = None, **match: Any) -> list[str]:
        return [e["kind"] for e in self.entries
                if (action_id is None or e.get("action_id") == action_id)
                and all(e.get(k) == v for k, v in match.items())]  # fmt: skip


class Harness:
    def __init__(self, engine: DecisionEngine, audit: TeeAudit, rx: Receiver, clock: Clock) -> None:
        self.engine, self.audit, self.rx, self.clock = engine, audit, rx, clock
        self.agent: list[tuple[str, dict[str, Any]]] = []
        self.sup: list[dict[str, Any]] = []
        self.escalations: list[tuple[str, dict[str, Any]]] = []
        self.controls: list[tuple[str, str]] = []

    def hints(self, call_id: str | None = None) -> list[dict[str, Any]]:
        return [e for c, e in self.agent if e["type"] == "hint" and (call_id is None or c == call_id)]

    def sup_of(self, t: str) -> list[dict[str, Any]]:
        return [e for e in self.sup if e["type"] == t]


def sig(call_id: str, kind: str, name: str, conf: float = 0.9, **attrs: Any) -> Signal:
    ev = Evidence(channel="customer", text="masked text", start=1.0, end=2.0, segment_id=1, revision=0, is_final=True)
    return Signal(call_id=call_id, kind=kind, name=name, confidence=conf, detector="test-det",
                  detector_version="3", evidence=ev, attrs=attrs)  # fmt: skip


def playbooks(base: str) -> list[dict[str, Any]]:
    return [
        {"id": "retention", "version": 3, "trigger": {"kinds": ["intent"], "names": ["cancel_account"]},
         "when": "call.queue != 'collections'", "min_confidence": 0.6, "cooldown_s": 60, "autonomy": "auto",
         "actions": [{"kind": "hint", "title": "Offer retention to $call_tier customer"}]},
        {"id": "refund", "version": 1, "trigger": {"kinds": ["entity"], "names": ["money"]},
         "when": "signal.attrs.get('amount', 0) > 200", "dedupe_key": "signal.attrs.get('amount')",
         "autonomy": "approve", "approval": {"deadline_s": 0.3, "on_expiry": "drop"},
         "actions": [{"kind": "webhook", "url": base + "/billing/refund", "payload": {"why": "refund"}, "retries": 1,
                      "backoff_s": 0.01, "undo": {"url": base + "/billing/void", "payload": {"void": True}}},
                     {"kind": "hint", "title": "Refund of $attr_amount approved"}]},
        {"id": "refund_run", "version": 1, "trigger": {"kinds": ["entity"], "names": ["refund_small"]},
         "autonomy": "approve", "approval": {"deadline_s": 0.2, "on_expiry": "run"},
         "actions": [{"kind": "webhook", "url": base + "/billing/small", "retries": 0}]},
        {"id": "anger", "version": 1, "trigger": {"kinds": ["sentiment"], "names": ["anger_sustained"]},
         "autonomy": "approve", "approval": {"deadline_s": 0.2, "on_expiry": "escalate", "escalate_to": "team_lead"},
         "actions": [{"kind": "alert", "message": "Angry customer on $call_id"}]},
        {"id": "manager", "version": 1, "trigger": {"kinds": ["risk"], "names": ["escalation_request"]},
         "autonomy": "suggest", "max_per_call": 1,
         "actions": [{"kind": "hint", "title": "Customer wants a manager"},
                     {"kind": "escalate", "role": "team_lead", "queue": "escalations"},
                     {"kind": "webhook", "url": base + "/crm/flag", "retries": 0}]},
        {"id": "pci", "version": 1, "trigger": {"kinds": ["risk"], "names": ["card_number"]}, "autonomy": "auto",
         "actions": [{"kind": "call_control", "control": "pause_recording"},
                     {"kind": "hint", "title": "Use secure payment", "severity": "critical"},
                     {"kind": "webhook", "url": base + "/pay/handoff", "retries": 0, "timeout_s": 5,
                      "undo": {"url": base + "/pay/cancel"}}]},
        {"id": "noisy", "version": 1, "trigger": {"kinds": ["phrase"]}, "autonomy": "auto",
         "anomaly": {"window": 10, "min_samples": 3, "max_dismissal_rate": 0.5, "max_fires_per_hour": 5,
                     "auto_pause": True},
         "actions": [{"kind": "hint", "title": "Say: $signal_name"}]},
    ]  # fmt: skip


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    rx, server, task = await start_receiver()
    real = None
    db = None
    if HAVE_AUDIT:
        db = await Database.connect(f"sqlite:///{tmp_path / 'audit.db'}")
        real = AuditLog(db)
        if hasattr(real, "init"):
            await real.init()
    audit = TeeAudit(real)
    clock = Clock()
    harness: Harness
    holder: list[Harness] = []

    async def to_agent(call_id: str, event: dict[str, Any]) -> None:
        holder[0].agent.append((call_id, event))

    async def to_sup(event: dict[str, Any]) -> None:
        holder[0].sup.append(event)

    async def escalate(call_id: str, target: dict[str, Any]) -> str:
        holder[0].escalations.append((call_id, target))
        return "queued"

    async def control(call_id: str, what: str) -> None:
        holder[0].controls.append((call_id, what))

    wh = WebhookClient()
    disp = ActionDispatcher(publish_to_agent=to_agent, publish_to_supervisors=to_sup, webhooks=wh,
                            escalate=escalate, call_control=control)  # fmt: skip
    engine = DecisionEngine(PlaybookSet.from_docs([("test", {"playbooks": playbooks(rx.base)})]), audit, disp, clock)
    harness = Harness(engine, audit, rx, clock)
    holder.append(harness)
    yield harness
    await engine.close()
    await wh.aclose()
    if db is not None:
        await db.close()
    server.should_exit = True
    await asyncio.wait_for(task, 10)


CALL = CallInfo("call_1", agent_id="agent_7", queue="retail", tier="gold")


async def test_auto_hint_and_its_full_audit_trail(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "intent", "cancel_account"))
    assert [r.state for r in recs] == ["succeeded"]
    [hint] = h.hints("call_1")
    assert hint["title"] == "Offer retention to gold customer" and hint["source"] == "retention@3"
    assert hint["attrs"]["action_id"] == recs[0].action_id
    kinds = h.audit.kinds()
    assert kinds[:2] == ["signal", "playbook_matched"]
    assert h.audit.kinds(recs[0].action_id) == ["action_proposed", "action_dispatched", "hint_shown", "action_succeeded"]
    sig_entry = h.audit.entries[0]["payload"]
    assert sig_entry["detector"] == "test-det" and sig_entry["detector_version"] == "3"
    assert sig_entry["evidence"]["text"] == "masked text"
    why = h.audit.entries[1]["payload"]
    assert why["when"] == "call.queue != 'collections'" and why["seen"]["call"]["queue"] == "retail"


async def test_low_confidence_wrong_trigger_and_false_condition_do_nothing(h: Harness) -> None:
    assert await h.engine.on_signal(CALL, sig("call_1", "intent", "cancel_account", conf=0.5)) == []
    assert await h.engine.on_signal(CALL, sig("call_1", "intent", "upgrade")) == []
    coll = CallInfo("call_2", queue="collections")
    assert await h.engine.on_signal(coll, sig("call_2", "intent", "cancel_account")) == []
    assert h.hints() == [] and "playbook_matched" not in h.audit.kinds()


async def test_cooldown_per_call(h: Harness) -> None:
    assert len(await h.engine.on_signal(CALL, sig("call_1", "intent", "cancel_account"))) == 1
    h.clock.t += 30
    assert await h.engine.on_signal(CALL, sig("call_1", "intent", "cancel_account")) == []
    other = CallInfo("call_9", queue="retail")
    assert len(await h.engine.on_signal(other, sig("call_9", "intent", "cancel_account"))) == 1
    h.clock.t += 31
    assert len(await h.engine.on_signal(CALL, sig("call_1", "intent", "cancel_account"))) == 1
    sup = [e["payload"]["reason"] for e in h.audit.entries if e["kind"] == "suppressed"]
    assert sup == ["cooldown (30.0s of 60s)"]


async def test_approval_gate_blocks_until_approved(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=250.0))
    assert {r.state for r in recs} == {"pending_approval"}
    [req] = h.sup_of("approval_request")
    assert req["playbook_id"] == "refund" and req["deadline_s"] == 0.3
    await asyncio.sleep(0.1)
    assert h.rx.requests == [] and h.hints() == []
    done = await h.engine.approve(recs[0].action_id, "sup_ann")
    await h.engine.drain()
    assert {r.state for r in done} == {"succeeded"}
    [req] = h.rx.on("/billing/refund")
    assert req["key"] == f"callcue-{recs[0].action_id}-do" and req["json"]["why"] == "refund"
    assert h.hints()[0]["title"] == "Refund of 250 approved"
    assert h.audit.kinds(recs[0].action_id) == ["action_proposed", "action_pending_approval", "action_approved", "action_dispatched", "action_succeeded"]
    approved = next(e for e in h.audit.entries if e["kind"] == "action_approved")
    assert approved["actor"] == "sup_ann"
    await asyncio.sleep(0.35)  # the deadline timer was cancelled: nothing expires afterwards
    assert "action_expired" not in h.audit.kinds()


async def test_approval_expires_and_drops(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=999.0))
    await asyncio.sleep(0.45)
    assert {r.state for r in recs} == {"expired"}
    assert h.rx.requests == [] and h.hints() == []
    with pytest.raises(InvalidTransition, match="is expired, not pending_approval"):
        await h.engine.approve(recs[0].action_id, "late_sup")


async def test_approval_expiry_run_and_escalate_policies(h: Harness) -> None:
    run = await h.engine.on_signal(CALL, sig("call_1", "entity", "refund_small"))
    esc = await h.engine.on_signal(CALL, sig("call_1", "sentiment", "anger_sustained"))
    await asyncio.sleep(0.35)
    await h.engine.drain()
    assert run[0].state == "succeeded" and len(h.rx.on("/billing/small")) == 1
    assert h.audit.kinds(run[0].action_id) == ["action_proposed", "action_pending_approval", "action_expired", "action_dispatched", "action_succeeded"]
    assert esc[0].state == "expired" and h.sup_of("alert") == []
    [(call, target)] = h.escalations
    assert call == "call_1" and target["role"] == "team_lead" and "expired" in target["message"]


async def test_reject_never_runs(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=300.0))
    await h.engine.reject(recs[1].action_id, "sup_bo", reason="not eligible")
    await asyncio.sleep(0.35)
    assert {r.state for r in recs} == {"rejected"} and h.rx.requests == []


async def test_dedupe_key_per_call(h: Harness) -> None:
    assert len(await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=300.0))) == 2
    assert await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=300.0)) == []
    assert len(await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=450.0))) == 2
    assert [e["payload"]["reason"] for e in h.audit.entries if e["kind"] == "suppressed"] == ["duplicate (key 300.0)"]


async def test_pause_for_one_call_stops_it_mid_call_and_cancels_pending(h: Harness) -> None:
    pending = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=300.0))
    n = await h.engine.pause("refund", "sup_ann", call_id="call_1", reason="customer complaint")
    assert n == 2 and {r.state for r in pending} == {"cancelled"}
    assert await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=500.0)) == []
    other = CallInfo("call_2", queue="retail")
    assert len(await h.engine.on_signal(other, sig("call_2", "entity", "money", amount=500.0))) == 2
    assert h.engine.is_paused("refund", "call_1") and not h.engine.is_paused("refund", "call_2")
    await h.engine.resume("refund", "sup_ann", call_id="call_1")
    assert len(await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=501.0))) == 2
    assert h.sup_of("playbook_paused")[0]["call_id"] == "call_1"
    paused = next(e for e in h.audit.entries if e["kind"] == "paused")
    assert paused["actor"] == "sup_ann" and paused["payload"]["scope"] == "call"


async def test_global_pause_is_a_kill_switch(h: Harness) -> None:
    assert len(await h.engine.on_signal(CALL, sig("call_1", "intent", "cancel_account"))) == 1
    await h.engine.pause("retention", "sup_ann")
    h.clock.t += 1000
    assert await h.engine.on_signal(CALL, sig("call_1", "intent", "cancel_account")) == []
    assert await h.engine.on_signal(CallInfo("c3"), sig("c3", "intent", "cancel_account")) == []
    assert [e["payload"]["reason"] for e in h.audit.entries if e["kind"] == "suppressed"] == ["paused_globally"] * 2
    with pytest.raises(UnknownAction, match="unknown playbook 'nope'"):
        await h.engine.pause("nope", "sup_ann")


async def test_cancel_in_flight_webhook(h: Harness) -> None:
    h.rx.delay_s["/pay/handoff"] = 0.6
    recs = await h.engine.on_signal(CALL, sig("call_1", "risk", "card_number"))
    hook = recs[2]
    await asyncio.sleep(0.1)
    assert hook.state == "dispatched" and len(h.rx.on("/pay/handoff")) == 1
    await h.engine.cancel(hook.action_id, "sup_ann", reason="wrong call")
    assert hook.state == "cancelled" and hook.action_id not in {a.action_id for a in h.engine.actions(state="dispatched")}
    await h.engine.drain()
    assert h.audit.kinds(hook.action_id) == ["action_proposed", "action_dispatched", "action_cancelled"]
    with pytest.raises(InvalidTransition, match="use rollback"):
        await h.engine.cancel(recs[1].action_id, "sup_ann")


async def test_pci_pauses_recording_before_the_hint_and_rollback_resumes(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "risk", "card_number"))
    await h.engine.drain()
    assert h.controls == [("call_1", "pause_recording")]
    types = [e["type"] for _, e in h.agent]
    assert types.index("call_control") < types.index("hint")
    await h.engine.rollback(recs[0].action_id, "sup_ann")
    assert h.controls[-1] == ("call_1", "resume_recording") and recs[0].state == "rolled_back"


async def test_rollback_calls_the_webhook_undo(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=700.0))
    await h.engine.approve(recs[0].action_id, "sup_ann")
    await h.engine.drain()
    hook = recs[0]
    await h.engine.rollback(hook.action_id, "sup_cy", reason="customer withdrew")
    [undo] = h.rx.on("/billing/void")
    assert undo["key"] == f"callcue-{hook.action_id}-undo"
    assert undo["json"]["undo_of"] == f"callcue-{hook.action_id}-do" and undo["json"]["void"] is True
    assert undo["json"]["original_result"]["path"] == "/billing/refund"
    assert hook.state == "rolled_back" and h.audit.kinds(hook.action_id)[-1] == "action_rolled_back"
    with pytest.raises(InvalidTransition, match="only a succeeded action"):
        await h.engine.rollback(hook.action_id, "sup_cy")


async def test_rollback_of_an_alert_is_refused(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "sentiment", "anger_sustained"))
    await h.engine.approve(recs[0].action_id, "sup")
    assert h.sup_of("alert")[0]["message"] == "Angry customer on call_1"
    with pytest.raises(InvalidTransition, match="has no undo"):
        await h.engine.rollback(recs[0].action_id, "sup")


async def test_webhook_failure_is_recorded(h: Harness) -> None:
    h.rx.fail_next["/billing/refund"] = 5
    recs = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=250.0))
    await h.engine.approve(recs[0].action_id, "sup")
    await h.engine.drain()
    assert recs[0].state == "failed" and "HTTP 503" in (recs[0].error or "")
    failed = next(e for e in h.audit.entries if e["kind"] == "action_failed")
    assert failed["payload"]["attempts"] == 2 and failed["payload"]["status"] == 503


async def test_override_pending_decision_with_supervisors_own(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=250.0))
    new = await h.engine.override("sup_ann", {"kind": "hint", "title": "Offer store credit instead", "severity": "warning"},
                                  action_id=recs[0].action_id, reason="policy")  # fmt: skip
    assert recs[0].state == "overridden" and recs[1].state == "pending_approval"
    assert new is not None and new.state == "succeeded" and new.actor == "sup_ann"
    assert h.hints()[0]["title"] == "Offer store credit instead"
    await h.engine.reject(recs[1].action_id, "sup_ann")
    await asyncio.sleep(0.35)
    assert h.rx.requests == []
    ov = next(e for e in h.audit.entries if e["kind"] == "override")
    assert ov["payload"]["replaced_by"] == new.action_id and ov["actor"] == "sup_ann"
    assert h.engine.anomalies.rates("refund")["total_overridden"] == 1
    with pytest.raises(Exception, match="kind"):
        await h.engine.override("sup", {"kind": "teleport"}, call_id="call_1")


async def test_override_executed_webhook_undoes_it(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "risk", "card_number"))
    await h.engine.drain()
    await h.engine.override("sup", None, action_id=recs[2].action_id, reason="false positive")
    assert recs[2].state == "overridden" and len(h.rx.on("/pay/cancel")) == 1


async def test_suggestion_runs_only_when_the_agent_accepts(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "risk", "escalation_request"))
    hint_rec, esc, hook = recs
    assert (hint_rec.state, esc.state, hook.state) == ("succeeded", "suggested", "suggested")
    [hint] = h.hints()
    assert hint["attrs"]["pending_action_ids"] == [esc.action_id, hook.action_id]
    assert h.escalations == [] and h.rx.requests == []
    with pytest.raises(ValueError, match="feedback action must be one of"):
        await h.engine.feedback(hint["hint_id"], "agent_7", "liked")
    changed = await h.engine.feedback(hint["hint_id"], "agent_7", "accepted")
    await h.engine.drain()
    assert {r.action_id for r in changed} == {esc.action_id, hook.action_id}
    assert esc.state == hook.state == "succeeded"
    assert h.escalations[0][1]["queue"] == "escalations" and len(h.rx.on("/crm/flag")) == 1


async def test_dismissed_suggestion_is_dropped(h: Harness) -> None:
    await h.engine.on_signal(CALL, sig("call_1", "risk", "escalation_request"))
    [hint] = h.hints()
    changed = await h.engine.feedback(hint["hint_id"], "agent_7", "dismissed", reason="customer calmed down")
    assert {r.state for r in changed} == {"dismissed"} and h.escalations == []
    fb = next(e for e in h.audit.entries if e["kind"] == "feedback")
    assert fb["payload"]["reason"] == "customer calmed down" and fb["playbook_id"] == "manager"
    # a dismissal without a reason still counts (the human decided) but is flagged
    await h.engine.on_signal(CallInfo("c5"), sig("c5", "risk", "escalation_request"))
    changed = await h.engine.feedback(h.hints("c5")[0]["hint_id"], "agent_7", "dismissed")
    assert {r.state for r in changed} == {"dismissed"}
    assert [e for e in h.audit.entries if e["kind"] == "feedback"][-1]["payload"]["detail_missing"] is True
    assert await h.engine.feedback("hint_unknown", "agent_7", "accepted") == []


async def test_dismissal_rate_anomaly_alerts_and_auto_pauses(h: Harness) -> None:
    for i in range(3):
        h.clock.t += 1
        [r] = await h.engine.on_signal(CALL, sig("call_1", "phrase", f"p{i}"))
        await h.engine.feedback(r.hint_id or "", "agent_7", "dismissed", reason="irrelevant")
    [a] = h.sup_of("anomaly")
    assert a["metric"] == "dismissal_rate" and a["value"] == 1.0 and a["auto_pause"] is True
    assert h.engine.is_paused("noisy")
    assert await h.engine.on_signal(CALL, sig("call_1", "phrase", "p9")) == []
    assert "anomaly" in h.audit.kinds() and h.audit.kinds(playbook_id="noisy").count("paused") == 1


async def test_firing_rate_anomaly(h: Harness) -> None:
    for i in range(6):
        h.clock.t += 1
        await h.engine.on_signal(CallInfo(f"c{i}"), sig(f"c{i}", "phrase", "hello"))
    [a] = h.sup_of("anomaly")
    assert a["metric"] == "fires_per_hour" and a["value"] == 6 and a["bound"] == 5
    assert h.engine.is_paused("noisy")


async def test_retracted_signal_cancels_pending_and_call_end_cleans_up(h: Harness) -> None:
    s = sig("call_1", "entity", "money", amount=250.0)
    recs = await h.engine.on_signal(CALL, s)
    s.retracted = True
    await h.engine.on_signal(CALL, s)
    assert recs[0].state == "cancelled"
    other = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=260.0))
    await h.engine.on_call_end("call_1")
    assert {r.state for r in other} == {"cancelled"}
    await asyncio.sleep(0.35)
    assert "action_expired" not in h.audit.kinds() and "call_ended" in h.audit.kinds()


async def test_starter_playbooks_fire_on_expected_signals(h: Harness) -> None:
    engine = DecisionEngine(PlaybookSet.load(REPO / "config" / "playbooks"), h.audit, h.engine.dispatcher, h.clock)
    try:
        call = CallInfo("c1", agent_id="a1", queue="retail", tier="gold", started_at=h.clock.t)
        recs = await engine.on_signal(call, sig("c1", "intent", "cancel_account", conf=0.8))
        assert recs and recs[0].playbook_id == "retention_offer"
        h.clock.t += 40
        recs = await engine.on_signal(call, sig("c1", "compliance", "disclosure_missing", disclosure_id="recording",
                                                description="the call-recording notice", deadline_s=30.0))  # fmt: skip
        assert [r.playbook_id for r in recs] == ["disclosure_reminder"]
        assert h.hints("c1")[-1]["body"] == "Read it now: the call-recording notice (was due by 30s)."
        assert await engine.on_signal(call, sig("c1", "compliance", "disclosure_missing", disclosure_id="recording")) == []
        recs = await engine.on_signal(call, sig("c1", "intent", "manager_request", conf=0.8))
        assert [r.state for r in recs] == ["succeeded", "suggested"]
        recs = await engine.on_signal(call, sig("c1", "risk", "card_number", conf=0.9))
        assert h.controls == [("c1", "pause_recording"), ("c1", "pause_transcript_storage")]
        assert h.hints("c1")[-1]["severity"] == "critical"
        await engine.on_signal(call, sig("c1", "intent", "refund_request"))
        recs = await engine.on_signal(call, sig("c1", "entity", "money", amount=350.0))
        assert {r.state for r in recs} == {"pending_approval"} and recs[0].playbook_id == "refund_approval"
        assert await engine.on_signal(call, sig("c1", "entity", "money", amount=150.0)) == []
    finally:
        await engine.close()


@pytest.mark.skipif(not HAVE_AUDIT, reason="callcue.audit.log not landed yet")
async def test_decision_life_is_in_the_real_audit_log(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=250.0))
    await h.engine.approve(recs[0].action_id, "sup_ann")
    await h.engine.drain()
    await h.engine.rollback(recs[0].action_id, "sup_ann")
    real = h.audit.real
    rows = await real.query(call_id="call_1")
    kinds = [r.kind if hasattr(r, "kind") else r["kind"] for r in rows]
    for k in ("signal", "playbook_matched", "action_proposed", "action_pending_approval", "action_approved",
              "action_dispatched", "action_succeeded", "hint_shown", "action_rolled_back"):  # fmt: skip
        assert k in kinds, (k, kinds)
    ok = await real.verify()
    assert ok is True or getattr(ok, "ok", None) is True or (isinstance(ok, tuple) and ok[0] is True)


# ---------------------------------------------------------------------- supervisor API

TOKENS = {"sup-token": Principal("sup_ann", "supervisor"), "agent-token": Principal("agent_7", "agent")}


def token_auth(request: Any) -> Principal | None:
    h = request.headers.get("authorization", "")
    return TOKENS.get(h.removeprefix("Bearer ").strip()) if h.startswith("Bearer ") else None


@pytest.fixture
async def api(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    if not HAVE_AUDIT:
        pytest.skip("supervisor API needs callcue.audit.log")

    async def kpis_fn(by: str = "playbook", since: Any = None, until: Any = None) -> list[dict[str, Any]]:
        from callcue.audit.kpis import kpis

        return await kpis(h.audit.real.db, by=by, since=since, until=until)

    app = Starlette(routes=routes(h.engine, h.audit.real, kpis_fn, token_auth))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers={"Authorization": "Bearer sup-token"}) as c:  # fmt: skip
        yield c


async def test_rest_requires_a_supervisor_token(h: Harness, api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/actions", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = await api.get("/api/v1/actions", headers={"Authorization": "Bearer agent-token"})
    assert r.status_code == 403


async def test_rest_approval_flow_pause_and_errors(h: Harness, api: httpx.AsyncClient) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=250.0))
    r = await api.get("/api/v1/actions", params={"state": "pending_approval"})
    assert r.status_code == 200 and {a["action_id"] for a in r.json()["actions"]} == {x.action_id for x in recs}
    assert h.rx.requests == []
    r = await api.post(f"/api/v1/actions/{recs[0].action_id}/approve", json={"note": "ok, within policy"})
    assert r.status_code == 200 and len(r.json()["actions"]) == 2
    await h.engine.drain()
    assert recs[0].state == "succeeded" and len(h.rx.on("/billing/refund")) == 1
    r = await api.post(f"/api/v1/actions/{recs[0].action_id}/approve")
    assert r.status_code == 409 and "is succeeded, not pending_approval" in r.json()["error"]["message"]
    r = await api.post("/api/v1/actions/act_missing/cancel")
    assert r.status_code == 404
    r = await api.post(f"/api/v1/actions/{recs[0].action_id}/rollback", json={"reason": "duplicate refund"})
    assert r.status_code == 200 and r.json()["action"]["state"] == "rolled_back" and len(h.rx.on("/billing/void")) == 1
    r = await api.post("/api/v1/playbooks/refund/pause", params={"call_id": "call_1"}, json={"reason": "testing"})
    assert r.status_code == 200 and r.json()["paused"] is True
    assert await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=900.0)) == []
    r = await api.get("/api/v1/playbooks")
    refund = next(p for p in r.json()["playbooks"] if p["id"] == "refund")
    assert refund["paused_calls"] == ["call_1"] and refund["paused"] is False
    r = await api.post("/api/v1/calls/call_1/override", json={"action": {"kind": "hint"}})
    assert r.status_code == 400 and "title" in r.json()["error"]["message"]
    r = await api.post("/api/v1/calls/call_1/override", content=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]


async def test_rest_audit_query_export_disposition_and_kpis(h: Harness, api: httpx.AsyncClient) -> None:
    [rec] = await h.engine.on_signal(CALL, sig("call_1", "intent", "cancel_account"))
    await h.engine.feedback(rec.hint_id or "", "agent_7", "accepted")
    r = await api.post("/api/v1/calls/call_1/disposition", json={"outcome": "resolved", "agent_id": "agent_7"})
    assert r.status_code == 200
    r = await api.post("/api/v1/calls/call_1/disposition", json={"outcome": "vanished"})
    assert r.status_code == 400 and "outcome" in r.json()["error"]["message"]
    r = await api.get("/api/v1/audit", params={"call_id": "call_1", "playbook_id": "retention"})
    kinds = [e["kind"] for e in r.json()["entries"]]
    assert kinds[0] == "playbook_matched" and "hint_shown" in kinds and "feedback" in kinds
    r = await api.get("/api/v1/audit/export", params={"call_id": "call_1"})
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert r.headers["content-type"].startswith("application/x-ndjson") and lines[-1]["kind"] == "disposition"
    from callcue.audit.log import verify_entries

    assert verify_entries(lines, contiguous=False).ok
    r = await api.get("/api/v1/audit", params={"since": "yesterday"})
    assert r.status_code == 400 and "ISO-8601" in r.json()["error"]["message"]
    r = await api.get("/api/v1/kpis")
    [row] = [k for k in r.json()["kpis"] if k["playbook_id"] == "retention"]
    assert row["shown"] == 1 and row["accepted"] == 1


async def test_supervisor_websocket_commands(h: Harness) -> None:
    if not HAVE_AUDIT:
        pytest.skip("needs callcue.audit.log")
    cmds = SupervisorCommands(h.engine, h.audit.real, None)
    sup, agent = TOKENS["sup-token"], TOKENS["agent-token"]
    recs = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=250.0))
    r = await cmds.handle_supervisor_message(agent, {"type": "approve", "action_id": recs[0].action_id})
    assert r == {"type": "error", "code": "forbidden", "message": "agent may not approve (call_control)", "request": "approve"}
    r = await cmds.handle_supervisor_message(sup, {"type": "reject", "action_id": recs[0].action_id, "reason": "no"})
    assert r["type"] == "reject_result" and {a["state"] for a in r["actions"]} == {"rejected"}
    r = await cmds.handle_supervisor_message(sup, {"type": "pause_playbook", "playbook_id": "retention"})
    assert r["ok"] and h.engine.is_paused("retention")
    r = await cmds.handle_supervisor_message(sup, {"type": "resume_playbook", "playbook_id": "retention"})
    assert r["paused"] is False
    r = await cmds.handle_supervisor_message(sup, {"type": "override", "call_id": "call_1",
                                                   "action": {"kind": "hint", "title": "Transfer to retentions"}})  # fmt: skip
    assert r["replacement"]["state"] == "succeeded" and h.hints()[-1]["title"] == "Transfer to retentions"
    r = await cmds.handle_supervisor_message(sup, {"type": "launch_missiles"})
    assert r["code"] == "unknown_type" and "approve" in r["message"]
    r = await cmds.handle_supervisor_message(sup, {"type": "kpis"})
    assert r["code"] == "not_available"


async def test_pipeline_call_object_and_hint_objects_sink(h: Harness) -> None:
    """The server describes its call with `CallInfo.from_metadata` (queue and tier from the
    start metadata) and may take hints as `Hint` objects to store them before fan-out."""
    from types import SimpleNamespace

    from callcue.events import Hint

    got: list[Hint] = []

    async def store_hint(hint: Hint) -> None:
        got.append(hint)

    d = h.engine.dispatcher
    disp = ActionDispatcher(publish_to_agent=d.publish_to_agent, publish_to_supervisors=d.publish_to_supervisors,
                            webhooks=d.webhooks, publish_hint=store_hint)  # fmt: skip
    engine = DecisionEngine(h.engine.playbooks, h.audit, disp, h.clock)
    call = CallInfo.from_metadata("cx", "a9", h.clock.t, {"queue": "collections", "tier": "gold"})
    assert await engine.on_signal(call, sig("cx", "intent", "cancel_account")) == []  # queue from metadata
    call = CallInfo.from_metadata("cx", "a9", h.clock.t, {"queue": "retail", "tier": "gold"})
    [rec] = await engine.on_signal(call, sig("cx", "intent", "cancel_account"))
    assert [g.hint_id for g in got] == [rec.hint_id] and got[0].title == "Offer retention to gold customer"
    assert h.hints("cx") == []
    with pytest.raises(TypeError, match="call_id"):
        await engine.on_signal(SimpleNamespace(agent_id="x"), sig("cx", "intent", "cancel_account"))
    await engine.on_call_end("cx")
    assert engine.actions(call_id="cx") == []
    await engine.close()


async def test_global_pause_survives_a_restart_via_the_audit_log(h: Harness) -> None:
    if not HAVE_AUDIT:
        pytest.skip("needs callcue.audit.log")
    await h.engine.pause("retention", "sup_ann", reason="bad offer text")
    await h.engine.pause("refund", "sup_ann")
    await h.engine.resume("refund", "sup_ann")
    await h.engine.pause("pci", "sup_ann", call_id="call_1")  # call-scoped: not carried over
    fresh = DecisionEngine(h.engine.playbooks, h.audit.real, h.engine.dispatcher, h.clock)
    assert await fresh.restore() == ["retention"]
    assert await fresh.on_signal(CALL, sig("call_1", "intent", "cancel_account")) == []
    await fresh.close()


async def test_concurrent_humans_cannot_double_execute(h: Harness) -> None:
    recs = await h.engine.on_signal(CALL, sig("call_1", "entity", "money", amount=250.0))
    a, b = await asyncio.gather(h.engine.approve(recs[0].action_id, "sup_a"), h.engine.approve(recs[1].action_id, "sup_b"),
                                return_exceptions=True)  # fmt: skip
    assert sum(isinstance(x, InvalidTransition) for x in (a, b)) == 1
    await h.engine.drain()
    assert len(h.rx.on("/billing/refund")) == 1 and len(h.hints()) == 1
    r1, r2 = await asyncio.gather(h.engine.rollback(recs[0].action_id, "sup_a"),
                                  h.engine.rollback(recs[0].action_id, "sup_b"), return_exceptions=True)  # fmt: skip
    assert sum(isinstance(x, InvalidTransition) for x in (r1, r2)) == 1
    assert len(h.rx.on("/billing/void")) == 1


async def test_unmasked_digits_are_scrubbed_not_lost(h: Harness) -> None:
    if not HAVE_AUDIT:
        pytest.skip("needs the real audit log's sensitive-data guard")
    s = sig("call_1", "intent", "cancel_account")
    assert s.evidence is not None
    s.evidence.text = "my card is 4111 1111 1111 1111 cancel it"
    await h.engine.on_signal(CALL, s)
    [e] = await h.audit.real.query(call_id="call_1", kind="signal")
    assert e.payload["scrubbed"] is True and "[redacted-digits]" in e.payload["evidence"]["text"]
    # every string of the payload (a float timestamp may hold "4111" by chance: not the card)
    strings = json.dumps([v for v in _strings(e.payload)])
    assert "4111" not in strings and "1111 1111" not in strings


def _strings(v: object) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [x for k, val in v.items() for x in [str(k), *_strings(val)]]
    if isinstance(v, list):
        return [x for val in v for x in _strings(val)]
    return []


async def test_learned_threshold_applies_and_shadow_candidate_is_recorded(h: Harness) -> None:
    if not HAVE_AUDIT:
        pytest.skip("needs the audit log and learning store")
    from callcue.learning.store import Learning

    learning = await Learning(h.audit.real.db, h.audit.real).init()
    await learning.add_threshold("retention", 0.95, status="active", actor="ops", reason={"why": "test"})
    cand = await learning.add_threshold("retention", 0.5, actor="ops")
    await learning.start_shadow(cand.version, actor="ops")
    engine = DecisionEngine(h.engine.playbooks, h.audit, h.engine.dispatcher, h.clock, learning=learning)
    try:
        # 0.9 passes the file's 0.6 but not the learned 0.95; the 0.5 candidate would have fired
        assert await engine.on_signal(CALL, sig("call_1", "intent", "cancel_account", conf=0.9)) == []
        h.clock.t += 100
        [rec] = await engine.on_signal(CallInfo("c2", queue="retail"), sig("c2", "intent", "cancel_account", conf=0.97))
        assert rec.state == "succeeded" and rec.hint_id
        matched = [e for e in h.audit.entries if e["kind"] == "playbook_matched"]
        assert matched[-1]["payload"]["min_confidence"] == 0.95 and matched[-1]["payload"]["threshold_source"] == "learned"
        rep = await learning.compare(cand.version)
        assert rep.decisions == 2 and rep.candidate_fire_rate == 1.0 and rep.active_fire_rate == 0.5
        assert rep.agreement == 0.5
    finally:
        await engine.close()


async def test_pause_racing_a_firing_in_progress_wins(h: Harness) -> None:
    """The kill switch thrown while a firing is being audited stops it before it acts."""
    gate = asyncio.Event()
    orig_append = h.audit.append

    async def slow_append(kind: str, **kw: Any) -> Any:
        if kind == "action_proposed":
            await gate.wait()
        return await orig_append(kind, **kw)

    h.audit.append = slow_append  # type: ignore[method-assign]
    firing = asyncio.create_task(h.engine.on_signal(CALL, sig("call_1", "risk", "card_number")))
    await asyncio.sleep(0.05)
    pausing = asyncio.create_task(h.engine.pause("pci", "sup_ann", reason="false positives"))
    await asyncio.sleep(0.05)
    gate.set()
    recs = await firing
    await pausing
    await h.engine.drain()
    assert {r.state for r in recs} == {"cancelled"}
    assert h.controls == [] and h.hints() == [] and h.rx.requests == []
