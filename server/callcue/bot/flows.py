"""Flows as versioned data: a virtual agent's tasks, slots, prompts, actions and handoff rules,
one YAML file per flow under `config/flows/`, validated when the server starts.

Why data: the bank's operations team changes what the bot asks and says without a release,
reviews it as a diff, and every bot decision in the audit trail names the flow version it
followed (as a hint names its playbook version).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Slot(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: Literal["digits", "date", "amount", "yes_no", "choice", "text"]
    prompt: str
    reprompt: str = ""
    length: int | None = Field(default=None, ge=1, le=32)  # digits
    choices: list[str] = Field(default_factory=list)  # choice


class Step(_Strict):
    kind: Literal["webhook", "kb_answer", "handoff"]
    url: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=5)
    # approve: a supervisor approves within `deadline_s` while the caller hears `hold`
    autonomy: Literal["auto", "approve"] = "auto"
    deadline_s: float = Field(default=60, gt=0, le=600)
    hold: str = "Please hold while I get that approved."


class Limit(_Strict):
    """A slot value above which the task goes to a human (a refund over a limit)."""

    slot: str
    above: float
    say: str = ""


class Task(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    intents: list[str] = Field(default_factory=list)
    phrases: list[str] = Field(default_factory=list)
    slots: list[Slot] = Field(default_factory=list)
    confirm: str = ""
    actions: list[Step] = Field(default_factory=list)
    done: str = ""
    after: str = ""
    limit: Limit | None = None


class Handoff(_Strict):
    say: str = "Let me get you to one of my colleagues."
    phrases: list[str] = Field(default_factory=lambda: ["agent", "human", "real person", "representative"])
    max_not_understood: int = Field(default=2, ge=1, le=10)
    min_intent_confidence: float = Field(default=0.55, ge=0, le=1)
    on_signals: list[str] = Field(default_factory=list)
    # requests a person handles (a dispute, closing an account): a confident intent of these,
    # when the caller says what they want, goes to a person instead of a task
    on_intents: list[str] = Field(default_factory=list)


class Flow(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: int = Field(ge=1)
    description: str = ""
    greeting: str
    not_understood: str
    goodbye: str = "Goodbye."
    handoff: Handoff = Field(default_factory=Handoff)
    tasks: list[Task]
    digest: str = ""


class FlowError(ValueError):
    pass


def parse_flow(raw: bytes, where: str) -> Flow:
    """One flow from its YAML, validated (the file's or the stored version's name in errors)."""
    try:
        doc = yaml.safe_load(raw) or {}
        flow = Flow.model_validate({**doc, "digest": hashlib.sha256(raw).hexdigest()[:12]})
    except (yaml.YAMLError, ValidationError) as e:
        raise FlowError(f"{where}: {e}") from None
    for t in flow.tasks:
        names = [s.name for s in t.slots]
        if len(set(names)) != len(names):
            raise FlowError(f"{where}: task {t.id}: slot names must be unique")
        if t.limit is not None and t.limit.slot not in names:
            raise FlowError(f"{where}: task {t.id}: limit names slot {t.limit.slot!r}, which the task does not ask for")
        for step in t.actions:
            if step.autonomy == "approve" and step.kind != "webhook":
                raise FlowError(f"{where}: task {t.id}: only webhook steps can wait for a supervisor's approval")
        for s in t.slots:
            if s.type == "digits" and s.length is None:
                raise FlowError(f"{where}: task {t.id}: digits slot {s.name} needs a length")
            if s.type == "choice" and not s.choices:
                raise FlowError(f"{where}: task {t.id}: choice slot {s.name} needs choices")
    return flow


def load_flow_files(folder: Path) -> dict[str, tuple[Flow, bytes]]:
    """Every flow of a folder with its YAML, by id; a bad file stops the server with the
    file and reason."""
    out: dict[str, tuple[Flow, bytes]] = {}
    if not folder.exists():
        return out
    for f in sorted(folder.glob("*.yaml")):
        raw = f.read_bytes()
        flow = parse_flow(raw, str(f))
        if flow.id in out:
            raise FlowError(f"{f}: flow id {flow.id!r} is defined twice")
        out[flow.id] = (flow, raw)
    return out


def load_flows(folder: Path) -> dict[str, Flow]:
    return {fid: flow for fid, (flow, _) in load_flow_files(folder).items()}
