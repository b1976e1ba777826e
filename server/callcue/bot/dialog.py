"""One conversation with the virtual agent, sans-I/O: caller turns in, bot outputs out.

The manager never speaks, posts or waits itself; it returns what should happen (`Say`, `Run`
an action, `Handoff`, `End`) and is told the outcome of what it asked for (`action_done`).
The transport (voice or chat) and the governance around actions (audit, approvals,
webhooks) live in bot/runner.py, so every path through a flow is testable from plain text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from string import Template
from typing import Any, Literal

from callcue.bot.flows import Flow, Slot, Step, Task
from callcue.bot.slots import fill, yes_no


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Run:
    task: str
    step: Step
    slots: dict[str, str]


@dataclass(frozen=True)
class Handoff:
    reason: str
    context: dict[str, Any]


@dataclass(frozen=True)
class End:
    reason: str


Out = Say | Run | Handoff | End
Phase = Literal["choose", "slot", "confirm", "acting", "after", "handed_off", "ended"]


@dataclass
class Dialog:
    flow: Flow
    phase: Phase = "choose"
    task: Task | None = None
    slots: dict[str, str] = field(default_factory=dict)
    not_understood: int = 0
    pending: list[Step] = field(default_factory=list)
    done_tasks: list[dict[str, Any]] = field(default_factory=list)
    turns: list[tuple[str, str]] = field(default_factory=list)  # (who, text)
    reprompted: bool = False

    @property
    def expecting(self) -> Slot | None:
        """The slot the bot asked for and waits on (None when it waits on no value)."""
        return self._missing() if self.phase == "slot" and self.task is not None else None

    @property
    def confirming(self) -> bool:
        return self.phase == "confirm"

    # ---------------------------------------------------------------- in
    def start(self) -> list[Out]:
        return self._say(self.flow.greeting)

    def hear(self, text: str, intents: list[tuple[str, float]] = (), risks: set[str] | frozenset[str] = frozenset(),  # type: ignore[assignment]
             shown: str | None = None) -> list[Out]:  # fmt: skip
        """A caller turn (its intents and risk signals from the detectors, if any). `text` is
        what was said, digits and all (a slot may need them); `shown` is the masked form kept
        in the dialog's transcript, which a handoff sends to a desk."""
        text = " ".join(text.split())
        self.turns.append(("caller", " ".join((shown if shown is not None else text).split())))
        if self.phase in ("handed_off", "ended") or not text:
            return []
        low = text.lower()
        h = self.flow.handoff
        risky = sorted(set(risks) & set(h.on_signals))
        if risky:
            return self._handoff(f"risk: {', '.join(risky)}")
        if any(re.search(rf"\b{re.escape(p)}\b", low) for p in h.phrases):
            return self._handoff("caller asked for a person")
        if self.phase == "slot":
            return self._slot_turn(text)
        if self.phase == "confirm":
            yn = yes_no(text)
            if yn == "yes":
                return self._act()
            if yn == "no":
                self.slots.clear()
                self.phase = "slot"
                return self._next_slot(prefix="Let's try again. ")
            return self._not_understood("Please say yes or no.")
        if self.phase == "after":
            if yes_no(text) == "no" or re.search(r"\b(that's all|that is all|nothing else|goodbye|bye)\b", low):
                self.phase = "ended"
                return [*self._say(self.flow.goodbye), End("caller done")]
        # choose a task (also after one is done: "anything else?" answered with a request)
        task = self._choose(low, intents)
        person = [n for n, c in intents if n in h.on_intents and c >= h.min_intent_confidence]
        if task is None and person:
            return self._handoff(f"a person handles: {person[0]}")
        if task is None:
            return self._not_understood(self.flow.not_understood)
        self.task, self.slots, self.phase, self.not_understood = task, {}, "slot", 0
        # a first turn may already hold a slot value ("block the card ending 4411")
        for s in task.slots:
            v = fill(s, text) if s.type in ("digits", "date", "amount") else None
            if v is not None:
                self.slots[s.name] = v
        return self._next_slot()

    def action_done(self, step: Step, ok: bool, result: dict[str, Any] | None = None, answer: str = "") -> list[Out]:
        """The outcome of a `Run`: the next action, or the task's response."""
        assert self.task is not None
        if not ok:
            return self._handoff(f"{step.kind} failed")
        for k, v in (result or {}).items():
            if isinstance(v, (str, int, float)):
                self.slots[f"result_{k}"] = str(v)
        if answer:
            self.slots["answer"] = answer
        if self.pending:
            return self._run_next()
        task = self.task
        self.done_tasks.append({"task": task.id, "slots": {k: v for k, v in self.slots.items() if not k.startswith("result_")}})
        out = self._say(self._fill(task.done)) if task.done else []
        if answer:
            out += self._say(answer)
        self.phase = "after"
        self.task = None
        return out + (self._say(task.after) if task.after else [])

    # ---------------------------------------------------------------- inside
    def _choose(self, low: str, intents: list[tuple[str, float]]) -> Task | None:
        """A task's own phrases first (the flow's author wrote them for it), then the
        intent detector's best guess above the confidence floor."""
        for t in self.flow.tasks:
            if any(re.search(rf"\b{re.escape(p)}\b", low) for p in t.phrases):
                return t
        floor = self.flow.handoff.min_intent_confidence
        if any(n in self.flow.handoff.on_intents and c >= floor for n, c in intents):
            return None  # a request a person handles: `hear` hands it over
        for name, conf in sorted(intents, key=lambda x: -x[1]):
            if conf < floor:
                continue
            for t in self.flow.tasks:
                if name in t.intents:
                    return t
        return None

    def _slot_turn(self, text: str) -> list[Out]:
        slot = self._missing()
        assert slot is not None
        v = fill(slot, text)
        if v is None:
            if not self.reprompted:
                self.reprompted = True
                self.not_understood += 1
                if self.not_understood > self.flow.handoff.max_not_understood:
                    return self._handoff("not understood repeatedly")
                return self._say(slot.reprompt or slot.prompt)
            return self._not_understood(slot.reprompt or slot.prompt)
        self.slots[slot.name] = v
        self.reprompted = False
        return self._next_slot()

    def _missing(self) -> Slot | None:
        assert self.task is not None
        return next((s for s in self.task.slots if s.name not in self.slots), None)

    def _next_slot(self, prefix: str = "") -> list[Out]:
        assert self.task is not None
        slot = self._missing()
        if slot is not None:
            self.phase = "slot"
            return self._say(prefix + slot.prompt)
        lim = self.task.limit
        if lim is not None:
            try:
                over = float(self.slots.get(lim.slot, "0")) > lim.above
            except ValueError:
                over = False
            if over:
                return (self._say(lim.say) if lim.say else []) + self._handoff(f"{lim.slot} above {lim.above:g}")
        if self.task.confirm:
            self.phase = "confirm"
            return self._say(self._fill(self.task.confirm))
        return self._act()

    def _act(self) -> list[Out]:
        assert self.task is not None
        self.phase = "acting"
        self.pending = list(self.task.actions)
        if not self.pending:
            return self.action_done(Step(kind="kb_answer"), True)
        return self._run_next()

    def _run_next(self) -> list[Out]:
        assert self.task is not None
        step = self.pending.pop(0)
        if step.kind == "handoff":
            return self._handoff(f"task {self.task.id} hands off")
        return [Run(self.task.id, step, dict(self.slots))]

    def _not_understood(self, say: str) -> list[Out]:
        self.not_understood += 1
        if self.not_understood > self.flow.handoff.max_not_understood:
            return self._handoff("not understood repeatedly")
        return self._say(say)

    def _handoff(self, reason: str) -> list[Out]:
        self.phase = "handed_off"
        ctx = self.context(reason)
        return [*self._say(self.flow.handoff.say), Handoff(reason, ctx)]

    def context(self, reason: str = "") -> dict[str, Any]:
        """What the human agent needs the moment the call reaches them."""
        wanted = self.task.id if self.task else (self.done_tasks[-1]["task"] if self.done_tasks else None)
        slots = {k: v for k, v in self.slots.items() if not k.startswith("result_")}
        summary = (f"Caller wanted {wanted.replace('_', ' ')}" if wanted else "Caller's request was not recognized") + (
            f" ({', '.join(f'{k} {v}' for k, v in slots.items())})" if slots else "") + (
            f"; the bot completed {', '.join(d['task'].replace('_', ' ') for d in self.done_tasks)}" if self.done_tasks else "") + (
            f"; handed over: {reason}" if reason else "")  # fmt: skip
        return {"reason": reason, "flow": f"{self.flow.id}@{self.flow.version}", "wanted": wanted, "slots": slots,
                "done": list(self.done_tasks), "transcript": [{"who": w, "text": t} for w, t in self.turns[-30:]],
                "summary": summary}  # fmt: skip

    def _say(self, text: str) -> list[Out]:
        self.turns.append(("bot", text))
        return [Say(text)]

    def _fill(self, template: str) -> str:
        return Template(template).safe_substitute(self.slots)
