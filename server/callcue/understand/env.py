"""What detector factories may use to build themselves: config and the shared heavy models."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callcue.config import Settings
from callcue.knowledge.service import KnowledgeBase
from callcue.understand.common import EmbedFn, default_embed
from callcue.understand.intents import IntentClassifier, IntentConfig


@dataclass
class DetectorEnv:
    settings: Settings
    risk_cfg: dict[str, Any]
    intents_config: IntentConfig | None = None
    classifier: IntentClassifier | None = None
    #: the live knowledge base (None: knowledge assist is off)
    knowledge: KnowledgeBase | None = None
    _embed: EmbedFn | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def path(self, key: str) -> Path:
        """A file named in `[understanding]`, resolved against the config's folder."""
        return self.settings.resolve(getattr(self.settings.understanding, key))

    def embed(self) -> EmbedFn:
        """The sentence encoder, loaded once and shared by every detector that matches by meaning."""
        with self._lock:
            if self._embed is None:
                self._embed = default_embed()
            return self._embed
