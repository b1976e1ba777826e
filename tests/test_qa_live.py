"""Live QA signals: a scorecard's ordering question going wrong raises qa_at_risk during the
call, once, and a playbook turns it into a hint; the same chat verified first raises nothing."""

from __future__ import annotations

from pathlib import Path

import httpx

from callcue.config import REPO_CONFIG_DIR
from callcue.events import Transcript
from callcue.qa.card import Scorecard
from callcue.understand.base import CallContext
from callcue.understand.qa_live import QaLiveDetector, watches_from_cards
from tests.serverkit import SUPERVISOR_TOKEN, make_settings, server


def final(ch: str, seg: int, text: str, at: float) -> Transcript:
    return Transcript("c1", ch, seg, 0, text, True, at, at + 2)


def test_only_ordering_questions_of_live_cards_are_watched() -> None:
    card = {"id": "k", "version": 3, "title": "k", "sections": [{"id": "s", "title": "s", "questions": [
        {"id": "order", "text": "verified first?", "live_hint": "Verify now.",
         "answer": {"before": {"first": {"any": [{"said": {"by": "agent", "patterns": ["verify"]}},
                                                 {"said": {"by": "agent", "patterns": ["security question"]}}]},
                               "then": {"said": {"by": "agent", "patterns": ["balance is"]}}}}},
        {"id": "sig", "text": "signal based", "answer": {"before": {"first": {"signal": {"name": "x"}},
                                                                     "then": {"said": {"patterns": ["y"]}}}}},
        {"id": "plain", "text": "greeted", "answer": {"said": {"by": "agent", "patterns": ["hello"]}}}]}]}  # fmt: skip
    ws = watches_from_cards([Scorecard.model_validate(card), Scorecard.model_validate({**card, "id": "d", "draft": True})])
    assert [(w.card_id, w.question_id, w.hint) for w in ws] == [("k", "order", "Verify now.")]
    det = QaLiveDetector(ws)
    ctx = CallContext("c1")
    assert det.detect(final("customer", 1, "what is my balance is it low", 1), ctx) == []  # the customer's words never count
    sigs = det.detect(final("agent", 1, "ok, your balance is 20 dollars", 3), ctx)
    assert [(s.kind, s.name, s.attrs["question_id"], s.evidence.text) for s in sigs] == [("qa", "qa_at_risk", "order", "balance is")]
    assert det.detect(final("agent", 2, "and your savings balance is 5", 6), ctx) == []  # once per question per call
    ok = CallContext("c2")
    assert det.detect(final("agent", 1, "let me ask your security question first", 1), ok) == []
    assert det.detect(final("agent", 2, "thanks, your balance is 20 dollars", 3), ok) == []
    # both in one final: the order of the words decides, live as after the call
    both = CallContext("c3")
    assert det.detect(final("agent", 1, "your balance is 20, and let me verify you", 1), both)[0].name == "qa_at_risk"
    assert det.detect(final("agent", 1, "let me verify you, then your balance is 20", 1), CallContext("c4")) == []
    # the shipped card's verification question is watched
    shipped = QaLiveDetector.from_dir(REPO_CONFIG_DIR / "scorecards")
    assert shipped is not None and "verified_before_details" in {w.question_id for w in shipped.watches}


def _chat(iid: str, verify_first: bool) -> dict:
    verify = {"role": "agent", "text": "Before we go on, could I have your date of birth so I can verify your identity?"}
    answer = {"role": "customer", "text": "Sure, it is the 4th of May 1980."}
    balance = {"role": "agent", "text": "Your current balance is 2,794 dollars."}
    turns = [{"role": "customer", "text": "Hi, I would like to know how much money is in my checking account."},
             *([verify, answer, balance] if verify_first else [balance, verify, answer]),
             {"role": "customer", "text": "Thanks, bye."}]  # fmt: skip
    return {"interaction_id": iid, "agent_id": "agent-1", "turns": [{**t, "time": 4.0 * i} for i, t in enumerate(turns)]}


async def test_a_chat_giving_details_before_verifying_gets_the_live_hint(tmp_path: Path) -> None:
    async with server(make_settings(tmp_path)) as (base, _app):
        http = base.replace("ws://", "http://")
        sup = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
        async with httpx.AsyncClient(base_url=http, timeout=60) as c:
            records = {}
            for iid, first in (("late", False), ("first", True)):
                r = await c.post("/api/v1/interactions", headers={"Authorization": "Bearer demo-native-token"}, json=_chat(iid, first))
                assert r.status_code == 200, r.text
                records[iid] = (await c.get(f"/api/v1/calls/{r.json()['call_id']}", headers=sup)).json()
    late = [s for s in records["late"]["signals"] if s["name"] == "qa_at_risk"]
    assert len(late) == 1 and '"verified_before_details"' in late[0]["attrs"], late
    hints = [h for h in records["late"]["hints"] if h["title"] == "Scorecard step skipped"]
    assert hints and "Verify the customer's identity now" in hints[0]["body"], records["late"]["hints"]
    assert not [s for s in records["first"]["signals"] if s["name"] == "qa_at_risk"]
    # the post-call answer agrees with what was flagged live
    answers = {a["question_id"]: a["answer"] for a in records["late"]["qa"][0]["answers"]}
    assert answers["verified_before_details"] == "no"


async def test_a_chat_over_the_native_protocol_is_understood_scored_and_summarised(tmp_path: Path) -> None:
    import asyncio
    import json

    from callcue.clients.twilio_stream import connect_native

    async with server(make_settings(tmp_path)) as (base, app):
        async with connect_native(f"{base}/ws/native") as ws:
            await ws.send(json.dumps({"type": "start", "call_id": "native-chat-1", "agent_id": "agent-1", "channels": [],
                                      "metadata": {"queue": "cards", "customer_id": "c-9"}}))  # fmt: skip
            for turn in _chat("x", verify_first=False)["turns"]:
                await ws.send(json.dumps({"type": "text", "channel": turn["role"], "text": turn["text"], "time": turn["time"]}))
            await ws.send(json.dumps({"type": "stop", "reason": "end_of_chat"}))
            await ws.wait_closed()
        rt = app.state.runtime.get()
        for _ in range(100):  # the post-call work runs once the call has ended
            if rt.qa is not None:
                await rt.qa.done("native-chat-1")
            rec = await rt.store.call_record("native-chat-1")
            if rec["qa"] and rec["summary"]:
                break
            await asyncio.sleep(0.1)
    assert rec["call"]["end_reason"] == "end_of_chat" and json.loads(rec["call"]["channels"]) == []
    assert [t["segment_id"] for t in rec["transcripts"] if t["channel"] == "customer"] == [1, 2, 3]
    assert {"qa_at_risk"} <= {s["name"] for s in rec["signals"]}
    answers = {a["question_id"]: a["answer"] for a in rec["qa"][0]["answers"]}
    assert answers["verified_before_details"] == "no"
    assert rec["summary"]["talk"]["customer"]["words"] > 10
