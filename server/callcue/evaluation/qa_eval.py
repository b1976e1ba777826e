"""`callcue eval qa`: how often the automatic scorecard answers what really happened.

Interactions are built from real banking dialogues (../shared/data/dialogues/sgd_banking, the
customer's and agent's own turns) with four scored behaviours inserted or left out by
construction, in varied wording (never the detectors' prototypes): the recording notice read
or not, verification before the account balance or after it, a prohibited promise or a
hedged one, empathy after the customer's complaint or none. Each thread runs through the real
runtime (redaction, every detector, the playbooks, the store, the post-call scorecard) as a
text interaction, and each answer is compared with the truth.

Through ASR (`--asr`): the same threads are rendered as stereo 8 kHz calls by
`bench/callgen.py` (espeak-ng, customer left, agent right), then recognised by Whisper and
scored through `callcue ingest`, so what the table adds over text is what recognition loses.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NOTICE = ["Just so you know, we record our calls to help train our staff.",
          "Before we start, please note this conversation is recorded for quality purposes.",
          "I have to let you know that calls on this line are monitored and recorded."]
NO_NOTICE = ["Let's get started then.", "Alright, let's see what we can do.", "Okay, let me pull that up for you."]
VERIFY = ["Could I have your date of birth so I can verify your identity?",
          "To confirm your identity, can I get the last four digits of your card?",
          "For security I need to verify your identity: what is your postcode?"]
VERIFY_ANSWER = ["Sure, it is the 4th of May 1980.", "It ends in 4421.", "It's 94107."]
BALANCE = ["Thank you. Your current balance is 2,794 dollars.", "Okay. Your available balance is 310 dollars.",
           "Thanks. Your account balance shows 1,020 dollars."]
PROMISE = ["I guarantee you will get a full refund by tomorrow.", "I promise this will never happen again.",
           "You will definitely get your money back, no question."]
HEDGE = ["I will check whether a refund is possible.", "I can't promise anything, but I will look into it.",
         "I hope we can sort the refund out, let me check."]
COMPLAINT = ["Honestly this is ridiculous, I am really frustrated with these fees.",
             "I'm fed up, this keeps happening and nobody helps.", "This is unacceptable, I've been charged twice."]
EMPATHY = ["I'm so sorry about that, I completely understand how annoying it is.",
           "That sounds really frustrating, I apologize for the trouble.", "I understand, and I'm sorry you had to deal with this."]
NEUTRAL = ["Okay.", "Noted.", "Right."]

QUESTIONS = ("recording_notice", "verified_before_details", "no_prohibited_promise", "empathy_on_complaint")


def base_dialogues(data: Path, n: int) -> list[list[tuple[str, str]]]:
    path = data / "dialogues" / "sgd_banking" / "banks1_train.jsonl"
    out: list[list[tuple[str, str]]] = []
    with path.open() as f:
        for line in f:
            rec = json.loads(line)
            turns = [("customer" if t["speaker"] == "user" else "agent", t["text"].strip()) for t in rec.get("turns", [])
                     if t.get("text", "").strip()]  # fmt: skip
            if len(turns) >= 4:
                out.append(turns)
            if len(out) >= n:
                break
    return out


def build(base: list[tuple[str, str]], i: int, notice: bool, verify_first: bool, promise: bool,
          empathy: bool) -> tuple[list[dict[str, Any]], dict[str, str]]:  # fmt: skip
    """One thread and the true answers of the four questions."""
    k = i % 3
    turns: list[tuple[str, str]] = [("agent", "Hello, thank you for calling Northwind Bank, my name is Sam. "
                                               + (NOTICE[k] if notice else NO_NOTICE[k]))]  # fmt: skip
    turns += base[:2]
    turns += [("customer", COMPLAINT[k]), ("agent", EMPATHY[k] if empathy else NEUTRAL[k])]
    if verify_first:
        turns += [("agent", VERIFY[k]), ("customer", VERIFY_ANSWER[k]), ("agent", BALANCE[k])]
    else:
        turns += [("agent", BALANCE[k]), ("agent", VERIFY[k]), ("customer", VERIFY_ANSWER[k])]
    turns += [("agent", PROMISE[k] if promise else HEDGE[k])]
    turns += base[2:6]
    turns += [("agent", "Is there anything else I can help you with today?"), ("customer", "No, that's all, thanks.")]
    thread = [{"role": r, "text": t, "time": 6.0 * j} for j, (r, t) in enumerate(turns)]
    truth = {"recording_notice": "yes" if notice else "no", "verified_before_details": "yes" if verify_first else "no",
             "no_prohibited_promise": "no" if promise else "yes", "empathy_on_complaint": "yes" if empathy else "no"}  # fmt: skip
    return thread, truth


def _callgen() -> Any:
    """bench/callgen.py of this checkout (the evaluation runs from one: it reads ../shared)."""
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "bench" / "callgen.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --asr renders calls with the checkout's bench/callgen.py")
    spec = importlib.util.spec_from_file_location("callcue_bench_callgen", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


def _threads(data: Path, n: int) -> list[tuple[list[dict[str, Any]], dict[str, str]]]:
    out = []
    for i, base in enumerate(base_dialogues(data, n)):
        notice, verify_first, promise, empathy = (bool(i >> b & 1) for b in range(4))
        out.append(build(base, i, notice, verify_first, promise, empathy))
    return out


def _rows_from(results: Sequence[tuple[str | None, dict[str, str], dict[str, Any] | None]]) -> list[dict[str, Any]]:
    rows = []
    for call_id, truth, ev in results:
        got = {a["question_id"]: a["answer"] for a in (ev or {}).get("answers", [])}
        rows.append({"call_id": call_id, "truth": truth, "got": {q: got.get(q) for q in QUESTIONS}})
    return rows


async def run_qa_eval_asr(data: Path, n: int = 16, jobs: int = 2) -> list[dict[str, Any]]:
    """Render every thread as a call, recognise and score it through `callcue ingest`."""
    import asyncio

    from callcue.clients.demo import scratch_settings
    from callcue.clients.ingest import ingest

    cg = _callgen()
    tmp = Path(tempfile.mkdtemp(prefix="callcue-eval-qa-asr-"))
    wavs, truths = [], {}
    loop = asyncio.get_running_loop()
    for i, (thread, truth) in enumerate(_threads(data, n)):
        dlg = cg.Dialogue("sgd_banking+callcue-eval", f"eval{i}", [cg.Turn(t["role"], t["text"]) for t in thread],
                          "CC BY-SA 4.0 (SGD); inserted lines written for CallCue")  # fmt: skip
        call = await loop.run_in_executor(None, functools.partial(cg.render_call, dlg, sample_rate=8000, stereo=True, seed=i))
        wav = tmp / f"eval{i:03d}.wav"
        cg.save_call(call, wav)
        wavs.append(wav)
        truths[str(wav)] = truth
    results = await ingest(wavs, scratch_settings(tmp, asr_engine="whisper"), jobs=jobs, layout="stereo")
    return _rows_from([(r.get("call_id"), truths[r["source"]], r.get("scorecard")) for r in
                       sorted(results, key=lambda r: r["source"])])  # fmt: skip


async def run_qa_eval(data: Path, n: int = 16, asr: bool = False) -> dict[str, Any]:
    from callcue.clients.demo import scratch_settings
    from callcue.clients.ingest import post_call_results
    from callcue.transports.text_thread import run_text_interaction
    from callcue.wiring import assemble

    if asr:
        rows = await run_qa_eval_asr(data, n)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="callcue-eval-qa-"))
        settings = scratch_settings(tmp, asr_engine="off")  # text threads: no recognizer
        rt = await assemble(settings)
        done = []
        try:
            for i, (thread, truth) in enumerate(_threads(data, n)):
                call_id = await run_text_interaction(rt.calls, {"interaction_id": f"eval{i}", "agent_id": "agent-1",
                                                                "turns": thread})  # fmt: skip
                if rt.qa is not None:
                    await rt.qa.done(call_id)
                done.append((call_id, truth, post_call_results(await rt.store.call_record(call_id))["scorecard"]))
        finally:
            await rt.close()
        rows = _rows_from(done)
    per_q = {}
    for q in QUESTIONS:
        pairs = [(r["truth"][q], r["got"][q]) for r in rows]
        correct = sum(t == g for t, g in pairs)
        per_q[q] = {"n": len(pairs), "correct": correct, "accuracy": round(correct / len(pairs), 3) if pairs else None,
                    "missed": sum(t == "no" and g == "yes" for t, g in pairs),
                    "false_alarms": sum(t == "yes" and g != "yes" for t, g in pairs)}  # fmt: skip
    return {"calls": len(rows), "mode": "through ASR: espeak-ng calls, Whisper" if asr else "text", "questions": per_q,
            "rows": rows}  # fmt: skip


def format_report(r: dict[str, Any]) -> str:
    lines = [f"QA answers against the truth by construction: {r['calls']} interactions ({r['mode']}, real banking dialogues)",
             f"{'question':<26} {'n':>3} {'accuracy':>9} {'missed no':>10} {'false no':>9}"]  # fmt: skip
    for q, x in r["questions"].items():
        lines.append(f"{q:<26} {x['n']:>3} {x['accuracy']:>9.3f} {x['missed']:>10} {x['false_alarms']:>9}")
    return "\n".join(lines)
