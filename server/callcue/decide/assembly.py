"""Builds the decision layer for a running server and connects it to storage and clients.

Why here and not in the engine: the engine is I/O-free and tested alone; this module is the
one place that knows the server's hub, store and auth, so swapping any of them touches only
these lines.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from callcue import metrics
from callcue.audit.kpis import kpis
from callcue.audit.log import AuditLog
from callcue.decide.actions.dispatcher import ActionDispatcher
from callcue.decide.engine import DecisionEngine
from callcue.decide.playbooks import PlaybookSet
from callcue.egress.supervisor_api import SupervisorCommands, routes
from callcue.events import Hint
from callcue.learning.store import Learning

log = logging.getLogger(__name__)


async def build_decisions(services: Any) -> None:
    s = services.settings
    db = services.db
    audit = AuditLog(db)
    await audit.init()
    learning = Learning(db, audit)
    await learning.init()
    playbooks = PlaybookSet.load(s.resolve(s.decision.playbooks_dir))

    async def to_agent(call_id: str, event: dict[str, Any]) -> None:
        services.hub.publish(call_id, event)

    async def to_supervisors(event: dict[str, Any]) -> None:
        services.hub.publish_supervisors(event)

    async def hint_out(h: Hint) -> None:
        # the same path as phrase hints: stored (so feedback finds it), timed, fanned out
        if not h.audio_received_at:
            call = services.manager.get(h.call_id) if services.manager else None
            h.audio_received_at = call.latest_audio if call is not None else 0.0
        services.store.hint(h)
        services.hub.publish(h.call_id, h.to_dict())
        if h.audio_received_at:
            metrics.STAGE_LATENCY.labels("hint").observe(max(0.0, time.time() - h.audio_received_at))

    async def escalate(call_id: str, target: dict[str, Any]) -> dict[str, Any]:
        log.info("escalation", extra={"call_id": call_id, "queue": target.get("queue"), "role": target.get("role")})
        return {"notified": "supervisors"}

    async def call_control(call_id: str, control: str) -> dict[str, Any]:
        if control.endswith("_transcript_storage") or control.endswith("_recording"):
            services.store.pause_storage(call_id, control.startswith("pause_"))
        return {"applied": control}

    dispatcher = ActionDispatcher(publish_to_agent=to_agent, publish_to_supervisors=to_supervisors,
                                  publish_hint=hint_out, escalate=escalate, call_control=call_control)
    engine = DecisionEngine(playbooks, audit, dispatcher, learning=learning)
    await engine.restore()

    async def kpis_fn(by: str = "playbook", since: float | None = None, until: float | None = None) -> list[dict]:
        return await kpis(db, by=by, since=since, until=until)

    commands = SupervisorCommands(engine, audit, kpis_fn, learning=learning)
    services.decision = engine
    services.audit = audit
    services.learning = learning
    services.supervisor_handler = commands.handle_supervisor_message
    services._extra_routes = routes(engine, audit, kpis_fn,
                                    lambda req: services.auth.from_headers(req.headers, req.query_params),
                                    commands)
    from callcue.understand.suite import retrain_intents

    async def retrain() -> None:
        await retrain_intents(services)

    learning.on_dataset_change = retrain
    if await learning.active_dataset() is not None:
        await retrain()
    log.info("decision layer ready: %d playbooks (%s)", len(list(playbooks)), playbooks.digest[:12])
