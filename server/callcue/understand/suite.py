"""Assembles the understanding layer from config: the registered detectors, in the order
their declarations give, plus redaction (which runs before all of them, pipeline/stages.py).

Heavy models (the sentence encoder, the intent classifier) are loaded once here, in an
executor, and shared by every call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from callcue.config import Settings
from callcue.knowledge.service import KnowledgeBase
from callcue.privacy.redactor import Redactor
from callcue.understand.base import Detector
from callcue.understand.common import load_risk_config
from callcue.understand.detectors import DETECTORS
from callcue.understand.env import DetectorEnv
from callcue.understand.intent_detector import IntentDetector
from callcue.understand.intents import IntentClassifier, IntentConfig, load_intents
from callcue.understand.phrases import PhraseDetector

log = logging.getLogger(__name__)


_CLASSIFIERS: dict[str, IntentClassifier] = {}
_CLASSIFIERS_LOCK = threading.Lock()


def _classifier(cfg: IntentConfig, extra: list[dict[str, str]] | None = None) -> IntentClassifier:
    """Fitting takes seconds; servers in one process (tests, replay) share a fitted model
    per distinct intent config and extra labelled data."""
    extra = extra or []
    key = hashlib.sha256((cfg.model_dump_json() + repr(sorted((e["text"], e["intent"]) for e in extra))).encode()).hexdigest()
    with _CLASSIFIERS_LOCK:
        if key not in _CLASSIFIERS:
            _CLASSIFIERS[key] = IntentClassifier.from_config(
                cfg, extra_texts=[e["text"] for e in extra] or None, extra_labels=[e["intent"] for e in extra] or None)
        return _CLASSIFIERS[key]


@dataclass(frozen=True)
class Understanding:
    detectors: tuple[Detector, ...]
    phrases: PhraseDetector | None
    intents: IntentDetector | None
    intents_config: IntentConfig | None
    redactor_factory: type[Redactor] = Redactor

    def describe(self) -> str:
        return ", ".join(f"{d.name}@{d.version}" for d in self.detectors)


def _load_sync(settings: Settings, knowledge: KnowledgeBase | None = None) -> Understanding:
    u = settings.understanding
    env = DetectorEnv(settings, load_risk_config(settings.resolve(u.risks_file)), knowledge=knowledge)
    if u.intents:
        env.intents_config = load_intents(settings.resolve(u.intents_file))
        env.classifier = _classifier(env.intents_config)
    detectors = DETECTORS.build(env)
    return Understanding(
        detectors=tuple(detectors),
        phrases=next((d for d in detectors if isinstance(d, PhraseDetector)), None),
        intents=next((d for d in detectors if isinstance(d, IntentDetector)), None),
        intents_config=env.intents_config,
    )


async def build_understanding(settings: Settings, executor: Executor, knowledge: KnowledgeBase | None = None) -> Understanding:
    loop = asyncio.get_running_loop()
    built = await loop.run_in_executor(executor, _load_sync, settings, knowledge)
    log.info("understanding ready: %s", built.describe())
    return built


async def retrain_intents(understanding: Understanding, learning: Any, executor: Executor) -> str:
    """Train the live intent detector on the config's examples plus the active learned dataset
    version (agents' confirmed utterances), then swap it in for every call at once.

    Called at start-up and whenever a supervisor promotes or rolls back a dataset version, so
    "promote" changes what the running system understands, and "rollback" undoes it.
    """
    detector, cfg = understanding.intents, understanding.intents_config
    if detector is None or cfg is None:
        return "no intent detector"
    active = await learning.active_dataset()
    extra = await learning.dataset_examples(active.version) if active is not None else []
    loop = asyncio.get_running_loop()
    detector.classifier = await loop.run_in_executor(executor, _classifier, cfg, extra)
    version = f"{cfg.version}+ds{active.version}" if active is not None else cfg.version
    detector.version = f"1+{version}"
    log.info("intent detector trained on %d config intents + %d learned examples (version %s)",
             len(cfg.enabled), len(extra), detector.version)
    return detector.version
