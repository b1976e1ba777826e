"""Everything a running server shares across calls, built once at startup.

Why one container: the WebSocket endpoints, the REST API and the CLI's in-process replay all
need the same engine, pools, store and hub; passing one object keeps the I/O layers thin and
lets tests build a server with any config.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callcue.auth import Authenticator
from callcue.config import Settings
from callcue.egress.hub import Hub, Principal
from callcue.events import Signal
from callcue.store.calls import CallStore
from callcue.store.db import Database

if TYPE_CHECKING:
    from callcue.asr.base import AsrEngine
    from callcue.pipeline.call import Call
    from callcue.pipeline.manager import CallManager

log = logging.getLogger(__name__)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        cores = os.cpu_count() or 2
        threads = settings.asr.threads or cores
        self.asr_pool = ThreadPoolExecutor(threads, thread_name_prefix="asr")
        self.detect_pool = ThreadPoolExecutor(cores, thread_name_prefix="detect")
        self.hub = Hub()
        self.auth = Authenticator(settings.auth)
        self.engine: AsrEngine | None = None
        self.engine_note = ""
        self.db: Database | None = None
        self.store: CallStore = None  # type: ignore[assignment]
        self.detectors: list[Any] = []
        self.redactor_factory: Any = None
        self.acoustic_factory: Any = None
        self.tickers: list[Any] = []  # (ctx, call_time) -> signals, called once a second per call
        self.decision: Any = None  # the playbook engine, when configured
        self.supervisor_handler: Any = None
        self.hint_policy: Any = None
        self.manager: CallManager = None  # type: ignore[assignment]
        self.started_at = time.time()

    async def startup(self) -> None:
        from callcue.asr.select import load_engine
        from callcue.pipeline.manager import CallManager
        from callcue.understand.suite import build_understanding

        loop = asyncio.get_running_loop()
        url = self.settings.storage.url
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.db = await Database.connect(url)
        self.store = CallStore(self.db)
        await self.store.open()
        self.engine, self.engine_note = await loop.run_in_executor(self.asr_pool, load_engine, self.settings.asr)
        log.info("ASR engine ready: %s", self.engine_note)
        await build_understanding(self)
        from callcue.decide.assembly import build_decisions

        await build_decisions(self)
        self.manager = CallManager(self)

    async def shutdown(self) -> None:
        if self.manager is not None:
            await self.manager.shutdown()
        if self.decision is not None and hasattr(self.decision, "close"):
            await self.decision.close()
        if self.store is not None and self.store._writer is not None:
            await self.store.close()
        if self.db is not None:
            await self.db.close()
        self.asr_pool.shutdown(wait=False, cancel_futures=True)
        self.detect_pool.shutdown(wait=False, cancel_futures=True)

    def extra_routes(self) -> list[Any]:
        """Routes contributed by optional layers (the supervisor API of the decision layer)."""
        return list(getattr(self, "_extra_routes", []))

    # -- per-call wiring ------------------------------------------------------------------
    def make_acoustic_monitor(self, ctx: Any) -> Any:
        return self.acoustic_factory(ctx) if self.acoustic_factory is not None else None

    def deciders_for(self, call: Call) -> list[Any]:
        """Playbooks decide first; a phrase rule's own hint is the fallback for signals no
        playbook acted on, so the agent never gets two cards for one thing."""

        async def decide(sig: Signal) -> list[Any]:
            if self.decision is not None:
                records = await self.decision.on_signal(call, sig)
                if records:
                    return []  # hints and actions went out through the dispatcher
            if self.hint_policy is not None:
                return self.hint_policy.on_signal(sig)
            return []

        return [decide]

    async def on_call_end(self, call_id: str) -> None:
        if self.hint_policy is not None:
            self.hint_policy.forget(call_id)
        if self.decision is not None:
            await self.decision.on_call_end(call_id)

    # -- used by the endpoints --------------------------------------------------------------
    def record_rejection(self, platform: str, call_id: str | None, code: int, reason: str) -> None:
        from callcue import metrics

        metrics.INGRESS_ERRORS.labels(platform, str(code)).inc()
        log.warning("rejected %s frame: %s", platform, reason,
                    extra={"call_id": call_id, "close_code": code, "platform": platform})
        if self.store is not None:
            self.store.rejection(platform, call_id, code, reason)

    def visible_calls(self, principal: Principal) -> list[dict[str, Any]]:
        return [c.info() for c in self.manager.calls.values() if principal.may_see(c.agent_id)]

    async def call_agent(self, call_id: str) -> str | None | bool:
        call = self.manager.get(call_id)
        if call is not None:
            return call.agent_id
        return await self.store.call_agent(call_id)

    async def record_feedback(self, principal: Principal, req: dict[str, Any]) -> dict[str, Any]:
        hint_id = req.get("hint_id")
        action = req.get("action")
        if not isinstance(hint_id, str) or not hint_id:
            return {"type": "error", "code": "bad_request", "message": "feedback needs hint_id"}
        if action not in ("accepted", "dismissed", "corrected"):
            return {"type": "error", "code": "bad_request",
                    "message": "feedback action must be accepted, dismissed or corrected"}
        reason = req.get("reason")
        correction = req.get("correction")
        for name, v in (("reason", reason), ("correction", correction)):
            if v is not None and (not isinstance(v, str) or len(v) > 2000):
                return {"type": "error", "code": "bad_request", "message": f"{name} must be a string of at most 2000 characters"}
        found = await self.store.hint_call(hint_id)
        if found is None:
            return {"type": "error", "code": "unknown_hint", "message": f"no hint {hint_id!r}"}
        call_id, agent_id = found
        if not principal.may_see(agent_id):
            return {"type": "error", "code": "forbidden", "message": f"not allowed to give feedback on {hint_id!r}"}
        await self.store.feedback(hint_id, call_id, principal.user_id, action, reason, correction)
        if self.decision is not None and hasattr(self.decision, "feedback"):
            try:
                await self.decision.feedback(hint_id, principal.user_id, action, reason, correction)
            except Exception:
                log.exception("decision layer failed to take feedback", extra={"call_id": call_id})
        return {"type": "feedback_ack", "hint_id": hint_id, "action": action}
