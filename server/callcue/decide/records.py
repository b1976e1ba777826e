"""The action records the engine holds, grouped by firing, and the hint each one showed.

Why its own object: gating creates firings, the lifecycle moves them, human control looks
them up and a finished call drops them; one owner keeps the three indexes (records, firings,
hints) consistent instead of five classes editing three shared dicts."""

from __future__ import annotations

from collections.abc import Iterator

from callcue.decide.actions.record import ActionRecord
from callcue.decide.state import InvalidTransition, UnknownAction


class ActionBook:
    def __init__(self) -> None:
        self._actions: dict[str, ActionRecord] = {}
        self._firings: dict[str, list[str]] = {}
        self._by_hint: dict[str, str] = {}  # hint_id -> firing_id

    def __contains__(self, action_id: object) -> bool:
        return action_id in self._actions

    def __len__(self) -> int:
        return len(self._actions)

    def get(self, action_id: str) -> ActionRecord:
        try:
            return self._actions[action_id]
        except KeyError:
            raise UnknownAction(f"unknown action {action_id!r}") from None

    def select(self, *, state: str | None = None, call_id: str | None = None,
               playbook_id: str | None = None) -> list[ActionRecord]:  # fmt: skip
        return [r for r in self._actions.values()
                if (state is None or r.state == state) and (call_id is None or r.call_id == call_id)
                and (playbook_id is None or r.playbook_id == playbook_id)]  # fmt: skip

    def firing(self, firing_id: str) -> list[ActionRecord]:
        return [self._actions[a] for a in self._firings.get(firing_id, [])]

    def pending_group(self, action_id: str, state: str) -> list[ActionRecord]:
        """The records of the action's firing still in `state` (approvals act on a firing)."""
        rec = self.get(action_id)
        if rec.state != state:
            raise InvalidTransition(f"action {action_id} is {rec.state}, not {state}")
        return [r for r in self.firing(rec.firing_id) if r.state == state]

    def add(self, recs: list[ActionRecord]) -> None:
        """A new firing, or records joining the firing of the first (an escalation)."""
        for r in recs:
            self._actions[r.action_id] = r
            self._firings.setdefault(r.firing_id, []).append(r.action_id)

    def drop(self, recs: list[ActionRecord]) -> None:
        for r in recs:
            self._actions.pop(r.action_id, None)
            self._firings.pop(r.firing_id, None)
            if r.hint_id:
                self._by_hint.pop(r.hint_id, None)

    def link_hint(self, hint_id: str, firing_id: str) -> None:
        self._by_hint.setdefault(hint_id, firing_id)

    def by_hint(self, hint_id: str) -> list[ActionRecord]:
        fid = self._by_hint.get(hint_id)
        return self.firing(fid) if fid else []

    def firings_of(self, call_id: str) -> Iterator[str]:
        """Firing ids of a call (a snapshot: callers may drop while iterating)."""
        yield from [f for f, ids in self._firings.items() if ids and self._actions[ids[0]].call_id == call_id]

    def forget_finished(self, call_id: str) -> None:
        """Drop finished records of an ended call (the audit log keeps their story); keep the
        ones a supervisor may still act on: in flight, or executed with an undo."""
        for fid in self.firings_of(call_id):
            recs = self.firing(fid)
            if any(
                r.state == "dispatched" or (r.state == "succeeded" and r.undoable and not r.presents_to_agent) for r in recs
            ):
                continue
            self.drop(recs)
