"""The guardrails that hold a matched playbook back: pause switches (global and per call),
cooldown, max per call and de-duplication, with each call's state behind them.

Gate and reserve are one synchronous step (`suppressed`), so two signals arriving together
cannot both slip through a cooldown."""

from __future__ import annotations

from collections.abc import Callable

from callcue.decide.conditions import EvalContext, evaluate_value
from callcue.decide.playbooks import Playbook, PlaybookSet
from callcue.decide.state import CallInfo, CallState


class Switches:
    def __init__(self, playbooks: PlaybookSet, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.calls: dict[str, CallState] = {}
        self.paused: set[str] = {p.id for p in playbooks if not p.enabled}

    # ------------------------------------------------------------------ calls
    def start_call(self, info: CallInfo) -> None:
        if info.started_at is None:
            info.started_at = self.clock()
        st = self.calls.get(info.call_id)
        if st is None:
            self.calls[info.call_id] = CallState(info)
        else:
            st.info = info

    def call(self, info: CallInfo) -> CallState:
        st = self.calls.get(info.call_id)
        if st is None:
            self.start_call(info)
            return self.calls[info.call_id]
        started = st.info.started_at  # metadata (queue transfer, tier) may arrive after the call began
        st.info = info
        if info.started_at is None:
            info.started_at = started
        return st

    def call_state(self, call_id: str) -> CallState:
        """A call's state, created bare when a supervisor pauses a call not seen here yet."""
        return self.calls.setdefault(call_id, CallState(CallInfo(call_id, started_at=self.clock())))

    def end_call(self, call_id: str) -> CallState | None:
        return self.calls.pop(call_id, None)

    # ------------------------------------------------------------------ pauses
    def is_paused(self, playbook_id: str, call_id: str | None = None) -> bool:
        if playbook_id in self.paused:
            return True
        st = self.calls.get(call_id) if call_id else None
        return bool(st and playbook_id in st.paused)

    def set_paused(self, playbook_id: str, paused: bool, call_id: str | None = None) -> None:
        if call_id is None:
            (self.paused.add if paused else self.paused.discard)(playbook_id)
        elif paused:
            self.call_state(call_id).paused.add(playbook_id)
        elif call_id in self.calls:
            self.calls[call_id].paused.discard(playbook_id)

    def paused_calls(self, playbook_id: str) -> list[str]:
        return sorted(c for c, st in self.calls.items() if playbook_id in st.paused)

    # ------------------------------------------------------------------ the gate
    def suppressed(self, pb: Playbook, st: CallState, ctx: EvalContext, now: float) -> str | None:
        """Why the playbook may not fire now, or None after reserving its firing."""
        if pb.id in self.paused:
            return "paused_globally"
        if pb.id in st.paused:
            return "paused_for_call"
        last = st.last_fired.get(pb.id)
        if last is not None and now - last < pb.cooldown_s:
            return f"cooldown ({now - last:.1f}s of {pb.cooldown_s:g}s)"
        if pb.max_per_call is not None and st.fired.get(pb.id, 0) >= pb.max_per_call:
            return f"max_per_call ({pb.max_per_call}) reached"
        key: str | None = None
        if pb.dedupe is not None:
            try:
                key = repr(evaluate_value(pb.dedupe, ctx))
            except Exception as e:
                key = f"<error {type(e).__name__}>"
            if key in st.dedupe.setdefault(pb.id, set()):
                return f"duplicate (key {key})"
        st.last_fired[pb.id] = now
        st.fired[pb.id] = st.fired.get(pb.id, 0) + 1
        if key is not None:
            st.dedupe[pb.id].add(key)
        return None
