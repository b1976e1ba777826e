"""Required disclosures by meaning with a call-clock deadline, and prohibited promises.

Paraphrases here are NOT in config/risks.yaml (they test meaning, not copy); negatives are
agent turns from real customer-service dialogues (ABCD, SGD) plus near-misses we wrote.
"""

from __future__ import annotations

import json

import pytest
from conftest import require_shared

from callcue.events import Transcript, Word
from callcue.understand.base import CallContext
from callcue.understand.compliance import ComplianceDetector
from callcue.understand.risks import RiskConfigError, load_risk_config


def tr(text: str, channel: str = "agent", seg: int = 1, start: float = 0.0, final: bool = True, rev: int = 0) -> Transcript:
    words, t = [], start
    for w in text.split():
        words.append(Word(w, t, t + 0.3))
        t += 0.35
    return Transcript("call1", channel, seg, rev, text, final, start, t, words=words)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def det() -> ComplianceDetector:
    return ComplianceDetector(load_risk_config())


def names(sigs) -> list[str]:
    return [s.name for s in sigs if not s.retracted]


def given(det: ComplianceDetector, ctx: CallContext, *texts: str, channel: str = "agent", start: float = 2.0) -> list:
    out = []
    for i, text in enumerate(texts):
        out += [s for s in det.detect(tr(text, channel=channel, seg=i, start=start + 4 * i), ctx) if s.name == "disclosure_given"]
    return out


RECORDING_PARAPHRASES = [
    "just so you know this conversation is being recorded for training and quality",
    "we record our calls to make sure we give you good service",
    "hi thanks for calling, please note that this call is recorded, how can I help",
    "before we start I have to let you know the call is being monitored and taped",
]
NOT_A_DISCLOSURE = [
    "I have recorded your new address",
    "your card will be recorded as lost",
    "the training session is on monday",
    "please hold while I check the quality of your connection",
    "thank you for calling how can I help you today",
]


@pytest.mark.parametrize("text", RECORDING_PARAPHRASES)
def test_recording_notice_by_meaning(det, text):
    s = given(det, CallContext("c"), text)
    assert [x.attrs["disclosure_id"] for x in s] == ["recording_notice"], text
    assert s[0].evidence.channel == "agent" and s[0].evidence.words and s[0].attrs["late"] is False
    assert s[0].detector == "compliance" and s[0].detector_version


@pytest.mark.parametrize("text", NOT_A_DISCLOSURE)
def test_near_misses_are_not_disclosures(det, text):
    assert given(det, CallContext("c"), text) == []


def test_disclosure_spanning_two_segments(det):
    ctx = CallContext("c")
    s = given(det, ctx, "okay before we go on I should mention that this conversation", "is being recorded for quality and training")
    seg2_start = 6.0  # second segment starts 4 s after the first (see given())
    assert len(s) == 1 and s[0].evidence.start < seg2_start < s[0].evidence.end  # words from both segments


def test_customer_saying_it_does_not_count(det):
    assert given(det, CallContext("c"), "is this call being recorded for quality purposes", channel="customer") == []


def test_deadline_missing_once_then_late_given(det):
    ctx = CallContext("c")
    assert det.check_deadlines(ctx, 29.9) == []
    miss = det.check_deadlines(ctx, 30.0)
    assert names(miss) == ["disclosure_missing"] and miss[0].attrs["disclosure_id"] == "recording_notice"
    assert miss[0].evidence.channel == "agent" and miss[0].evidence.end == 30.0
    assert det.check_deadlines(ctx, 45.0) == []
    late = given(det, ctx, "sorry I forgot to say this call may be recorded for training purposes", start=50.0)
    assert late and late[0].attrs["late"] is True and late[0].attrs["said_at"] >= 50.0
    assert det.check_deadlines(ctx, 90.0) == []


def test_a_call_ending_before_the_deadline_is_judged_at_its_end(det):
    ctx = CallContext("c")
    assert det.check_deadlines(ctx, 12.0) == []  # still time
    (miss,) = det.on_call_end(ctx, 12.0)  # the call ended at 12 s: the notice was never read
    assert miss.name == "disclosure_missing" and miss.attrs["judged_at_end"] is True
    assert miss.evidence.end == 12.0 and miss.attrs["checked_at"] == 12.0
    assert det.on_call_end(ctx, 12.0) == []  # once
    said = CallContext("d")
    assert given(det, said, RECORDING_PARAPHRASES[1])
    assert det.on_call_end(said, 20.0) == []  # read in time: nothing to judge


def test_detect_checks_deadline_on_every_transcript(det):
    ctx = CallContext("c")
    out = det.detect(tr("hello how can I help", channel="customer", start=31.0), ctx)
    assert names(out) == ["disclosure_missing"]


def test_given_in_time_is_never_missing(det):
    ctx = CallContext("c")
    assert given(det, ctx, RECORDING_PARAPHRASES[1])
    assert det.check_deadlines(ctx, 500.0) == []


def test_applies_when_metadata(det):
    plain = CallContext("c")
    coll = CallContext("c", metadata={"campaign": "collections", "product": "credit"})
    assert {s.attrs["disclosure_id"] for s in det.check_deadlines(plain, 1000)} == {"recording_notice"}
    assert {s.attrs["disclosure_id"] for s in det.check_deadlines(coll, 1000)} == {"recording_notice", "mini_miranda", "apr_disclosure"}


def test_mini_miranda_and_apr_paraphrases(det):
    ctx = CallContext("c", metadata={"campaign": "collections", "product": "credit"})
    got = given(det, ctx,
                "I am calling from a collection agency, we are attempting to collect a debt and anything you say will be used for that",
                "the APR on this card is nineteen point nine percent variable")
    assert {s.attrs["disclosure_id"] for s in got} == {"mini_miranda", "apr_disclosure"}
    ctx2 = CallContext("c", metadata={"campaign": "collections", "product": "credit"})
    assert given(det, ctx2, "the card has no annual fee", "I can help you collect your rewards points") == []


def test_false_alarms_on_real_agent_turns(det):
    """Real agent turns never contain these disclosures: count any that fire."""
    turns = []
    for line in require_shared("dialogues", "abcd_sample", "conversations.jsonl").read_text().splitlines():
        turns += [t["text"] for t in json.loads(line)["original"] if t["speaker"] == "agent"]
    sgd = require_shared("dialogues", "sgd_banking", "banks1_train.jsonl").read_text().splitlines()
    for line in sgd[:30]:
        turns += [t["text"] for t in json.loads(line)["turns"] if t["speaker"] == "system"]
    fired, promises = [], []
    for i, text in enumerate(turns):
        ctx = CallContext("c", metadata={"campaign": "collections", "product": "credit"})
        out = det.detect(tr(text, seg=i, start=1.0), ctx)
        fired += [(text, s.attrs["disclosure_id"]) for s in out if s.name == "disclosure_given"]
        promises += [text for s in out if s.name == "prohibited_promise" and not s.retracted]
    print(f"\nreal agent turns: {len(turns)}; disclosure false alarms {len(fired)} {fired}; promise alarms {len(promises)} {promises}")
    assert len(turns) > 150
    assert len(fired) <= 1
    assert len(promises) <= 2


PROMISES = [
    "I guarantee the money will be back in your account by friday",
    "I promise you this will never happen again",
    "you'll definitely receive the refund this week",
    "trust me, you are one hundred percent getting that credit",
    "don't worry, I can assure you the fee will be waived",
]
NOT_PROMISES = [
    "I can't guarantee that the refund will go through",
    "I cannot promise anything but I will try",
    "the refund usually takes five business days",
    "I hope this will be fixed soon",
    "let me check whether you are eligible for a refund",
    "I'll look into it and call you back tomorrow",
]


@pytest.mark.parametrize("text", PROMISES)
def test_prohibited_promises(det, text):
    s = [x for x in det.detect(tr(text, start=1.0), CallContext("c")) if x.name == "prohibited_promise"]
    assert len(s) == 1 and s[0].evidence.channel == "agent" and s[0].evidence.words, text


@pytest.mark.parametrize("text", NOT_PROMISES)
def test_not_promises(det, text):
    assert "prohibited_promise" not in names(det.detect(tr(text, start=1.0), CallContext("c")))


def test_promise_warned_on_partial_and_retracted_if_final_differs(det):
    ctx = CallContext("c")
    p = det.detect(tr("I guarantee", final=False, start=1.0), ctx)
    assert names(p) == ["prohibited_promise"]
    f = det.detect(tr("I can't guarantee it", final=True, rev=1, start=1.0), ctx)
    assert [s.retracted for s in f if s.name == "prohibited_promise"] == [True]


def test_bad_config_is_rejected():
    cfg = load_risk_config()
    cfg["compliance"]["disclosures"] = [{"id": "x", "deadline_s": 0, "threshold": 0.5, "prototypes": ["a"]}]
    with pytest.raises(RiskConfigError, match="deadline_s > 0"):
        ComplianceDetector(cfg)


def test_missing_retracted_when_a_late_final_shows_it_was_said_in_time(det):
    """The deadline timer can fire while ASR is still finishing the segment that has it."""
    ctx = CallContext("c")
    miss = det.check_deadlines(ctx, 30.2)
    assert names(miss) == ["disclosure_missing"]
    out = det.detect(tr("this call may be recorded for training purposes", start=27.0), ctx)
    given_sig = [s for s in out if s.name == "disclosure_given"]
    retracted = [s for s in out if s.retracted]
    assert given_sig and given_sig[0].attrs["late"] is False
    assert len(retracted) == 1 and retracted[0].signal_id == miss[0].signal_id


def test_one_detector_serves_many_calls_from_threads(det):
    """The pipeline shares one detector across calls in executor threads: per-call state must
    not leak between calls, and the shared embedding cache must survive concurrent use."""
    from concurrent.futures import ThreadPoolExecutor

    scripts = [
        [RECORDING_PARAPHRASES[i % 4], "I guarantee the money will be back by friday", f"your reference number is {i}"]
        for i in range(8)
    ]

    def call(script: list[str]) -> list[str]:
        ctx = CallContext("c")
        out = []
        for i, text in enumerate(script):
            out += names(det.detect(tr(text, seg=i, start=5.0 * i), ctx))
        return sorted(out + names(det.check_deadlines(ctx, 100.0)))

    sequential = [call(s) for s in scripts]
    with ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(call, scripts))
    assert threaded == sequential
    assert all(r == ["disclosure_given", "prohibited_promise"] for r in sequential)
