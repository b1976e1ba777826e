"""KPIs and learning-from-feedback on both backends, driven through the real audit log."""

from __future__ import annotations

import pytest
from pg import open_test_db

from callcue.audit import kpis as kpis_mod
from callcue.audit.kpis import kpis
from callcue.audit.log import AuditLog
from callcue.learning.store import Learning, LearningError

T0 = 1_800_000_000.0


class Clock:
    """Settable wall clock: the scripted call below says exactly when each thing happened."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request, tmp_path):
    d = await open_test_db(request.param, tmp_path)
    yield d
    await d.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def audit(db, clock):
    return await AuditLog(db, clock=clock).init()


@pytest.fixture
async def learning(db, audit, clock):
    return await Learning(db, audit, clock=clock).init()


async def show(audit, clock, at, hint_id, *, call="c1", agent="a1", pb="cancel_save", conf=0.8, intent=None, text=None):
    clock.t = T0 + at
    payload = {"hint_id": hint_id, "confidence": conf}
    if intent:
        payload["intent"] = intent
    if text:
        payload["text"] = text
    await audit.append("hint_shown", call_id=call, agent_id=agent, playbook_id=pb, playbook_version=1, payload=payload)


async def feedback(audit, clock, at, hint_id, action, correction=None, agent="a1"):
    clock.t = T0 + at
    await audit.append("feedback", agent_id=agent, actor=agent,
                       payload={"hint_id": hint_id, "action": action, "reason": "r", "correction": correction})  # fmt: skip


async def script(audit, clock):
    # call c1 (agent a1): 3 cancel_save hints; c2 (agent a2): 2 cancel_save + 1 fraud; c3: no hints
    await show(audit, clock, 0, "h1", call="c1", agent="a1")
    await show(audit, clock, 10, "h2", call="c1", agent="a1")
    await show(audit, clock, 20, "h3", call="c1", agent="a1")
    await show(audit, clock, 30, "h4", call="c2", agent="a2")
    await show(audit, clock, 40, "h5", call="c2", agent="a2")
    await show(audit, clock, 50, "h6", call="c2", agent="a2", pb="fraud_alert")
    await feedback(audit, clock, 2, "h1", "accepted")  # 2 s to accept
    await feedback(audit, clock, 16, "h2", "accepted")  # 6 s
    await feedback(audit, clock, 24, "h3", "dismissed")
    await feedback(audit, clock, 31, "h4", "corrected", correction="billing_dispute", agent="a2")
    await feedback(audit, clock, 60, "h6", "accepted", agent="a2")  # 10 s; h5 never answered
    clock.t = T0 + 100
    await audit.append("disposition", call_id="c1", agent_id="a1", payload={"outcome": "resolved"})
    await audit.append("disposition", call_id="c2", agent_id="a2", payload={"outcome": "churned"})
    await audit.append("disposition", call_id="c3", agent_id="a3", payload={"outcome": "escalated"})


async def test_kpis_per_playbook_and_agent(db, audit, clock):
    await script(audit, clock)
    by_pb = {r["playbook_id"]: r for r in await kpis(db, by="playbook")}
    cs = by_pb["cancel_save"]
    assert (cs["shown"], cs["accepted"], cs["dismissed"], cs["corrected"], cs["responded"]) == (5, 2, 1, 1, 4)
    assert cs["acceptance_rate"] == 0.5 and cs["response_rate"] == 0.8
    assert cs["time_to_accept_p50_s"] == pytest.approx(4.0) and cs["time_to_accept_p95_s"] == pytest.approx(5.8)
    assert (cs["calls"], cs["resolved"], cs["churned"], cs["escalated"]) == (2, 1, 1, 0)
    fa = by_pb["fraud_alert"]
    assert (fa["shown"], fa["accepted"], fa["acceptance_rate"], fa["time_to_accept_p50_s"]) == (1, 1, 1.0, 10.0)
    assert (fa["resolved"], fa["churned"]) == (0, 1)

    by_agent = {r["agent_id"]: r for r in await kpis(db, by="agent")}
    assert set(by_agent) == {"a1", "a2", "a3"}
    assert (by_agent["a1"]["shown"], by_agent["a1"]["accepted"], by_agent["a1"]["resolved"]) == (3, 2, 1)
    a2 = by_agent["a2"]
    assert (a2["shown"], a2["accepted"], a2["corrected"], a2["churned"], a2["acceptance_rate"]) == (3, 1, 1, 1, 0.5)
    assert (by_agent["a3"]["shown"], by_agent["a3"]["escalated"], by_agent["a3"]["acceptance_rate"]) == (0, 1, None)

    # time window on when hints were shown: only h1..h3
    win = {r["playbook_id"]: r for r in await kpis(db, since=T0, until=T0 + 25)}
    assert set(win) == {"cancel_save"} and win["cancel_save"]["shown"] == 3
    with pytest.raises(ValueError, match="by must be"):
        await kpis(db, by="queue")


async def test_facts_rebuild_from_the_log(db, audit, clock):
    await script(audit, clock)
    before = await kpis(db, by="agent")
    await db.execute("DELETE FROM hint_facts")
    await db.execute("DELETE FROM call_outcomes")
    assert await kpis(db) == []
    assert await kpis_mod.rebuild(audit) == 14
    assert await kpis(db, by="agent") == before
    assert (await audit.verify()).ok


# acceptance per band: 0.5 -> 30%, 0.6 -> 50%, 0.7 -> 70%, 0.8 -> 80%, 0.9 -> 90% (30 hints each)
BANDS = {0.5: 0.3, 0.6: 0.5, 0.7: 0.7, 0.8: 0.8, 0.9: 0.9}


async def feed_bands(audit, clock, bands=BANDS, n=30, pb="cancel_save", start=0):
    k = start
    for lo, rate in bands.items():
        n_acc = round(rate * n)
        for i in range(n):
            hid = f"{pb}-{k}"
            await show(audit, clock, k, hid, pb=pb, conf=round(lo + 0.01 + 0.08 * i / n, 3))
            await feedback(audit, clock, k + 0.5, hid, "accepted" if i < n_acc else "dismissed")
            k += 1
    return k


async def test_feedback_shifts_threshold_with_bounded_step(learning, audit, clock):
    await feed_bands(audit, clock)
    stats = {b.lo: b for b in await learning.band_stats("cancel_save")}
    assert [stats[lo].acceptance_rate for lo in sorted(stats)] == pytest.approx([0.3, 0.5, 0.7, 0.8, 0.9])

    v1 = await learning.add_threshold("cancel_save", 0.5, status="active", actor="lead")
    cal = await learning.calibrate("cancel_save", target=0.6, min_count=20, max_step=0.3)
    assert cal.current == 0.5 and cal.proposed == pytest.approx(0.7)
    cal = await learning.calibrate("cancel_save", target=0.6, min_count=20, max_step=0.1)
    assert cal.proposed == pytest.approx(0.6) and "bounded" in cal.reason
    v2 = await learning.propose_threshold("cancel_save", target=0.6, max_step=0.1, actor="tuner")
    assert v2 is not None and v2.status == "proposed" and v2.parent_version == v1.version
    assert v2.threshold == pytest.approx(0.6) and v2.reason["calibration"]["target"] == 0.6
    # a proposal does not change what the engine applies
    assert await learning.threshold_for("cancel_save", default=0.4) == 0.5
    # a stricter target pushes the threshold further up; a laxer one lowers an over-strict threshold
    assert (await learning.calibrate("cancel_save", current=0.5, target=0.85, max_step=1)).proposed == pytest.approx(0.9)
    assert (await learning.calibrate("cancel_save", current=0.95, target=0.45, max_step=1)).proposed == pytest.approx(0.6)
    # too little data -> no proposal
    assert await learning.propose_threshold("cancel_save", min_count=31) is None
    kinds = [e.payload["change"] for e in await audit.query(kind="threshold_changed")]
    assert kinds == ["created", "created"]


async def test_threshold_rises_when_even_the_top_band_fails(learning, audit, clock):
    await feed_bands(audit, clock, bands={0.8: 0.2, 0.9: 0.3}, pb="fraud_alert")
    cal = await learning.calibrate("fraud_alert", current=0.8, target=0.6, min_count=20, max_step=0.05)
    assert cal.proposed == pytest.approx(0.85) and "0.3" in cal.reason


async def test_shadow_promote_rollback(learning, audit, clock):
    await feed_bands(audit, clock)
    v1 = await learning.add_threshold("cancel_save", 0.5, status="active")
    v2 = await learning.propose_threshold("cancel_save", target=0.6, max_step=0.2)
    assert v2.threshold == pytest.approx(0.7)
    with pytest.raises(LearningError, match="only a proposed"):
        await learning.start_shadow(v1.version)
    v2 = await learning.start_shadow(v2.version, actor="supervisor-1")
    assert [v.version for v in await learning.shadow_candidates("cancel_save")] == [v2.version]

    # live traffic: 10 decisions the active (0.5) showed; the candidate (0.7) would show 6 of them
    confs = [0.55, 0.6, 0.65, 0.68, 0.72, 0.75, 0.8, 0.85, 0.9, 0.95]
    verdict = ["dismissed", "dismissed", "accepted", "dismissed", "accepted", "accepted", "accepted", "dismissed",
               "accepted", "accepted"]  # fmt: skip
    for i, c in enumerate(confs):
        hid = f"live-{i}"
        await show(audit, clock, 10_000 + i, hid, conf=c)
        await learning.record_shadow(v2.version, {"decision_id": f"sig-{i}", "hint_id": hid, "confidence": c,
                                                  "active_fired": True}, would_fire=c >= v2.threshold)  # fmt: skip
        await feedback(audit, clock, 10_000 + i + 1, hid, verdict[i])  # feedback arrives after the decision
    # one the active version did not show but the candidate would not either, with feedback known now
    await learning.record_shadow(v2.version, {"decision_id": "sig-x", "active_fired": False}, False, "dismissed")
    rep = await learning.compare(v2.version)
    assert rep.decisions == 11 and rep.with_feedback == 10
    assert rep.agreement == pytest.approx(7 / 11, abs=1e-4)
    assert rep.active_acceptance == pytest.approx(0.6) and rep.candidate_estimated_acceptance == pytest.approx(5 / 6, abs=1e-4)
    assert rep.candidate_fire_rate == pytest.approx(6 / 11, abs=1e-4) and rep.candidate_unobserved == 0
    with pytest.raises(ValueError, match="active_fired"):
        await learning.record_shadow(v2.version, {"decision_id": "x"}, True)

    promoted = await learning.promote(v2.version, actor="supervisor-1")
    assert promoted.status == "active"
    assert (await learning.version(v1.version)).status == "retired"
    assert await learning.threshold_for("cancel_save", default=0.4) == pytest.approx(0.7)
    assert await learning.shadow_candidates() == []
    with pytest.raises(LearningError, match="only proposed or shadow"):
        await learning.promote(v1.version)

    restored = await learning.rollback("cancel_save", actor="supervisor-1")
    assert restored.version == v1.version and restored.status == "active"
    assert (await learning.version(v2.version)).status == "retired"
    assert await learning.threshold_for("cancel_save", default=0.4) == 0.5
    with pytest.raises(LearningError, match="no parent"):
        await learning.rollback("cancel_save")

    changes = [(e.payload["change"], e.payload["version"], e.actor) for e in await audit.query(kind="threshold_changed")]
    assert changes == [
        ("created", v1.version, "system"), ("created", v2.version, "system"),
        ("shadow_started", v2.version, "supervisor-1"),
        ("retired", v1.version, "supervisor-1"), ("promoted", v2.version, "supervisor-1"),
        ("rolled_back", v2.version, "supervisor-1"), ("restored", v1.version, "supervisor-1"),
    ]  # fmt: skip
    promo = next(e for e in await audit.query(kind="threshold_changed") if e.payload["change"] == "promoted")
    assert promo.payload["shadow_report"]["agreement"] == rep.agreement
    assert (await audit.verify()).ok


async def test_confirmed_utterances_become_dataset_versions(learning, audit, clock):
    await show(audit, clock, 0, "d1", intent="cancel_account", text="I want to cancel my subscription")
    await show(audit, clock, 1, "d2", intent="cancel_account", text="why was I charged twice")
    await show(audit, clock, 2, "d3", intent="billing_dispute", text="this fee is wrong")
    await show(audit, clock, 3, "d4", intent="cancel_account", text="just browsing")
    await show(audit, clock, 4, "d5", intent="cancel_account")  # no text: cannot become an example
    await feedback(audit, clock, 5, "d1", "accepted")
    await feedback(audit, clock, 6, "d2", "corrected", correction="billing_dispute")
    await feedback(audit, clock, 7, "d3", "corrected", correction={"intent": "fee_complaint", "note": "x"})
    await feedback(audit, clock, 8, "d4", "dismissed")
    await feedback(audit, clock, 9, "d5", "accepted")
    ds1 = await learning.build_intent_dataset(actor="trainer")
    assert ds1 is not None and ds1.n_examples == 3 and ds1.parent_version is None
    ex1 = await learning.dataset_examples(ds1.version)
    assert {(e["text"], e["intent"], e["source"]) for e in ex1} == {
        ("I want to cancel my subscription", "cancel_account", "accepted"),
        ("why was I charged twice", "billing_dispute", "corrected"),
        ("this fee is wrong", "fee_complaint", "corrected"),
    }
    assert await learning.build_intent_dataset() is None  # nothing new
    await show(audit, clock, 20, "d6", intent="cancel_account", text="please close my account")
    await feedback(audit, clock, 21, "d6", "accepted")
    ds2 = await learning.build_intent_dataset()
    assert ds2.parent_version == ds1.version and ds2.n_examples == 4
    assert await learning.dataset_examples(ds1.version) == ex1  # old versions are immutable
    assert len(await learning.dataset_examples()) == 4
    created = await audit.query(kind="dataset_version_created")
    assert [e.payload["version"] for e in created] == [ds1.version, ds2.version]
    assert created[0].payload["per_intent"] == {"billing_dispute": 1, "cancel_account": 1, "fee_complaint": 1}


def test_cli_kpis(tmp_path):
    """`callcue audit kpis` prints one JSON line per playbook/agent from a real log."""
    import asyncio
    import json

    from typer.testing import CliRunner

    from callcue.audit.cli import audit_app
    from callcue.store.db import Database

    url = f"sqlite:///{tmp_path}/k.db"

    async def fill() -> None:
        d = await Database.connect(url)
        try:
            clock = Clock()
            await script(await AuditLog(d, clock=clock).init(), clock)
        finally:
            await d.close()

    asyncio.run(fill())
    r = CliRunner().invoke(audit_app, ["kpis", "--db", url, "--by", "agent"])
    assert r.exit_code == 0, r.output
    rows = {json.loads(line)["agent_id"]: json.loads(line) for line in r.stdout.splitlines()}
    assert rows["a1"]["accepted"] == 2 and rows["a3"]["escalated"] == 1
    r = CliRunner().invoke(audit_app, ["kpis", "--db", url, "--by", "queue"])
    assert r.exit_code == 2 and "--by must be" in r.output
