"""Versioned playbooks loaded from YAML and validated before a single call is touched.

A playbook says: when a signal of these kinds/names arrives and the `when` condition holds,
take these actions with this much autonomy. Loading is all-or-nothing and every error names
the file, the playbook and the field, because a half-loaded set would silently skip a
compliance rule.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from callcue.decide.actions.base import ActionSpec
from callcue.decide.actions.kinds import ACTION_KINDS
from callcue.decide.conditions import Condition, ConditionError

Autonomy = Literal["auto", "suggest", "approve"]
_ID = r"^[a-z][a-z0-9_\-]{1,63}$"


class PlaybookError(ValueError):
    """A playbook file that cannot be used; the message says where and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Trigger(_Model):
    """Cheap pre-filter so a condition is only evaluated for signals it can be about."""

    kinds: list[str] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)

    def accepts(self, kind: str, name: str) -> bool:
        return (not self.kinds or kind in self.kinds) and (not self.names or name in self.names)


class Approval(_Model):
    role: str = "supervisor"
    deadline_s: float = Field(gt=0, le=3600)
    # run: act anyway (a safe default action); drop: do nothing; escalate: notify escalate_to
    on_expiry: Literal["run", "drop", "escalate"] = "drop"
    escalate_to: str | None = None

    @model_validator(mode="after")
    def _escalate_target(self) -> Approval:
        if self.on_expiry == "escalate" and not self.escalate_to:
            raise ValueError("on_expiry 'escalate' needs 'escalate_to' (a role or queue)")
        return self


class AnomalyBounds(_Model):
    """Limits on how a playbook behaves in production; outside them supervisors are alerted."""

    window: int = Field(default=20, ge=2, le=10_000)  # last N hint outcomes for rates
    min_samples: int = Field(default=10, ge=1)
    max_dismissal_rate: float | None = Field(default=None, ge=0, le=1)
    max_override_rate: float | None = Field(default=None, ge=0, le=1)
    max_fires_per_hour: float | None = Field(default=None, gt=0)
    auto_pause: bool = False


class Playbook(_Model):
    id: str = Field(pattern=_ID)
    version: int = Field(ge=1)
    description: str = ""
    enabled: bool = True
    trigger: Trigger
    when: str = "True"
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    cooldown_s: float = Field(default=0.0, ge=0)
    # expression giving a key; the playbook fires at most once per call per key value
    dedupe_key: str | None = None
    max_per_call: int | None = Field(default=None, ge=1)
    autonomy: Autonomy
    approval: Approval | None = None
    actions: list[SerializeAsAny[ActionSpec]] = Field(min_length=1)
    anomaly: AnomalyBounds = Field(default_factory=AnomalyBounds)

    @field_validator("actions", mode="wrap")
    @classmethod
    def _known_kinds(cls, v: Any, handler: Any) -> list[ActionSpec]:
        """Each action against the kinds registered now (decide/actions/kinds.py), so a bad
        one is named by its field: `actions.0.webhook.url`."""
        return handler(ACTION_KINDS.list_adapter().validate_python(v))

    @field_validator("when", "dedupe_key")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                Condition.compile(v)
            except ConditionError as e:
                raise ValueError(f"bad expression {v!r}: {e}") from None
        return v

    @model_validator(mode="after")
    def _approval_matches_autonomy(self) -> Playbook:
        if self.autonomy == "approve" and self.approval is None:
            raise ValueError("autonomy 'approve' needs an 'approval' block (role, deadline_s, on_expiry)")
        if self.autonomy != "approve" and self.approval is not None:
            raise ValueError(f"'approval' is only meaningful with autonomy 'approve', not {self.autonomy!r}")
        if self.autonomy == "suggest" and not any(a.kind == "hint" for a in self.actions):
            raise ValueError("autonomy 'suggest' needs a 'hint' action: the agent chooses from that hint")
        return self

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def condition(self) -> Condition:
        return _compiled(self.when)

    @property
    def dedupe(self) -> Condition | None:
        return _compiled(self.dedupe_key) if self.dedupe_key else None


_CACHE: dict[str, Condition] = {}


def _compiled(src: str) -> Condition:
    c = _CACHE.get(src)
    if c is None:
        c = _CACHE[src] = Condition.compile(src)
    return c


def _where(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc or '(top)'}: {e['msg']}")
    return "; ".join(parts)


class PlaybookSet:
    """All playbooks of a deployment, with a content hash so the audit log can say exactly
    which rule text was live when something fired."""

    def __init__(self, playbooks: list[Playbook], digest: str = "") -> None:
        seen: dict[str, Playbook] = {}
        for p in playbooks:
            if p.id in seen:
                raise PlaybookError(f"duplicate playbook id {p.id!r}")
            seen[p.id] = p
        self._by_id = seen
        self.digest = digest or hashlib.sha256(
            "\n".join(sorted(p.model_dump_json() for p in playbooks)).encode()
        ).hexdigest()[:12]

    def __iter__(self) -> Iterator[Playbook]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, playbook_id: str) -> Playbook:
        try:
            return self._by_id[playbook_id]
        except KeyError:
            raise KeyError(f"unknown playbook {playbook_id!r}") from None

    def __contains__(self, playbook_id: object) -> bool:
        return playbook_id in self._by_id

    @classmethod
    def from_docs(cls, docs: list[tuple[str, Any]]) -> PlaybookSet:
        """Validate (source, parsed YAML) pairs; a document is one playbook or `{playbooks: [...]}`."""
        out: list[Playbook] = []
        where: dict[str, str] = {}
        for source, doc in docs:
            items = doc.get("playbooks") if isinstance(doc, dict) and "playbooks" in doc else [doc]
            if not isinstance(items, list):
                raise PlaybookError(f"{source}: 'playbooks' must be a list")
            for i, item in enumerate(items):
                label = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else f"#{i}"
                if not isinstance(item, dict):
                    raise PlaybookError(f"{source}: playbook {label}: must be a mapping, got {type(item).__name__}")
                try:
                    pb = Playbook.model_validate(item)
                except ValidationError as e:
                    raise PlaybookError(f"{source}: playbook '{label}': {_where(e)}") from None
                if pb.id in where:
                    raise PlaybookError(f"{source}: playbook '{pb.id}': duplicate id (also in {where[pb.id]})")
                where[pb.id] = source
                out.append(pb)
        return cls(out)

    @classmethod
    def load(cls, directory: str | Path) -> PlaybookSet:
        d = Path(directory)
        if not d.is_dir():
            raise PlaybookError(f"{d}: playbook directory not found")
        docs: list[tuple[str, Any]] = []
        h = hashlib.sha256()
        for f in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            try:
                text = f.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise PlaybookError(f"{f}: not UTF-8 text (byte {e.start})") from None
            h.update(f.name.encode() + b"\0" + text.encode())
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                at = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
                raise PlaybookError(f"{f}:{at}: invalid YAML: {getattr(e, 'problem', e)}") from None
            except RecursionError:
                raise PlaybookError(f"{f}: invalid YAML: nested too deeply") from None
            except (ValueError, TypeError) as e:  # a value YAML types but cannot build (2026-13-45)
                raise PlaybookError(f"{f}: invalid YAML value: {e}") from None
            if doc is None:
                continue
            docs.append((str(f), doc))
        if not docs:
            raise PlaybookError(f"{d}: no playbooks (*.yaml) found")
        s = cls.from_docs(docs)
        s.digest = h.hexdigest()[:12]
        return s


def is_valid_id(s: str) -> bool:
    return re.match(_ID, s) is not None
