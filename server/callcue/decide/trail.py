"""The engine's audit trail: every step it takes is an entry first, and a step whose entry
cannot be written is not taken (fail closed), with supervisors told why.

Why one writer: gating, the lifecycle and human control all record steps; the fail-closed
rule, the scrubbing of a number an upstream masker missed and the alert must be the same for
all of them."""

from __future__ import annotations

import logging
import re
from typing import Any

from callcue import metrics
from callcue.audit.entries import SensitiveDataError
from callcue.decide.actions.base import SupervisorSink
from callcue.decide.actions.record import ActionRecord
from callcue.decide.state import AuditSink, AuditUnavailable

log = logging.getLogger(__name__)


class DecisionTrail:
    def __init__(self, audit: AuditSink, alert: SupervisorSink) -> None:
        self.audit = audit
        self._alert = alert

    async def __call__(self, kind: str, *, rec: ActionRecord | None = None, call_id: str | None = None,
                       agent_id: str | None = None, playbook_id: str | None = None,
                       playbook_version: int | str | None = None, action_id: str | None = None,
                       actor: str = "system", payload: dict[str, Any] | None = None) -> None:  # fmt: skip
        if rec is not None:
            call_id, agent_id, action_id = rec.call_id, rec.agent_id, rec.action_id
            playbook_id, playbook_version = rec.playbook_id, rec.playbook_version
        body = _jsonable(payload or {})
        try:
            try:
                await self.audit.append(kind, call_id=call_id, agent_id=agent_id, playbook_id=playbook_id,
                                        playbook_version=playbook_version, action_id=action_id, actor=actor,
                                        payload=body)  # fmt: skip
            except SensitiveDataError:
                # an upstream masker missed a card/account number: keep the step, lose the digits
                await self.audit.append(kind, call_id=call_id, agent_id=agent_id, playbook_id=playbook_id,
                                        playbook_version=playbook_version, action_id=action_id, actor=actor,
                                        payload={**_scrub(body), "scrubbed": True})  # fmt: skip
        except Exception as e:
            # fail closed: the step that needed this entry does not happen; supervisors hear of it
            metrics.AUDIT_FAILURES.labels(kind).inc()
            log.exception("audit append failed for %s (call %s, action %s); holding the step", kind, call_id, action_id)
            try:
                await self._alert({
                    "type": "audit_unavailable", "kind": kind, "call_id": call_id, "action_id": action_id,
                    "playbook_id": playbook_id, "error": f"{type(e).__name__}: {e}"[:300]})  # fmt: skip
            except Exception:
                log.exception("could not alert supervisors that the audit trail is unavailable")
            raise AuditUnavailable(f"audit entry {kind!r} could not be written; the step is held") from e


_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){12,}")


def _scrub(v: Any) -> Any:
    if isinstance(v, str):
        return _DIGIT_RUN.sub("[redacted-digits]", v)
    if isinstance(v, dict):
        return {k: _scrub(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_scrub(x) for x in v]
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)
