"""What detector factories may use to build themselves: config and the shared heavy models."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callcue.config import Settings
from callcue.knowledge.checklists import ChecklistMatcher, load_checklists
from callcue.knowledge.replies import ReplyBook, load_replies
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

    def reply_book(self) -> ReplyBook | None:
        """The approved replies ([knowledge] replies_file), when knowledge assist is on."""
        k = self.settings.knowledge
        path = self.settings.resolve(k.replies_file)
        if not k.enabled or not path.exists():
            return None
        version, replies = load_replies(path)
        return ReplyBook(replies, version, self.embed())

    def checklists(self) -> ChecklistMatcher | None:
        """The live checklists ([knowledge] checklists_file), when knowledge assist is on."""
        k = self.settings.knowledge
        path = self.settings.resolve(k.checklists_file)
        if not k.enabled or not path.exists():
            return None
        version, lists = load_checklists(path)
        return ChecklistMatcher(lists, version, self.embed()) if lists else None

    def embed(self) -> EmbedFn:
        """The sentence encoder, loaded once and shared by every detector that matches by meaning."""
        with self._lock:
            if self._embed is None:
                self._embed = default_embed()
            return self._embed
