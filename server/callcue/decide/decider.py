"""What the pipeline's Decide stage calls: playbooks first, phrase hints as the fallback.

Why one object: a phrase rule's own hint is shown only for signals no playbook acted on, so
the agent never gets two cards for one thing; both halves forget a call when it ends.
"""

from __future__ import annotations

from callcue.decide.engine import DecisionEngine
from callcue.decide.hints import PhraseHintPolicy
from callcue.decide.state import CallInfo
from callcue.events import AuditIntent, Hint, Signal


class PlaybookDecider:
    def __init__(self, engine: DecisionEngine | None, fallback: PhraseHintPolicy | None) -> None:
        self.engine = engine
        self.fallback = fallback

    async def decide(self, call: CallInfo, signal: Signal) -> list[AuditIntent | Hint]:
        if self.engine is not None:
            records = await self.engine.on_signal(call, signal)
            if records:
                return []  # its hints and actions were emitted into the call's stream as they happened
        out: list[AuditIntent | Hint] = []
        for h in self.fallback.on_signal(signal) if self.fallback is not None else []:
            # the same order as a playbook's hint: its entry first, then the hint
            out.append(AuditIntent(h.call_id, "hint_shown", {"call_id": h.call_id, "agent_id": call.agent_id,
                                                             "playbook_id": h.source, "payload": h.audit_fields()}))  # fmt: skip
            out.append(h)
        return out

    async def call_ended(self, call_id: str) -> None:
        if self.fallback is not None:
            self.fallback.forget(call_id)
        if self.engine is not None:
            await self.engine.on_call_end(call_id)
