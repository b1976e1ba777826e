"""`callcue eval bot`: scripted callers through the shipped flows, as text.

Two sets. **Scripted** callers written for the demo bank flow (in this file, so they carry no
third-party license): different phrasings, digit and date forms, a re-prompt, a "no" at the
confirmation, amounts on both sides of the limit, a knowledge question, a request for a
person; each has the outcome it should reach (the task done with its slots, or a handoff).
**Out of scope**: the opening requests of the shared SGD Banks_1 dialogues (balance checks and
transfers, which the demo flow does not serve): the right outcome is a handoff, never a task
started under a wrong name. Intents come from the shipped intent classifier, as live.

**Real requests**: the opening request of each MultiDoGo finance dialogue (customers of a
bank's chat, labelled with intents): a lost or stolen card (`reportlostcard`, `replacecard`)
must start the lost-card task; every other request (balances, transfers, address changes,
disputes) must start no task (the bot re-prompts or hands over). The later MultiDoGo turns answer
a human agent's questions, not this flow's, so only the request is used.

Reported: task success, slot accuracy, turns to completion, handoff rate (and correct-handoff
rate), per set.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callcue.bot.dialog import Dialog, End, Handoff, Run
from callcue.bot.flows import Flow


@dataclass(frozen=True)
class Script:
    name: str
    turns: list[str]
    task: str | None  # the task that should complete (None: a handoff is right)
    slots: dict[str, str] = field(default_factory=dict)


SCRIPTS = [
    Script("lost card, plain", ["I lost my card", "4 4 1 1", "July 4th 1980", "yes", "no that's all"], "lost_card",
           {"last4": "4411", "dob": "1980-07-04"}),
    Script("stolen card, spoken digits", ["hi someone stole my credit card", "four four one one",
                                          "the fourth of july nineteen eighty", "yes please", "no thanks bye"], "lost_card",
           {"last4": "4411", "dob": "1980-07-04"}),
    Script("lost card, re-prompt", ["my debit card is missing, can you block my card", "hmm let me find it", "it's 9 0 2 1",
                                    "May 3rd 1975", "that's right", "goodbye"], "lost_card",
           {"last4": "9021", "dob": "1975-05-03"}),
    Script("lost card, corrected", ["block my card please it was stolen", "1 2 3 4", "march twenty-first two thousand",
                                    "no that's wrong", "1 2 4 3", "march twenty-first two thousand", "yes", "no"], "lost_card",
           {"last4": "1243", "dob": "2000-03-21"}),
    Script("lost card, digits first", ["I lost my card ending 5 5 6 6", "12/25/1990", "yes", "no that's all"], "lost_card",
           {"last4": "5566", "dob": "1990-12-25"}),
    Script("refund status", ["where is my refund", "forty two dollars fifty", "yes", "no"], "payment_status",
           {"amount": "42.5"}),
    Script("payment status, figures", ["I want to check a payment", "$120", "yes", "that's all"], "payment_status",
           {"amount": "120"}),
    Script("refund over the limit", ["check my refund please", "seven hundred dollars"], None),
    Script("opening hours", ["when are you open on saturday", "no thanks"], "hours_and_fees"),
    Script("overdraft fee", ["how much is the overdraft fee", "no"], "hours_and_fees"),
    Script("asks for a person", ["I want to speak to a real person"], None),
    Script("asks for an agent mid-task", ["I lost my card", "agent please"], None),
    Script("never understood", ["purple monkey dishwasher", "banana phone", "the weather is nice", "hmm"], None),
]


def _predict(classifier: Any, text: str) -> list[tuple[str, float]]:
    if classifier is None:
        return []
    p = classifier.predict([text])[0]
    return [(n, c) for n, c in p.top] if p.intent != "none" else []


def run_script(flow: Flow, turns: list[str], classifier: Any, hear: Any = None) -> dict[str, Any]:
    """`hear(text) -> text`: what the bot gets of a turn (the identity for text; speech
    synthesis then the recognizer for `--speech`)."""
    d = Dialog(flow)
    d.start()
    done: list[dict[str, Any]] = []
    handoff: str | None = None
    used = 0
    for said in turns:
        used += 1
        text = hear(said) if hear is not None else said
        outs = d.hear(text, _predict(classifier, text))
        while outs:
            nxt: list[Any] = []
            for o in outs:
                if isinstance(o, Run):  # the action succeeds (a webhook answering 200, or a KB passage)
                    nxt += d.action_done(o.step, True, {"status": "completed"},
                                         answer="(answer)" if o.step.kind == "kb_answer" else "")  # fmt: skip
                    done.append({"task": o.task, "slots": {k: v for k, v in o.slots.items() if not k.startswith("result_")}})
                elif isinstance(o, Handoff):
                    handoff = o.reason
                elif isinstance(o, End):
                    pass
            outs = nxt
        if handoff or d.phase == "ended":
            break
    return {"done": done, "handoff": handoff, "turns": used}


def speech_ear(asr: Any, vad: Any, caller_voice: str = "piper") -> Any:
    """Each caller turn said by a synthetic caller (Piper's neural voice, or espeak-ng) at
    8 kHz (a telephone), then recognised by the server's engine through the same VAD and
    channel pipeline a call uses."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from callcue.bot.voice import EspeakVoice, PiperVoice, Voice
    from callcue.evaluation.asr_eval import decode_clip

    voice: Voice = PiperVoice() if caller_voice == "piper" else EspeakVoice()
    pool = ThreadPoolExecutor(2)

    def hear(text: str) -> str:
        pcm = b"".join(voice.synthesize(text, 8000)) + b"\0\0" * 8000  # the pause that ends a turn
        return asyncio.run(decode_clip(asr, pcm, 8000, pool, vad, expect_digits=any(c.isdigit() for c in text))).text

    return hear


def run_bot_eval(flow: Flow, classifier: Any, sgd_file: Path | None = None, limit: int = 200,
                 hear: Any = None, multidogo_file: Path | None = None) -> dict[str, Any]:  # fmt: skip
    t0 = time.perf_counter()
    scripted = []
    for s in SCRIPTS:
        r = run_script(flow, s.turns, classifier, hear)
        got = r["done"][-1] if r["done"] else None
        ok = (r["handoff"] is not None) if s.task is None else (got is not None and got["task"] == s.task and r["handoff"] is None)
        slot_ok = [got["slots"].get(k) == v for k, v in s.slots.items()] if got else [False] * len(s.slots)
        scripted.append({"name": s.name, "ok": ok, "turns": r["turns"], "handoff": r["handoff"],
                         "slots_right": sum(slot_ok), "slots": len(slot_ok), "done": r["done"]})  # fmt: skip
    out: dict[str, Any] = {"flow": f"{flow.id}@{flow.version}", "scripted": _summary(scripted), "scripted_rows": scripted}
    if sgd_file is not None and sgd_file.exists():
        rows = []
        for line in sgd_file.read_text().splitlines()[:limit]:
            dlg = json.loads(line)
            users = [t["text"] for t in dlg["turns"] if t["speaker"] == "user"][:3]
            r = run_script(flow, users, classifier)
            rows.append({"ok": r["handoff"] is not None and not r["done"], "wrong_task": bool(r["done"]),
                         "handoff": r["handoff"], "turns": r["turns"]})  # fmt: skip
        out["out_of_scope"] = {"dialogues": len(rows), "handed_off": sum(r["handoff"] is not None for r in rows) / max(1, len(rows)),
                               "wrong_task_started": sum(r["wrong_task"] for r in rows) / max(1, len(rows)),
                               "mean_turns_to_handoff": sum(r["turns"] for r in rows) / max(1, len(rows))}  # fmt: skip
    if multidogo_file is not None and multidogo_file.exists():
        out["requests"] = run_requests(flow, classifier, multidogo_file, limit=limit, hear=hear)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


#: MultiDoGo finance intents the demo flow serves, by task; every other request is out of scope
MULTIDOGO_TASKS = {"reportlostcard": "lost_card", "replacecard": "lost_card"}
_NOT_A_REQUEST = {"openinggreeting", "contentonly", "thankyou", "confirmation", "rejection", "closinggreeting"}


def run_requests(flow: Flow, classifier: Any, path: Path, limit: int = 240, hear: Any = None) -> dict[str, Any]:
    """Each dialogue's first request through a fresh dialog: the task it started (or none)."""
    rows = []
    for line in path.read_text().splitlines():
        dlg = json.loads(line)
        turn = next((t for t in dlg["turns"] if t["speaker"] == "customer" and set(t.get("intents") or []) - _NOT_A_REQUEST),
                    None)  # fmt: skip
        if turn is None:
            continue
        labels = set(turn["intents"]) - _NOT_A_REQUEST
        want = next((MULTIDOGO_TASKS[i] for i in labels if i in MULTIDOGO_TASKS), None)
        d = Dialog(flow)
        d.start()
        text = hear(turn["text"]) if hear is not None else turn["text"]
        d.hear(text, _predict(classifier, text))
        got = d.task.id if d.task is not None and d.phase != "handed_off" else None
        rows.append({"want": want, "got": got, "labels": sorted(labels)})
        if len(rows) >= limit:
            break
    served = [r for r in rows if r["want"]]
    other = [r for r in rows if not r["want"]]
    return {"requests": len(rows), "in_scope": len(served),
            "task_recall": sum(r["got"] == r["want"] for r in served) / max(1, len(served)),
            "out_of_scope": len(other),
            "wrong_task_started": sum(r["got"] is not None for r in other) / max(1, len(other)),
            "misses": [r for r in rows if r["got"] != r["want"]][:20]}  # fmt: skip


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    tasks = [r for r in rows if r["slots"]]
    completed = [r for r in rows if r["ok"] and not r["handoff"]]
    return {"callers": len(rows), "task_success": sum(r["ok"] for r in rows) / len(rows),
            "slot_accuracy": sum(r["slots_right"] for r in tasks) / max(1, sum(r["slots"] for r in tasks)),
            "turns_to_completion": sum(r["turns"] for r in completed) / max(1, len(completed)),
            "handoff_rate": sum(r["handoff"] is not None for r in rows) / len(rows)}  # fmt: skip


def render(res: dict[str, Any]) -> str:
    s = res["scripted"]
    how = f"through {res['speech']} speech and the recognizer" if res.get("speech") else "as text"
    lines = [f"Virtual agent {res['flow']}, {how} (intents from the shipped classifier)",
             f"scripted callers: {s['callers']}  task success {100 * s['task_success']:.0f}%  slot accuracy "
             f"{100 * s['slot_accuracy']:.0f}%  turns to completion {s['turns_to_completion']:.1f}  handoff rate "
             f"{100 * s['handoff_rate']:.0f}%"]  # fmt: skip
    for r in res["scripted_rows"]:
        lines.append(f"  {'ok ' if r['ok'] else 'BAD'} {r['name']:<32} turns {r['turns']}  "
                     f"{'handoff: ' + r['handoff'] if r['handoff'] else 'done: ' + ','.join(d['task'] for d in r['done'])}")  # fmt: skip
    if "out_of_scope" in res:
        o = res["out_of_scope"]
        lines.append(f"out of scope (SGD Banks_1 openings): {o['dialogues']} dialogues  handed off {100 * o['handed_off']:.0f}%  "
                     f"wrong task started {100 * o['wrong_task_started']:.0f}%  turns to handoff {o['mean_turns_to_handoff']:.1f}")  # fmt: skip
    if "requests" in res:
        q = res["requests"]
        lines.append(f"real requests (MultiDoGo finance dev): {q['requests']}  lost-card requests {q['in_scope']}: task started "
                     f"{100 * q['task_recall']:.0f}%  other requests {q['out_of_scope']}: a task started anyway "
                     f"{100 * q['wrong_task_started']:.0f}%")  # fmt: skip
    return "\n".join(lines)
