"""The one interface every action kind implements, and the registry that names them.

Why a registry instead of `isinstance` chains: a new kind (send an SMS, open a CRM case) is
one file with its spec model and its `run`/`undo`, plus one line in `kinds.py`; playbooks,
the dispatcher and the engine pick it up by its `kind` name without being edited.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from string import Template
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from callcue.events import Hint

if TYPE_CHECKING:
    from callcue.decide.actions.record import ActionRecord
    from callcue.decide.webhooks import WebhookClient

AgentSink = Callable[[str, dict[str, Any]], Awaitable[None]]
SupervisorSink = Callable[[dict[str, Any]], Awaitable[None]]
EscalateHook = Callable[[str, dict[str, Any]], Awaitable[Any]]
CallControlHook = Callable[[str, str], Awaitable[Any]]
HintSink = Callable[[Hint], Awaitable[None]]


class NotUndoable(RuntimeError):
    """The action has no compensating step (e.g. an alert that supervisors already saw)."""


class ActionSpec(BaseModel):
    """What a playbook (or a supervisor's override) says one action is. Subclasses add a
    `kind: Literal[...]` field, which is the name the registry knows them by."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str


class ActionPorts(Protocol):
    """The outside world an action may touch; the dispatcher provides these."""

    publish_to_agent: AgentSink
    publish_to_supervisors: SupervisorSink
    publish_hint: HintSink | None
    webhooks: WebhookClient

    async def escalate(self, call_id: str, target: dict[str, Any]) -> Any: ...
    async def call_control(self, call_id: str, control: str) -> Any: ...


class ActionKind(ABC):
    """How one kind of action is performed and, where it can be, undone."""

    name: ClassVar[str]
    spec: ClassVar[type[ActionSpec]]
    #: shown to the agent as a card the agent can accept: in `suggest` mode such actions
    #: run at once and the others wait for the agent's accept
    presents_to_agent: ClassVar[bool] = False

    @abstractmethod
    async def run(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        """Perform the action; the returned dict is recorded as its result."""

    def card(self, rec: ActionRecord) -> Hint | None:
        """The card the agent will be shown, built before `run` so that its `hint_shown`
        audit entry is written before it can reach a screen (None: this kind shows none)."""
        return None

    async def undo(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        raise NotUndoable(f"action {rec.action_id} ({rec.kind}) has no undo")

    def undoable(self, spec: ActionSpec) -> bool:
        return type(self).undo is not ActionKind.undo


class ActionKindRegistry:
    """Kinds by name; playbooks validate their `actions` against whatever is registered."""

    def __init__(self) -> None:
        self._kinds: dict[str, ActionKind] = {}
        self._adapters: dict[str, TypeAdapter[Any]] = {}

    def register(self, kind: ActionKind) -> ActionKind:
        if kind.name in self._kinds and type(self._kinds[kind.name]) is not type(kind):
            raise ValueError(f"action kind {kind.name!r} is already registered")
        self._kinds[kind.name] = kind
        self._adapters.clear()
        return kind

    def unregister(self, name: str) -> None:
        self._kinds.pop(name, None)
        self._adapters.clear()

    def get(self, name: str) -> ActionKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise KeyError(f"unknown action kind {name!r}; registered: {', '.join(sorted(self._kinds))}") from None

    def names(self) -> list[str]:
        return list(self._kinds)

    def _union(self) -> Any:
        """A discriminated union over the registered specs, so a bad action names its field
        (`actions.0.webhook.url`) exactly as a static union would."""
        specs = tuple(k.spec for k in self._kinds.values())
        union = specs[0] if len(specs) == 1 else Union[specs]  # noqa: UP007 - built at run time
        return Annotated[union, Field(discriminator="kind")]

    def adapter(self) -> TypeAdapter[Any]:
        if "one" not in self._adapters:
            self._adapters["one"] = TypeAdapter(self._union())
        return self._adapters["one"]

    def list_adapter(self) -> TypeAdapter[Any]:
        if "list" not in self._adapters:
            self._adapters["list"] = TypeAdapter(list[self._union()])  # type: ignore[arg-type,misc]
        return self._adapters["list"]

    def parse(self, spec: dict[str, Any] | ActionSpec) -> ActionSpec:
        if isinstance(spec, ActionSpec):
            return spec
        return self.adapter().validate_python(spec)

    def dump(self, spec: ActionSpec) -> dict[str, Any]:
        return spec.model_dump(mode="json")


def render(template: str, values: dict[str, Any]) -> str:
    """Fill `$name` / `${name}` placeholders; `string.Template` because it cannot reach
    attributes or call anything (unlike str.format), and unknown names are left as-is."""
    return Template(template).safe_substitute({k: _fmt(v) for k, v in values.items()})


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if v.is_integer() else f"{v:,.2f}"
    return str(v)


def plain(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool, type(None), dict, list)) else repr(v)
