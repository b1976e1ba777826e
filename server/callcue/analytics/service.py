"""CX analytics: what the post-call step records per call, and the questions asked across calls.

Why the heavy parts run on an executor: embedding a call's uncovered utterances (a few ms
each) and clustering a period's (HDBSCAN over thousands of 384-d vectors, up to a second or
two) would otherwise hold the event loop every other call runs on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

import numpy as np

from callcue.analytics import reports, topics
from callcue.analytics.facts import call_fact, uncovered_utterances
from callcue.analytics.store import AnalyticsStore, parse_facts

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], np.ndarray]
INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


class AnalyticsError(ValueError):
    """A request analytics cannot answer as asked (bad period, unknown utterance, bad name)."""


class ExampleSink(Protocol):
    async def add_intent_examples(self, examples: list[dict[str, Any]], *, actor: str) -> Any: ...


class Analytics:
    def __init__(self, store: AnalyticsStore, embed: Embed, executor: Executor | None = None, *,
                 repeat_days: float = 7.0, min_cluster_size: int = 5, datasets: ExampleSink | None = None,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store = store
        self._embed = embed
        self._executor = executor
        self.repeat_days = repeat_days
        self.min_cluster_size = min_cluster_size
        self.datasets = datasets
        self.clock = clock
        self.recorded = 0

    async def record_call(self, call_id: str, record: dict[str, Any], summary: dict[str, Any],
                          evaluations: list[dict[str, Any]], audit: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
        """Called by the post-call step once a call's summary and scorecards exist."""
        fact = call_fact(record, summary, evaluations, audit)
        fact["call_id"] = fact.get("call_id") or call_id
        utts = uncovered_utterances(record)
        loop = asyncio.get_running_loop()
        emb = await loop.run_in_executor(self._executor, self._embed, [u["text"] for u in utts]) if utts else np.zeros((0, 384))
        await self.store.put_call(fact, utts, emb)
        self.recorded += 1
        return fact

    # -- questions across calls ----------------------------------------------------------------
    def _period(self, a: dict[str, Any]) -> tuple[float | None, float | None]:
        out: list[float | None] = []
        for k in ("since", "until"):
            v = a.get(k)
            if v in (None, ""):
                out.append(None)
                continue
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                raise AnalyticsError(f"{k} must be a Unix time in seconds") from None
        if a.get("days") not in (None, "") and out[0] is None:
            try:
                days = float(a["days"])
            except (TypeError, ValueError):
                raise AnalyticsError("days must be a number") from None
            out[0] = self.clock() - days * reports.DAY
        return out[0], out[1]

    async def _facts(self, a: dict[str, Any]) -> list[dict[str, Any]]:
        raw = await self.store.facts(*self._period(a))
        return await asyncio.get_running_loop().run_in_executor(self._executor, parse_facts, raw)

    async def _flags(self, facts: list[dict[str, Any]], a: dict[str, Any]) -> dict[str, dict[str, Any]]:
        since, until = self._period(a)
        window = self.repeat_days * reports.DAY
        keys = sorted({f["customer_key"] for f in facts if f.get("customer_key")})
        contacts = await self.store.customer_calls(keys, None if since is None else since - window,
                                                   None if until is None else until + window)  # fmt: skip
        return await self._off_loop(reports.repeat_flags, facts, contacts, self.repeat_days, now=self.clock())

    async def _off_loop(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """A report over tens of thousands of rows is tenths of a second of Python: not on the loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(*args, **kw))

    async def drivers(self, a: dict[str, Any]) -> dict[str, Any]:
        return await self._off_loop(reports.drivers, await self._facts(a), by=str(a.get("by") or "day"))

    async def friction(self, a: dict[str, Any]) -> dict[str, Any]:
        facts = await self._facts(a)
        out = await self._off_loop(reports.friction, facts, await self._flags(facts, a), by=str(a.get("by") or "driver"))
        return {**out, "repeat_days": self.repeat_days}

    async def kpis(self, a: dict[str, Any]) -> dict[str, Any]:
        facts = await self._facts(a)
        out = await self._off_loop(reports.kpis, facts, await self._flags(facts, a), by=str(a.get("by") or "day"))
        return {**out, "repeat_days": self.repeat_days}

    async def topics(self, a: dict[str, Any]) -> dict[str, Any]:
        since, until = self._period(a)
        try:
            mcs = int(a.get("min_cluster_size") or self.min_cluster_size)
        except (TypeError, ValueError):
            raise AnalyticsError("min_cluster_size must be an integer") from None
        if not 2 <= mcs <= 500:
            raise AnalyticsError("min_cluster_size must be in 2..500")
        rows, emb = await self.store.utterances(since, until)
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self._executor, lambda: topics.discover(rows, emb, min_cluster_size=mcs))
        return {"utterances": len(rows), "min_cluster_size": mcs, "topics": [t.to_dict() for t in found]}

    async def make_intent(self, a: dict[str, Any], actor: str) -> dict[str, Any]:
        """A topic's utterances become labelled examples of a (new or existing) intent in a new
        intent dataset version, proposed for review like any other (promote to train on it)."""
        if self.datasets is None:
            raise AnalyticsError("intent datasets are not available on this server")
        name = str(a.get("intent") or "").strip()
        if not INTENT_NAME.match(name):
            raise AnalyticsError("intent must be snake_case: a lowercase letter, then letters, digits or _ (2-64)")
        ids = a.get("utterance_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise AnalyticsError("utterance_ids must be a non-empty list of integers (a topic's utterance_ids)")
        found = await self.store.utterance_texts(sorted(set(ids)))
        missing = sorted(set(ids) - {int(r["id"]) for r in found})
        if missing:
            raise AnalyticsError(f"no uncovered utterances with ids {missing[:10]}")
        taken = [r["id"] for r in found if r["adopted_intent"]]
        if taken:
            raise AnalyticsError(f"utterances {taken[:10]} were already made into an intent")
        source = f"topic:{str(a.get('topic_id') or '')[:40]}".rstrip(":")
        version = await self.datasets.add_intent_examples(
            [{"text": r["text"], "intent": name, "source": source, "call_id": r["call_id"]} for r in found], actor=actor)
        await self.store.adopt([int(r["id"]) for r in found], name)
        return {"intent": name, "examples": len(found), "dataset": version.to_dict() if version is not None else None}
