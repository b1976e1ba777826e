"""CX analytics: the reports over call facts (repeat contacts and first-contact resolution,
friction, drivers, KPIs, playbook impact), topic discovery on real intent data, and the whole
loop through the real server on SQLite and PostgreSQL: chats ending, their facts and uncovered
utterances stored, topics found, one made into an intent, promoted, and then recognised."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from callcue.analytics import reports
from callcue.analytics.facts import call_fact, customer_key, uncovered_utterances
from callcue.analytics.topics import (
    cluster_labels,
    discover,
    distinctive_terms,
    purity_coverage,
)
from tests.conftest import require_shared
from tests.pg import fresh_postgres_url, postgres_unavailable_reason
from tests.serverkit import AGENT_TOKEN, SUPERVISOR_TOKEN, make_settings, server

DAY = 86400.0
T0 = 1_780_000_000.0  # a fixed past instant: every window below has passed


def fact(cid: str, t: float, driver: str | None, **kw: object) -> dict:
    return {"call_id": cid, "started_at": t, "driver": driver, "customer_key": kw.pop("customer", None),
            "agent_id": kw.pop("agent", "a1"), "outcome": kw.pop("outcome", "resolved"), "handle_s": kw.pop("handle", 100.0),
            "transfers": 0, "escalated": 0, "long_holds": 0, "dead_air": 0, "negative_end": 0,
            "hint_group": "none_shown", "playbooks": [], **kw}  # fmt: skip


def test_repeat_contacts_and_first_contact_resolution_follow_the_window() -> None:
    facts = [fact("c1", T0, "billing_dispute", customer="k1"),
             fact("c2", T0 + 3 * DAY, "billing_dispute", customer="k1"),   # repeat of c1 (3 d < 7 d)
             fact("c3", T0 + 20 * DAY, "billing_dispute", customer="k1"),  # 17 d later: a new contact
             fact("c4", T0, "refund_request", customer="k2"),
             fact("c5", T0, "refund_request")]  # no customer: never judged  # fmt: skip
    now = T0 + 30 * DAY
    flags = reports.repeat_flags(facts, [{"customer_key": f["customer_key"], "call_id": f["call_id"],
                                          "started_at": f["started_at"]} for f in facts if f["customer_key"]], 7, now=now)
    assert flags["c1"] == {"repeat": False, "fcr": False}
    assert flags["c2"] == {"repeat": True, "fcr": True}
    assert flags["c3"] == {"repeat": False, "fcr": True} and flags["c4"]["fcr"] is True and "c5" not in flags
    # a call whose window is still open is not judged yet, either way
    contacts = [{"customer_key": "k1", "call_id": c, "started_at": t} for c, t in (("c1", T0), ("c2", T0 + 3 * DAY))]
    assert reports.repeat_flags(facts[:1], contacts, 7, now=T0 + 4 * DAY)["c1"]["fcr"] is None
    k = reports.kpis(facts, flags)
    assert k["overall"]["fcr_rate"] == 0.75 and k["overall"]["fcr_judged"] == 4
    fr = {g["key"]: g for g in reports.friction(facts, flags)["groups"]}
    assert fr["billing_dispute"]["repeat_contacts"] == 1 and fr["billing_dispute"]["repeat_rate"] == pytest.approx(0.333, abs=1e-3)
    assert fr["refund_request"]["repeat_contacts"] == 0


def test_friction_drivers_kpis_and_playbook_impact_count_what_they_say() -> None:
    facts = [fact("a", T0, "cancel_account", transfers=1, escalated=1, outcome="escalated", hint_group="dismissed",
                  playbooks=["retention"], csat_estimate=2.0, qa_score=50.0, handle=300.0),
             fact("b", T0 + DAY, "cancel_account", long_holds=2, negative_end=1, outcome="churned", hint_group="accepted",
                  playbooks=["retention"], csat_estimate=2.5, qa_score=70.0, handle=200.0),
             fact("c", T0 + DAY, "address_change", agent="a2", hint_group="accepted", playbooks=["retention"],
                  csat_estimate=4.5, qa_score=90.0, handle=100.0)]  # fmt: skip
    fr = reports.friction(facts, {})
    assert [g["key"] for g in fr["groups"]] == ["cancel_account", "address_change"]  # the worst first
    ca = fr["groups"][0]
    assert (ca["transfers"], ca["escalations"], ca["long_holds"], ca["negative_endings"]) == (1, 1, 2, 1)
    assert ca["friction_per_call"] == 2.5
    by_agent = {g["key"]: g for g in reports.friction(facts, {}, by="agent")["groups"]}
    assert by_agent["a2"]["friction_per_call"] == 0.0
    d = reports.drivers(facts, by="day")
    assert d["totals"][0] == {"driver": "cancel_account", "calls": 2, "share": 0.667, "trend": -0.5}
    assert [g["key"] for g in d["groups"]] == [reports.day_of(T0), reports.day_of(T0 + DAY)]
    k = reports.kpis(facts, {})
    assert k["overall"]["handle_s_p50"] == 200.0 and k["overall"]["qa_score"] == 70.0 and k["overall"]["fcr_rate"] is None
    assert [g["calls"] for g in k["groups"]] == [1, 2]
    imp = k["playbook_impact"]
    assert imp["groups"]["accepted"]["calls"] == 2 and imp["groups"]["accepted"]["resolved_rate"] == 0.5
    assert imp["groups"]["dismissed"]["escalated_rate"] == 1.0 and imp["groups"]["none_shown"]["calls"] == 0
    assert imp["playbooks"][0]["playbook_id"] == "retention" and imp["playbooks"][0]["accepted"]["calls"] == 2
    with pytest.raises(ValueError, match="by must be"):
        reports.drivers(facts, by="weather")


def test_a_call_fact_comes_from_its_record_summary_scorecard_and_audit() -> None:
    record = {"call": {"call_id": "x", "agent_id": "a1", "started_at": T0, "ended_at": T0 + 120,
                       "metadata": json.dumps({"queue": "billing", "from": "+1 (415) 555-0100"})},
              "signals": [{"kind": "intent", "name": "refund_request", "retracted": 0,
                           "evidence": json.dumps({"channel": "customer", "start": 1.0, "end": 4.0})}],
              "transcripts": [{"channel": "customer", "segment_id": 1, "start_s": 1.0, "end_s": 4.0, "text": "I want a refund for the fee"},
                              {"channel": "customer", "segment_id": 2, "start_s": 9.0, "end_s": 12.0,
                               "text": "also what exchange rate do you use abroad"},
                              {"channel": "customer", "segment_id": 3, "start_s": 14.0, "end_s": 15.0, "text": "okay thanks"},
                              {"channel": "agent", "segment_id": 1, "start_s": 5.0, "end_s": 8.0, "text": "let me look at that for you"}]}  # fmt: skip
    summary = {"reason_for_contact": [{"intent": "refund_request"}], "outcome": {"outcome": "resolved"},
               "agent_actions": [{"what": "transfer"}, {"what": "long_hold"}], "dead_air": 1, "duration_s": 110,
               "sentiment_by_quarter": [{"mean_score": -0.6, "label": "negative"}, {"mean_score": None},
                                        {"mean_score": 0.2, "label": "neutral"}, {"mean_score": 0.5, "label": "positive"}]}  # fmt: skip
    audit = [{"kind": "hint_shown", "playbook_id": "refunds", "payload": {"hint_id": "h1"}},
             {"kind": "feedback", "payload": {"hint_id": "h1", "action": "dismissed"}},
             {"kind": "feedback", "payload": {"hint_id": "h1", "action": "accepted"}}]  # the latest verdict wins
    f = call_fact(record, summary, [{"source": "auto", "score": 82.5, "card_id": "bank", "card_version": 2}], audit)
    assert f["queue"] == "billing" and f["driver"] == "refund_request" and f["handle_s"] == 120.0
    assert f["customer_key"] == customer_key({"customer_id": "+14155550100"})  # one key, however the number is written
    assert "555" not in json.dumps(f)  # the number itself is not kept
    assert (f["transfers"], f["long_holds"], f["dead_air"], f["negative_end"]) == (1, 1, 1, 0)
    assert f["hint_group"] == "accepted" and f["playbooks"] == ["refunds"] and f["qa_score"] == 82.5
    assert f["csat_estimate"] == pytest.approx(3 + 2 * (0.4 * (0.1 / 3 * 1) + 0.6 * 0.5), abs=0.01)
    # the refund turn is covered by its intent; the short one carries no topic
    assert [u["text"] for u in uncovered_utterances(record)] == ["also what exchange rate do you use abroad"]


@pytest.fixture(scope="module")
def banking77_sample() -> tuple[list[str], list[str]]:
    path = require_shared("text", "banking77", "train.jsonl")
    rows = [json.loads(line) for line in path.open()]
    pick = ("exchange_rate", "card_arrival", "pin_blocked", "top_up_failed")
    by: dict[str, list[str]] = {k: [] for k in pick}
    for r in rows:
        if r["intent"] in by and len(by[r["intent"]]) < 25:
            by[r["intent"]].append(r["text"])
    return [t for k in pick for t in by[k]], [k for k in pick for _ in by[k]]


def test_topics_on_real_utterances_are_pure_and_named_by_their_distinctive_words(banking77_sample) -> None:
    from callcue.understand.encoder import SentenceEncoder

    texts, gold = banking77_sample
    emb = SentenceEncoder.load().embed(texts)
    labels = cluster_labels(emb, min_cluster_size=5)
    m = purity_coverage(labels, gold, set(gold))
    assert m["purity"] >= 0.8 and m["discovered_intents"] >= 3, m
    topics = discover([{"id": i, "text": t, "call_id": f"c{i % 7}", "ts": T0 + i} for i, t in enumerate(texts)], emb)
    names = " ".join(t.name for t in topics)
    assert "exchange" in names or "rate" in names, names
    assert "pin" in names, names
    t0 = topics[0]
    assert t0.size == len(t0.utterance_ids) and len(t0.examples) == 5 and 0 < t0.cohesion <= 1
    # the same members give the same id: a lead's link to a topic survives a reload
    again = discover([{"id": i, "text": t, "call_id": f"c{i % 7}", "ts": T0 + i} for i, t in enumerate(texts)], emb)
    assert [t.topic_id for t in again] == [t.topic_id for t in topics]


def test_distinctive_terms_prefer_bigrams_and_skip_filler() -> None:
    terms = distinctive_terms(["exchange rate exchange rate please the rate", "pin blocked my pin is blocked thanks"])
    assert terms[0][0] == "exchange rate" and "please" not in terms[0]
    assert "pin" in " ".join(terms[1]) and "thanks" not in terms[1]
    assert cluster_labels(np.zeros((3, 384)), min_cluster_size=5).tolist() == [-1, -1, -1]


EXCHANGE = ["What exchange rate do you use when I pay in euros abroad?",
            "How much is the currency conversion rate for dollars to pounds today?",
            "Why did I get such a bad exchange rate on my purchase in Japan?",
            "Which exchange rate applies when I spend in a foreign currency?",
            "Can you tell me the rate for changing dollars into euros?",
            "Is the exchange rate on card payments abroad the market rate?",
            "What rate will I get converting my money into yen?"]  # fmt: skip


def chat(i: int, customer_turn: str, *, customer: str, started_at: float, queue: str = "cards") -> dict:
    return {"interaction_id": f"t{i}", "agent_id": "agent-1", "channel": "chat",
            "metadata": {"customer_id": customer, "queue": queue, "started_at": started_at},
            "turns": [{"role": "agent", "text": "Hello, thanks for contacting the bank, how can I help?", "time": 0},
                      {"role": "customer", "text": customer_turn, "time": 4},
                      {"role": "agent", "text": "Let me check that for you.", "time": 9},
                      {"role": "customer", "text": "I also want to dispute a charge on my bill that I do not recognise", "time": 14},
                      {"role": "agent", "text": "I have now processed that, anything else?", "time": 20}]}  # fmt: skip


async def _analytics_loop(tmp_path: Path, url: str | None) -> None:
    settings = make_settings(tmp_path, **({"storage": {"url": url}} if url else {}))
    async with server(settings) as (base, _app):
        http = base.replace("ws://", "http://")
        native = {"Authorization": "Bearer demo-native-token"}
        sup = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
        async with httpx.AsyncClient(base_url=http, timeout=60) as c:
            now = time.time()
            for i, text in enumerate(EXCHANGE):
                # customer 0 calls twice within two days: one repeat contact
                who = "cust-0" if i in (0, 1) else f"cust-{i}"
                r = await c.post("/api/v1/interactions", headers=native,
                                 json=chat(i, text, customer=who, started_at=now - 20 * DAY + i * DAY))
                assert r.status_code == 200, r.text
            assert (await c.get("/api/v1/analytics/kpis", headers={"Authorization": f"Bearer {AGENT_TOKEN}"})).status_code == 403
            assert (await c.get("/api/v1/analytics/kpis")).status_code == 401
            d = (await c.get("/api/v1/analytics/drivers", headers=sup, params={"by": "queue"})).json()
            assert d["calls"] == 7 and d["groups"][0]["key"] == "cards"
            assert d["totals"][0]["driver"] == "billing_dispute", d
            fr = (await c.get("/api/v1/analytics/friction", headers=sup)).json()
            assert sum(g["repeat_contacts"] for g in fr["groups"]) == 1 and fr["repeat_days"] == 7
            k = (await c.get("/api/v1/analytics/kpis", headers=sup, params={"days": 30})).json()
            assert k["overall"]["calls"] == 7 and k["overall"]["fcr_rate"] == pytest.approx(6 / 7, abs=1e-3)
            assert k["overall"]["handle_s_p50"] is not None and k["overall"]["qa_score"] is not None
            assert len(k["groups"]) == 7  # one chat a day
            bad = await c.get("/api/v1/analytics/kpis", headers=sup, params={"since": "yesterday"})
            assert bad.status_code == 400 and "Unix time" in bad.json()["error"]["message"]

            t = (await c.get("/api/v1/analytics/topics", headers=sup, params={"min_cluster_size": 4})).json()
            assert t["utterances"] >= 5, t
            topic = next((x for x in t["topics"] if "rate" in x["name"] or "exchange" in x["name"]), t)
            assert topic is not t and topic["size"] >= 4 and topic["examples"][0]["text"] in EXCHANGE, t
            r = await c.post("/api/v1/analytics/topics/intent", headers=sup,
                             json={"intent": "Exchange Rate", "utterance_ids": topic["utterance_ids"]})
            assert r.status_code == 400 and "snake_case" in r.json()["error"]["message"]
            r = await c.post("/api/v1/analytics/topics/intent", headers=sup,
                             json={"intent": "exchange_rate", "topic_id": topic["topic_id"], "utterance_ids": topic["utterance_ids"]})
            assert r.status_code == 200, r.text
            version = r.json()["dataset"]["version"]
            again = await c.post("/api/v1/analytics/topics/intent", headers=sup,
                                 json={"intent": "exchange_rate", "utterance_ids": topic["utterance_ids"]})
            assert again.status_code == 400 and "already" in again.json()["error"]["message"]
            t2 = (await c.get("/api/v1/analytics/topics", headers=sup, params={"min_cluster_size": 4})).json()
            assert topic["topic_id"] not in {x["topic_id"] for x in t2["topics"]}  # adopted: no longer emerging
            ds = (await c.get(f"/api/v1/intent-datasets/{version}", headers=sup)).json()
            assert {e["intent"] for e in ds["examples"]} == {"exchange_rate"} and len(ds["examples"]) == topic["size"]
            audit = (await c.get("/api/v1/audit", headers=sup, params={"kind": "intent_examples_added"})).json()
            assert audit["entries"][0]["payload"]["sources"] == [f"topic:{topic['topic_id']}"]
            assert (await c.post(f"/api/v1/intent-datasets/{version}/promote", headers=sup, json={})).status_code == 200
            # the promoted dataset trains the live detector: a new chat about it is now recognised
            r = await c.post("/api/v1/interactions", headers=native,
                             json=chat(99, "What exchange rate will you charge me for paying in Swiss francs?",
                                       customer="cust-new", started_at=now))
            rec = (await c.get(f"/api/v1/calls/{r.json()['call_id']}", headers=sup)).json()
            assert "exchange_rate" in {s["name"] for s in rec["signals"] if s["kind"] == "intent"}, rec["signals"]


async def test_analytics_end_to_end_on_sqlite(tmp_path: Path) -> None:
    await _analytics_loop(tmp_path, None)


async def test_analytics_end_to_end_on_postgresql(tmp_path: Path) -> None:
    url = fresh_postgres_url()
    if url is None:
        pytest.skip(f"PostgreSQL tests skipped: {postgres_unavailable_reason()}")
    await _analytics_loop(tmp_path, url)


DRIVER_TURNS = {
    "billing": ("There is a charge on my bill I do not recognise and I want to dispute it",
                "Let me transfer you to our billing team.", "This is ridiculous, I am really unhappy with this."),
    "cancel": ("I want to cancel my account and close everything today",
               "I'm sorry to hear that, let me see what I can offer.", "No, just cancel it, I'm done with you."),
    "address": ("I moved house and need to change the address on my account",
                "I have now updated your address.", "Great, thank you so much, that was easy."),
    "refund": ("I would like a refund for the duplicate payment you took",
               "I've now processed the refund, it will show in three days.", "Perfect, thanks a lot."),
}  # fmt: skip


def _seeded_chats(now: float) -> list[dict]:
    """Four drivers and the uncovered exchange-rate topic over a week, some customers twice."""
    out = []
    kinds = list(DRIVER_TURNS)
    for i in range(16):
        ask, reply, close = DRIVER_TURNS[kinds[i % 4]]
        turns = [{"role": "agent", "text": "Hello, thanks for contacting the bank, how can I help?", "time": 0},
                 {"role": "customer", "text": ask, "time": 4},
                 {"role": "agent", "text": reply, "time": 10 + i},
                 {"role": "customer", "text": EXCHANGE[i % len(EXCHANGE)] if i < 12 else "Okay.", "time": 20 + i},
                 {"role": "agent", "text": "Let me check that for you.", "time": 30 + 2 * i},
                 {"role": "customer", "text": close, "time": 40 + 2 * i}]  # fmt: skip
        out.append({"interaction_id": f"p{i}", "agent_id": f"agent-{1 + i % 2}", "channel": "chat", "turns": turns,
                    "metadata": {"customer_id": f"cust-{i % 11}", "queue": "cards" if i % 3 else "billing",
                                 "started_at": now - (7 - i // 2.3) * DAY}})  # fmt: skip
    return out


def _browser_missing() -> str | None:
    import shutil

    if shutil.which("node") is None:
        return "node is not installed"
    if not Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium is missing"
    if not (Path(__file__).resolve().parents[1] / "client_js" / "node_modules" / "playwright-core").is_dir():
        return "client_js/node_modules is missing (cd client_js && npm install)"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_browser_missing() is not None, reason=f"browser test skipped: {_browser_missing()}")
async def test_the_analytics_page_in_chromium_draws_every_chart_and_makes_a_topic_an_intent(tmp_path: Path) -> None:
    import asyncio
    import os

    shots = Path(os.environ.get("CALLCUE_BROWSER_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    client = Path(__file__).resolve().parents[1] / "client_js"
    async with server(make_settings(tmp_path)) as (base, _app):
        http = base.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=http, timeout=60) as c:
            for body in _seeded_chats(time.time()):
                r = await c.post("/api/v1/interactions", headers={"Authorization": "Bearer demo-native-token"}, json=body)
                assert r.status_code == 200, r.text
            env = {**os.environ, "CALLCUE_URL": http, "CALLCUE_SUPERVISOR_TOKEN": SUPERVISOR_TOKEN, "CALLCUE_SHOTS": str(shots)}
            proc = await asyncio.create_subprocess_exec("node", str(client / "tests" / "analytics.mjs"), cwd=client, env=env,
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            result = json.loads(out.decode().strip().splitlines()[-1])
            assert result.get("ok"), f"{result.get('failure')}\n{err.decode()[-3000:]}"
            sup = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
            datasets = (await c.get("/api/v1/intent-datasets", headers=sup)).json()
    assert not result["errors"], result["errors"]
    assert "token=" not in result["url_after_load"]
    assert result["status"].startswith("16 calls"), result["status"]
    assert result["tiles"]["calls"] == "16" and result["tiles"]["QA score"] != "–", result["tiles"]
    assert result["tiles"]["first-contact resolution"].endswith("%"), result["tiles"]
    for chart, points in result["charts"].items():
        assert points > 0, (chart, result["charts"])
    assert {"billing_dispute", "cancel_account", "address_change", "refund_request"} <= set(result["drivers"]), result["drivers"]
    assert result["friction_rows"] >= 4
    assert result["topics"] and any("rate" in t["name"] or "exchange" in t["name"] for t in result["topics"]), result["topics"]
    assert result["adopted"].startswith("dataset v"), result["adopted"]
    assert datasets["datasets"][-1]["n_examples"] >= 4, datasets
    for name, box in result["layout"].items():
        assert box["scroll_width"] <= box["width"] + 1, (name, box)
        assert (shots / f"{name}.png").stat().st_size > 10_000, f"{name}.png missing or blank"


def test_the_topic_evaluation_holds_intents_out_of_training_and_scores_on_them() -> None:
    from callcue.evaluation.topics_eval import split

    rows = [{"text": f"{lab} example {i}", "intent": lab} for lab in "abcdefgh" for i in range(50)]
    s = split(rows, held=3, seed=1)
    tr_x, tr_y = s["train"]
    te_x, te_y = s["test"]
    assert len(s["held_out"]) == 3 and not s["held_out"] & set(tr_y)
    assert set(te_y) == set("abcdefgh") and len(tr_y) == 5 * 10
    assert not set(tr_x) & set(te_x)  # no utterance is both trained on and scored
    first = sorted(s["held_out"])[0]
    labels = np.array([0 if y == first else -1 for y in te_y])  # one pure cluster of one held-out intent
    m = purity_coverage(labels, te_y, s["held_out"])
    assert m["clusters"] == 1 and m["purity"] == 1.0 and m["coverage"] == pytest.approx(1 / 3, abs=1e-3)
