"""The live knowledge base of a server: the active version's index, swapped whole when a
supervisor promotes or rolls back, and the operations the CLI and the API share.

Why a holder: calls in flight keep the index they started the turn with, and the next turn
sees the new one; nothing is rebuilt under a running search. Building an index embeds the
passages only for a version imported here (vectors are stored with it), and runs in an
executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from callcue.knowledge.gate import Gate
from callcue.knowledge.index import EmbedFn, Filters, KnowledgeIndex, describe
from callcue.knowledge.passages import read_path
from callcue.knowledge.store import KbVersion, KnowledgeError, KnowledgeStore

log = logging.getLogger(__name__)


class KnowledgeBase:
    def __init__(self, store: KnowledgeStore, embed: EmbedFn, executor: Executor, gate: Gate) -> None:
        self.store = store
        self.embed = embed
        self.executor = executor
        self.default_gate = gate
        self.index: KnowledgeIndex | None = None
        self.gate = gate
        #: each passage's standing from agents' verdicts (-1..1; egress/knowledge_api.py
        #: `standing`): a card's score is nudged by a tenth of it
        self.priors: dict[str, float] = {}

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def start(self, articles: Path | None) -> None:
        """Load the active version; with none yet, import `articles` as version 1 first."""
        if await self.store.active_version() is None and articles is not None and articles.exists():
            v = await self.import_path(articles, actor="system", note="shipped articles", promote=True)
            log.info("knowledge: imported %s as KB version %s", articles, v.version if v else "(unchanged)")
            versions = await self.store.versions()
            if v is None and versions and await self.store.active_version() is None:
                # another node imported the same articles a moment before and has not promoted them yet
                await self.store.promote(versions[-1].version, actor="system", reason="shipped articles")
        await self.reload()

    async def reload(self) -> None:
        version = await self.store.active_version()
        if version is None:
            self.index = None
            return
        kb = await self.store.load(version)
        self.index = await self._run(lambda: KnowledgeIndex(kb.passages, kb.vectors, self.embed, kb.version, kb.reranker))
        self.gate = kb.gate or self.default_gate
        log.info("knowledge ready: KB version %d, %d passages, %d entities", version, len(kb.passages),
                 len(self.index.names.entities) if self.index else 0)  # fmt: skip

    async def import_path(self, path: Path, *, actor: str, note: str = "", promote: bool = False) -> KbVersion | None:
        passages = await self._run(read_path, path)
        texts = [f"{p.title}. {p.section}. {p.text}" if p.section else f"{p.title}. {p.text}" for p in passages]
        vectors: np.ndarray = await self._run(self.embed, texts)
        v = await self.store.add_version(passages, vectors, actor=actor, source=str(path), note=note)
        if v is not None and promote:
            await self.store.promote(v.version, actor=actor)
            await self.reload()
        return v

    async def promote(self, version: int, *, actor: str) -> None:
        await self.store.promote(version, actor=actor)
        await self.reload()

    async def rollback(self, *, actor: str) -> int:
        v = await self.store.rollback(actor=actor)
        await self.reload()
        return v

    async def search(self, query: str, *, filters: Filters | None = None, k: int = 5) -> dict[str, Any]:
        """The agent's own search from the desktop: the same index, no conversation topic."""
        index = self.index
        if index is None:
            raise KnowledgeError("no KB version is active (callcue kb import PATH --promote)")
        hits = await self._run(lambda: index.search(query, filters=filters, k=k))
        return {"kb_version": index.version, "query": query, "results": [describe(h) for h in hits]}
