"""After a call ends: every scorecard applied to it, and the results stored.

Why when the call ends and from the store: what was required but never happened (a disclosure
whose deadline the call did not reach, a closing never said) can only be judged once nothing
more can be said, and the store holds the whole call as its agents were shown it (masked),
also for a call that moved between nodes. Scoring is regex and set work over the call's rows,
run on an executor so a 60-minute call does not hold the event loop; `close` waits for the
calls that ended during shutdown, so none goes unscored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from callcue.qa.card import Scorecard
from callcue.qa.scoring import facts_from_record, score_call
from callcue.qa.summary import summarize

log = logging.getLogger(__name__)

ReadRecord = Callable[[str], Awaitable[dict[str, Any]]]
ReadAudit = Callable[[str], Awaitable[list[dict[str, Any]]]]
WriteResult = Callable[[str, dict[str, Any]], Awaitable[None]]
# (call_id, record, summary, evaluations, audit entries)
AfterCall = Callable[[str, dict[str, Any], dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]], Awaitable[Any]]


class PostCallQA:
    def __init__(self, cards: list[Scorecard], read: ReadRecord, write: WriteResult, executor: Executor | None = None,
                 read_audit: ReadAudit | None = None, write_summary: WriteResult | None = None,
                 after: list[AfterCall] | None = None) -> None:  # fmt: skip
        self.cards = cards  # every loaded card, drafts included (review and compare use them)
        # what runs once the scorecards and summary exist (analytics' per-call facts)
        self.after: list[AfterCall] = list(after or [])
        self._read_audit = read_audit
        self._write_summary = write_summary
        self.live = [c for c in cards if not c.draft]
        self._read = read
        self._write = write
        self._executor = executor
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_call: dict[str, asyncio.Task[None]] = {}
        self.scored = 0

    def call_ended(self, call_id: str) -> None:
        if not self.live and self._write_summary is None and not self.after:
            return
        task = asyncio.get_running_loop().create_task(self._score(call_id), name=f"qa-{call_id}")
        self._tasks.add(task)
        self._by_call[call_id] = task
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: self._by_call.pop(call_id, None) if self._by_call.get(call_id) is t else None)

    async def done(self, call_id: str) -> None:
        """Until the call's scorecards and summary are written (at once if none is pending)."""
        task = self._by_call.get(call_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def score(self, call_id: str, record: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Score a stored call with every live card (also for re-scoring)."""
        facts = facts_from_record(record if record is not None else await self._read(call_id))
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(self._executor, score_call, card, facts) for card in self.live]

    async def summary(self, call_id: str, record: dict[str, Any] | None = None,
                      audit: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
        record = record if record is not None else await self._read(call_id)
        if audit is None:
            audit = await self._read_audit(call_id) if self._read_audit is not None else []
        return await asyncio.get_running_loop().run_in_executor(self._executor, summarize, facts_from_record(record), audit)

    async def _score(self, call_id: str) -> None:
        """Each part fails alone: a broken card still leaves the summary and the analytics row."""
        try:
            record = await self._read(call_id)
            audit = await self._read_audit(call_id) if self._read_audit is not None else []
        except Exception:
            log.exception("post-call work could not read the call", extra={"call_id": call_id})
            return
        results: list[dict[str, Any]] = []
        try:
            for result in await self.score(call_id, record):
                await self._write(call_id, result)
                results.append(result)
                self.scored += 1
        except Exception:
            log.exception("post-call QA failed", extra={"call_id": call_id})
        summary: dict[str, Any] = {}
        try:
            summary = await self.summary(call_id, record, audit)
            if self._write_summary is not None:
                await self._write_summary(call_id, summary)
        except Exception:
            log.exception("post-call summary failed", extra={"call_id": call_id})
        for fn in self.after:
            try:
                await fn(call_id, record, summary, results, audit)
            except Exception:
                log.exception("post-call step failed", extra={"call_id": call_id, "step": getattr(fn, "__qualname__", "?")})

    async def close(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
