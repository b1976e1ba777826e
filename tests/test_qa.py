"""QA scorecards: the card format, the scoring rules (N/A, auto-fail scopes, bands, choices),
and a real call scored when it ends, through the real server, with its evidence."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml

from callcue.clients.audio_file import read_call_audio
from callcue.clients.twilio_stream import TwilioMessages, connect_twilio, stream_call
from callcue.config import REPO_CONFIG_DIR
from callcue.qa.card import CardError, Scorecard, load_card, load_cards
from callcue.qa.rules import CallFacts, Segment, Sig
from callcue.qa.scoring import score_call
from tests.pg import fresh_postgres_url, postgres_unavailable_reason
from tests.serverkit import AGENT_TOKEN, SUPERVISOR_TOKEN, make_settings, server

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "server" / "callcue" / "data" / "demo_call.wav"

CARD = {
    "id": "t", "version": 1, "title": "test", "scoring": "section",
    "sections": [
        {"id": "a", "title": "A", "weight": 3, "questions": [
            {"id": "greet", "text": "greeted?", "answer": {"said": {"by": "agent", "within_s": 10, "patterns": ["\\bhello\\b"]}}},
            {"id": "verify_first", "text": "verified first?", "weight": 2,
             "answer": {"before": {"first": {"said": {"by": "agent", "patterns": ["verify"]}},
                                   "then": {"said": {"by": "agent", "patterns": ["balance is"]}}}}},
        ]},
        {"id": "b", "title": "B", "weight": 1, "questions": [
            {"id": "notice", "text": "notice read?", "answer": {"disclosure": "recording_notice"},
             "auto_fail": {"answers": ["no"], "scope": "section"}},
            {"id": "empathy", "text": "empathy?", "applies_when": {"signal": {"kind": "sentiment", "name": "negative", "by": "customer"}},
             "answer": {"said": {"by": "agent", "patterns": ["sorry"]}}},
        ]},
        {"id": "c", "title": "C", "weight": 1, "questions": [
            {"id": "dead_air", "text": "dead air", "type": "numeric", "answer": {"count": {"signal": {"name": "dead_air"}}},
             "bands": [{"max": 0, "score": 1}, {"max": 2, "score": 0.5}, {"score": 0}]},
            {"id": "outcome", "text": "outcome", "type": "choice", "choices": {"resolved": 1, "none": 0},
             "answer": {"choose": {"cases": [{"when": {"said": {"by": "agent", "patterns": ["refund"]}}, "answer": "resolved"}],
                                   "otherwise": "none"}}},
            {"id": "promise", "text": "no promises", "answer": {"absent": {"signal": {"name": "prohibited_promise"}}},
             "auto_fail": {"answers": ["no"], "scope": "card"}},
        ]},
    ],
}  # fmt: skip


def seg(ch: str, t: float, text: str) -> Segment:
    return Segment(ch, t, t + 2, text, int(t))


def sig(name: str, t: float, ch: str = "customer", kind: str = "risk", **attrs: object) -> Sig:
    return Sig(kind, name, ch, t, t + 1, "", dict(attrs), f"s{t}")


def answers(result: dict) -> dict[str, dict]:
    return {a["question_id"]: a for a in result["answers"]}


async def play_then_poll(base: str, c: httpx.AsyncClient, audio: object, call_sid: str, path: str,
                         ready: object) -> dict:  # fmt: skip
    """Stream `audio` as one Twilio call, then poll `path` until `ready(json)`: the post-call
    work runs after the call ends, so its results come a moment later."""
    async with connect_twilio(f"{base}/ws/twilio") as tw:
        await stream_call(tw, audio, TwilioMessages(agent_id="agent-1", call_sid=call_sid), speed=3.0)
    got: dict = {}
    for _ in range(200):
        got = (await c.get(path)).json()
        if ready(got):  # type: ignore[operator]
            return got
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} never became ready: {got}")


def supervisor_http(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base.replace("ws://", "http://"), headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"})


def test_na_is_left_out_and_a_section_auto_fail_zeroes_only_its_section() -> None:
    card = Scorecard.model_validate(CARD)
    facts = CallFacts("c1", [seg("agent", 1, "hello, this is Ana"), seg("agent", 30, "I will refund it")],
                      [sig("disclosure_missing", 30, "agent", "compliance", disclosure_id="recording_notice", deadline_s=30),
                       sig("dead_air", 40, "agent", "acoustic")], 60.0)  # fmt: skip
    r = score_call(card, facts)
    a = answers(r)
    assert a["greet"]["answer"] == "yes" and a["greet"]["evidence"][0]["start"] == 1
    # no account details were given: verification-first does not apply, and weighs nothing
    assert a["verify_first"]["answer"] == "na" and a["verify_first"]["score"] is None
    assert a["empathy"]["answer"] == "na" and a["empathy"]["justification"].startswith("not applicable")
    assert a["notice"]["answer"] == "no" and a["notice"]["auto_fail"] and "deadline" in a["notice"]["justification"]
    assert a["dead_air"]["answer"] == "1" and a["dead_air"]["score"] == 0.5
    assert a["outcome"]["answer"] == "resolved" and a["outcome"]["score"] == 1.0
    secs = {s["id"]: s for s in r["sections"]}
    assert secs["a"]["score"] == 100.0  # greet only: verify_first was N/A
    assert secs["b"]["score"] == 0.0 and secs["b"]["auto_failed"]  # notice failed its section
    assert secs["c"]["score"] == pytest.approx(100 * (0.5 + 1 + 1) / 3, abs=0.1)
    assert r["score"] == pytest.approx((3 * 100 + 1 * 0 + 1 * secs["c"]["score"]) / 5, abs=0.1)
    assert r["auto_failed"] is None


def test_a_card_auto_fail_zeroes_the_card_and_order_decides_verification() -> None:
    card = Scorecard.model_validate(CARD)
    facts = CallFacts("c2", [seg("agent", 1, "hello"), seg("agent", 10, "your balance is 20 dollars"),
                             seg("agent", 20, "let me verify your date of birth"), seg("agent", 25, "I guarantee it"),
                             seg("agent", 28, "I am sorry about that")],
                      [sig("negative", 5, kind="sentiment"), sig("prohibited_promise", 25, "agent", "compliance"),
                       sig("disclosure_given", 3, "agent", "compliance", disclosure_id="recording_notice")], 30.0)  # fmt: skip
    r = score_call(card, facts)
    a = answers(r)
    assert a["verify_first"]["answer"] == "no" and "only after" in a["verify_first"]["justification"]
    assert a["empathy"]["answer"] == "yes" and a["notice"]["answer"] == "yes"
    assert a["promise"]["answer"] == "no" and r["auto_failed"] == {"scope": "card", "questions": ["promise"]}
    assert r["score"] == 0.0
    assert a["dead_air"]["answer"] == "0" and a["dead_air"]["score"] == 1.0


def test_question_scoring_weighs_questions_not_sections() -> None:
    card = Scorecard.model_validate({**CARD, "scoring": "question"})
    facts = CallFacts("c3", [seg("agent", 1, "hello")], [sig("disclosure_given", 3, "agent", "compliance",
                                                            disclosure_id="recording_notice")], 10.0)  # fmt: skip
    r = score_call(card, facts)
    # greet 1 (w1), notice 1 (w1), dead_air 1 (w1), outcome none 0 (w1), promise 1 (w1); N/A: verify, empathy
    assert r["score"] == 80.0


def test_cards_are_validated_with_the_file_and_the_reason(tmp_path: Path) -> None:
    def write(card: dict) -> Path:
        p = tmp_path / "c.yaml"
        p.write_text(yaml.safe_dump(card))
        return p

    bad_rule = {**CARD, "sections": [{**CARD["sections"][0], "questions": [
        {"id": "x", "text": "x", "answer": {"hears": {}}}]}]}  # fmt: skip
    with pytest.raises(CardError, match="c.yaml: question x answer: unknown rule 'hears'"):
        load_card(write(bad_rule))
    bad_re = {**CARD, "sections": [{**CARD["sections"][0], "questions": [
        {"id": "x", "text": "x", "answer": {"said": {"patterns": ["(unclosed"]}}}]}]}  # fmt: skip
    with pytest.raises(CardError, match="bad pattern"):
        load_card(write(bad_re))
    dup = {**CARD, "sections": [CARD["sections"][0], {**CARD["sections"][1], "questions": [CARD["sections"][0]["questions"][0]]}]}
    with pytest.raises(CardError, match="appears twice"):
        load_card(write(dup))
    no_choices = {**CARD, "sections": [{**CARD["sections"][0], "questions": [
        {"id": "x", "text": "x", "type": "choice", "answer": {"choose": {"cases": [], "otherwise": "a"}}}]}]}  # fmt: skip
    with pytest.raises(CardError, match="needs choices"):
        load_card(write(no_choices))


def test_the_shipped_starter_card_loads() -> None:
    cards = load_cards(REPO_CONFIG_DIR / "scorecards")
    assert [(c.id, c.version) for c in cards] == [("bank_telco", 1)]
    assert {q.id for _s, q in cards[0].questions()} >= {"greeting", "recording_notice", "verified_before_details",
                                                         "no_prohibited_promise", "empathy_on_complaint", "closing"}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_live_call_is_scored_when_it_ends_and_a_review_is_audited_and_measured(tmp_path: Path, backend: str) -> None:
    sections = {}
    if backend == "postgresql":
        url = fresh_postgres_url()
        if url is None:
            pytest.skip(f"PostgreSQL tests skipped: {postgres_unavailable_reason()}")
        sections = {"storage": {"url": url}}
    settings = make_settings(tmp_path, **sections)
    audio = read_call_audio(DEMO)
    async with server(settings) as (base, _app):
        async with supervisor_http(base) as c:
            rec = await play_then_poll(base, c, audio, "CAqa1", "/api/v1/calls/CAqa1",
                                       lambda r: r.get("qa") and r.get("summary") and r["call"]["ended_at"])  # fmt: skip
            # a QA lead changes two answers with a reason: audited, re-scored, a new evaluation
            review = (await c.post("/api/v1/calls/CAqa1/scorecard/review", json={
                "answers": {"recording_notice": "yes", "closing": "yes"}, "reason": "notice read before the fork started"})).json()
            bad = await c.post("/api/v1/calls/CAqa1/scorecard/review", json={"answers": {"closing": "maybe"}, "reason": "x"})
            card = (await c.get("/api/v1/calls/CAqa1/scorecard")).json()
            agree = (await c.get("/api/v1/qa/agreement", params={"card_id": "bank_telco"})).json()
            audit = (await c.get("/api/v1/audit", params={"call_id": "CAqa1", "kind": "qa_reviewed"})).json()["entries"]
            as_agent = await c.get("/api/v1/calls/CAqa1/scorecard", headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
    (ev,) = rec["qa"]
    print(f"\nscore {ev['score']}: " + "; ".join(f"{q['question_id']}={q['answer']}" for q in ev["answers"]))
    assert ev["card_id"] == "bank_telco" and ev["card_version"] == 1 and ev["source"] == "auto"
    a = answers(ev)
    # the demo's agent opens with "Thank you for calling Northwind Bank ...": greeting and name
    assert a["greeting"]["answer"] == "yes" and a["greeting"]["evidence"][0]["channel"] == "agent"
    assert a["identification"]["answer"] == "yes"
    # nobody reads the recording notice in the demo: judged missing, its section zeroed
    assert a["recording_notice"]["answer"] == "no" and a["recording_notice"]["auto_fail"]
    secs = {s["id"]: s for s in ev["sections"]}
    assert secs["compliance"]["score"] == 0.0
    # the customer is frustrated and the agent says sorry / understands
    assert a["empathy_on_complaint"]["answer"] == "yes", a["empathy_on_complaint"]
    assert a["resolution_offered"]["answer"] == "transferred", a["resolution_offered"]
    # it ends on "please hold while I transfer you": no closing, and the opening does not count
    assert a["closing"]["answer"] == "no", a["closing"]
    for q in a.values():
        assert q["justification"], q
        for e in q["evidence"]:
            assert e["type"] in ("transcript", "signal") and e["start"] >= 0
    assert ev["score"] is not None and 0 < ev["score"] < 100

    # the post-call summary: why they called, what was done, how it ended, how the talking went
    summ = rec["summary"]
    assert summ["reason_for_contact"] and summ["reason_for_contact"][0]["evidence"][0]["channel"] == "customer", summ
    assert any("cancel" in r["intent"] for r in summ["reason_for_contact"]), summ["reason_for_contact"]
    assert summ["outcome"]["outcome"] == "escalated" and summ["outcome"]["evidence"][0]["channel"] == "agent", summ["outcome"]
    assert any(d["what"] == "transfer" for d in summ["agent_actions"]), summ["agent_actions"]
    assert [q["quarter"] for q in summ["sentiment_by_quarter"]] == [1, 2, 3, 4]
    assert set(summ["talk"]) == {"customer", "agent"} and all(t["talk_s"] > 3 and 60 < t["words_per_minute"] < 300
                                                               for t in summ["talk"].values()), summ["talk"]
    assert 0 <= summ["non_talk_s"] < summ["duration_s"]

    # the review
    rev = review["evaluation"]
    ra = answers(rev)
    assert ra["recording_notice"]["answer"] == "yes" and ra["recording_notice"]["auto_answer"] == "no"
    assert ra["closing"]["reviewed_by"] == "supervisor-1" and "fork started" in ra["closing"]["justification"]
    assert {s["id"]: s for s in rev["sections"]}["compliance"]["auto_failed"] is False
    assert rev["score"] > ev["score"] and rev["review"]["auto_score"] == ev["score"]
    assert bad.status_code == 400 and "answer yes, no or na" in bad.json()["error"]["message"]
    assert [e["source"] for e in card["evaluations"]] == ["auto", "human:supervisor-1"]
    (entry,) = audit
    assert entry["actor"] == "supervisor-1" and entry["payload"]["changes"]["closing"] == {"from": "no", "to": "yes"}
    assert entry["payload"]["reason"] == "notice read before the fork started"
    assert as_agent.status_code == 403  # scorecards are a supervisor's
    # agreement: one reviewed call; the two changed questions disagree, the rest agree
    assert agree["reviewed_calls"] == 1
    per_q = {q["question_id"]: q for q in agree["questions"]}
    assert per_q["closing"]["accuracy"] == 0.0 and per_q["recording_notice"]["disagreements"] == 1
    assert per_q["greeting"]["accuracy"] == 1.0 and per_q["greeting"]["kappa"] is None  # one label: kappa undefined


def test_agreement_per_question_has_accuracy_and_cohens_kappa() -> None:
    from callcue.qa.review import agreement, apply_review

    card = Scorecard.model_validate(CARD)
    calls = [CallFacts(f"c{i}", [seg("agent", 1, "hello")] if i % 2 else [seg("agent", 1, "hi")], [], 20.0) for i in range(6)]
    autos = [score_call(card, f) for f in calls]  # greet: no, yes, no, yes, no, yes
    # the reviewer agrees on four calls and says "yes" where the rule said "no" on two
    humans = [apply_review(card, a, {"greet": "yes"} if i in (0, 2) else {}, "lead", "said hi") for i, a in enumerate(autos)]
    rows = {r["question_id"]: r for r in agreement(card, list(zip(autos, humans, strict=True)))}
    g = rows["greet"]
    assert g["n"] == 6 and g["disagreements"] == 2 and g["accuracy"] == pytest.approx(4 / 6, abs=1e-3)
    # auto: N Y N Y N Y, human: Y Y Y Y N Y -> kappa = (p_o - p_e) / (1 - p_e) with p_o 4/6, p_e 1/2
    assert g["kappa"] == pytest.approx((4 / 6 - 0.5) / 0.5, abs=1e-3)
    assert rows["outcome"]["accuracy"] == 1.0 and rows["outcome"]["kappa"] is None
    with pytest.raises(ValueError, match="no question 'nope'"):
        apply_review(card, autos[0], {"nope": "yes"}, "lead", "x")


@pytest.mark.slow
async def test_a_draft_card_version_is_compared_on_stored_calls_and_scores_no_live_call(tmp_path: Path) -> None:
    cards = tmp_path / "scorecards"
    cards.mkdir()
    v1 = yaml.safe_load((REPO_CONFIG_DIR / "scorecards" / "bank_telco.yaml").read_text())
    (cards / "bank_telco.yaml").write_text(yaml.safe_dump(v1))
    v2 = {**v1, "version": 2, "draft": True}
    # v2 drops the recording notice's auto-fail and adds "no abuse" to the compliance section
    for sec in v2["sections"]:
        for q in sec["questions"]:
            if q["id"] == "recording_notice":
                q.pop("auto_fail")
        if sec["id"] == "compliance":
            sec["questions"].append({"id": "no_abuse", "text": "No abusive language from the agent?",
                                     "answer": {"absent": {"signal": {"name": "abuse", "by": "agent"}}}})
    (cards / "bank_telco_v2.yaml").write_text(yaml.safe_dump(v2))
    settings = make_settings(tmp_path, qa={"scorecards_dir": str(cards)})
    audio = read_call_audio(DEMO)
    async with server(settings) as (base, _app):
        async with supervisor_http(base) as c:
            card = await play_then_poll(base, c, audio, "CAqa2", "/api/v1/calls/CAqa2/scorecard", lambda r: r.get("evaluations"))
            cmp = (await c.get("/api/v1/qa/compare", params={"card_id": "bank_telco", "version_a": 1, "version_b": 2})).json()
    assert [(e["card_version"], e["source"]) for e in card["evaluations"]] == [(1, "auto")]  # the draft scored nothing live
    assert cmp["version_a"] == 1 and cmp["version_b"] == 2 and [r["call_id"] for r in cmp["calls"]] == ["CAqa2"]
    row = cmp["calls"][0]
    assert row["score_a"] == card["evaluations"][0]["score"]
    assert row["score_b"] > row["score_a"]  # compliance: notice "no" (0) and no abuse "yes" (1) = 50, not 0
    assert cmp["only_in_b"] == ["no_abuse"]
    assert cmp["answers_changed"]["recording_notice"] == 0  # the answer stays "no"; only its auto-fail went
    assert cmp["answers_changed"]["greeting"] == 0


def test_two_live_versions_of_one_card_are_refused(tmp_path: Path) -> None:
    v1 = yaml.safe_load((REPO_CONFIG_DIR / "scorecards" / "bank_telco.yaml").read_text())
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(v1))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**v1, "version": 2}))
    with pytest.raises(CardError, match="two versions of bank_telco are live"):
        load_cards(tmp_path)


async def test_a_call_that_ends_before_the_disclosure_deadline_is_judged_missing(tmp_path: Path) -> None:
    """12 s of the demo: the recording notice's 30 s deadline never arrives during the call."""
    audio = read_call_audio(DEMO)
    audio.channels = {ch: pcm[: 8000 * 12] for ch, pcm in audio.channels.items()}
    settings = make_settings(tmp_path)
    async with server(settings) as (base, _app), supervisor_http(base) as c:
        rec = await play_then_poll(base, c, audio, "CAshort", "/api/v1/calls/CAshort", lambda r: r.get("qa"))
    missing = [s for s in rec["signals"] if s["name"] == "disclosure_missing"]
    assert len(missing) == 1 and '"judged_at_end": true' in missing[0]["attrs"], missing
    a = answers(rec["qa"][0])
    assert a["recording_notice"]["answer"] == "no"
    assert "the call ended at" in a["recording_notice"]["justification"], a["recording_notice"]


def test_summary_talk_time_quarters_and_owed_amounts() -> None:
    from callcue.qa.summary import summarize

    facts = CallFacts("s1", [seg("agent", 0, "thank you for calling how can I help"), seg("customer", 1, "I want a refund please"),
                             seg("agent", 10, "I've processed the refund of 20 dollars"), seg("customer", 30, "great thanks")],
                      [Sig("intent", "refund_request", "customer", 1, 3, "I want a refund please", {}, "i1", 0.91),
                       Sig("sentiment", "negative", "customer", 1, 3, "", {"score": -0.6}, "n1"),
                       Sig("sentiment", "positive", "customer", 30, 32, "", {"score": 0.7}, "p1"),
                       Sig("entity", "money", "agent", 10, 12, "", {"normalized": "20.00 USD"}, "m1"),
                       Sig("acoustic", "talk_over", "customer", 2, 2.5, "", {}, "t1")], 32.0)  # fmt: skip
    s = summarize(facts, [{"kind": "feedback", "seq": 7, "payload": {"hint_id": "h1", "action": "accepted"}}])
    assert s["reason_for_contact"][0] == {"intent": "refund_request", "confidence": 0.91, "mentions": 1, "first_at": 1,
                                          "evidence": s["reason_for_contact"][0]["evidence"]}  # fmt: skip
    assert s["outcome"]["outcome"] == "resolved" and s["outcome"]["evidence"][0]["start"] == 10
    assert s["follow_ups"][0]["value"] == "20.00 USD" and s["follow_ups"][0]["said_by"] == "agent"
    assert [q["label"] for q in s["sentiment_by_quarter"]] == ["negative", None, None, "positive"]
    # agent talks 0-2 and 10-12 (4 s), the customer 1-3 and 30-32 (4 s); speech covers 0-3, 10-12, 30-32 = 7 s
    assert s["talk"]["agent"]["talk_s"] == 4.0 and s["talk"]["customer"]["talk_s"] == 4.0
    assert s["non_talk_s"] == 25.0 and s["talk"]["customer"]["interruptions"] == 1
    assert any(d["what"] == "hint_accepted" for d in s["agent_actions"])


async def test_a_chat_thread_gets_the_same_understanding_scorecard_and_summary(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    turns = [
        {"role": "agent", "text": "Hello, thank you for contacting Northwind Bank, my name is Ana.", "time": 0},
        {"role": "customer", "text": "I want to cancel my account, the fees are ridiculous and I am really frustrated.", "time": 8},
        {"role": "agent", "text": "I'm so sorry to hear that. Let me verify your date of birth first.", "time": 20},
        {"role": "customer", "text": "It is the 4th of May 1980.", "time": 35},
        {"role": "agent", "text": "Thank you. Your current balance is 120 dollars. I guarantee you will get a full refund.", "time": 50},
        {"role": "agent", "text": "Is there anything else I can help you with today?", "time": 70},
    ]
    async with server(settings) as (base, _app):
        async with httpx.AsyncClient(base_url=base.replace("ws://", "http://"), timeout=60) as c:
            ok = await c.post("/api/v1/interactions", json={"interaction_id": "T1", "channel": "chat", "agent_id": "agent-1",
                                                            "turns": turns}, headers={"Authorization": "Bearer demo-native-token"})
            unauth = await c.post("/api/v1/interactions", json={"interaction_id": "T2", "turns": turns})
            bad = await c.post("/api/v1/interactions", json={"interaction_id": "T3", "turns": [{"role": "bot", "text": "x"}]},
                               headers={"Authorization": "Bearer demo-native-token"})  # fmt: skip
            rec = (await c.get("/api/v1/calls/chat-T1", headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"})).json()
    assert unauth.status_code == 401 and bad.status_code == 400 and "role must be customer or agent" in bad.json()["error"]
    out = ok.json()
    assert ok.status_code == 200 and out["call_id"] == "chat-T1" and out["finals"] == 6, out
    a = answers(out["scorecard"])
    assert a["greeting"]["answer"] == "yes" and a["identification"]["answer"] == "yes"
    assert a["verified_before_details"]["answer"] == "yes", a["verified_before_details"]  # DOB at 20 s, balance at 50 s
    assert a["empathy_on_complaint"]["answer"] == "yes" and a["closing"]["answer"] == "yes"
    # the same detectors ran on text: the prohibited promise was caught and fails the card
    assert a["no_prohibited_promise"]["answer"] == "no" and out["scorecard"]["score"] == 0.0
    assert any("cancel" in r["intent"] for r in out["summary"]["reason_for_contact"]), out["summary"]
    assert rec["call"]["platform"] == "chat" and rec["call"]["end_reason"] == "end_of_thread"


def test_before_orders_two_sentences_of_one_final_by_their_place_in_it() -> None:
    """A recognizer's final often holds two of the agent's sentences."""
    card = Scorecard.model_validate(CARD)
    late = CallFacts("c5", [Segment("agent", 10, 20, "your balance is 20 dollars. let me verify your date of birth", 1)], [], 30.0)
    early = CallFacts("c6", [Segment("agent", 10, 20, "let me verify your date of birth, then your balance is 20 dollars", 1)], [], 30.0)
    assert answers(score_call(card, late))["verify_first"]["answer"] == "no"
    assert answers(score_call(card, early))["verify_first"]["answer"] == "yes"
