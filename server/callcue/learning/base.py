"""What every part of the learning store shares: one database, one audit log, one clock."""

from __future__ import annotations

import time
from typing import Any

from callcue.audit.log import AuditLog
from callcue.learning.models import MIGRATIONS
from callcue.store.db import Database


class LearningBase:
    """The state the threshold, shadow and dataset parts share; `Learning` combines them."""

    def __init__(self, db: Database, audit: AuditLog, *, clock: Any = time.time) -> None:
        self.db = db
        self.audit = audit
        self.clock = clock
        self._ready = False
        self._active_cache: dict[str, float | None] = {}
        #: awaited after a dataset version is promoted or rolled back: the server retrains
        #: its live intent detector here (understand/suite.py retrain_intents)
        self.on_dataset_change: Any = None

    async def init(self) -> Any:
        if not self._ready:
            await self.audit.init()
            for name, stmts in MIGRATIONS:
                await self.db.migrate(name, stmts)
            self._ready = True
        return self

