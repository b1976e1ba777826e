"""Assembles the understanding layer from config: which detectors run, in which order.

Order: phrase rules and intents first, entities, then the risk detectors with churn last,
because churn reads what the others found in the same transcript update. Redaction is not
in this list: it runs before all of them (pipeline/understanding.py). Heavy models (the
sentence encoder, the intent classifier) are loaded once here, in an executor, and shared
by every call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from typing import Any

from callcue.decide.hints import PhraseHintPolicy
from callcue.logs import set_masker
from callcue.understand.acoustic import AcousticMonitor
from callcue.understand.entities import EntityDetector, load_entities_config
from callcue.understand.intent_detector import IntentDetector
from callcue.understand.intents import IntentClassifier, load_intents
from callcue.understand.phrases import PhraseDetector, load_rules
from callcue.understand.redaction import Redactor, mask_text
from callcue.understand.risks import build_text_detectors, load_risk_config

log = logging.getLogger(__name__)


_CLASSIFIERS: dict[str, IntentClassifier] = {}
_CLASSIFIERS_LOCK = threading.Lock()


def _classifier(cfg: Any, extra: list[dict[str, str]] | None = None) -> IntentClassifier:
    """Fitting takes seconds; servers in one process (tests, replay) share a fitted model
    per distinct intent config and extra labelled data."""
    extra = extra or []
    key = hashlib.sha256((cfg.model_dump_json() + repr(sorted((e["text"], e["intent"]) for e in extra))).encode()).hexdigest()
    with _CLASSIFIERS_LOCK:
        if key not in _CLASSIFIERS:
            _CLASSIFIERS[key] = IntentClassifier.from_config(
                cfg, extra_texts=[e["text"] for e in extra] or None, extra_labels=[e["intent"] for e in extra] or None)
        return _CLASSIFIERS[key]


async def retrain_intents(services: Any) -> str:
    """Train the live intent detector on the config's examples plus the active learned dataset
    version (agents' confirmed utterances), then swap it in for every call at once.

    Called at start-up and whenever a supervisor promotes or rolls back a dataset version, so
    "promote" changes what the running system understands, and "rollback" undoes it.
    """
    detector = next((d for d in services.detectors if isinstance(d, IntentDetector)), None)
    learning = getattr(services, "learning", None)
    if detector is None or learning is None:
        return "no intent detector"
    active = await learning.active_dataset()
    extra = await learning.dataset_examples(active.version) if active is not None else []
    cfg = services.intents_config
    loop = asyncio.get_running_loop()
    detector.classifier = await loop.run_in_executor(services.detect_pool, _classifier, cfg, extra)
    version = f"{cfg.version}+ds{active.version}" if active is not None else cfg.version
    detector.version = f"1+{version}"
    log.info("intent detector trained on %d config intents + %d learned examples (version %s)",
             len(cfg.enabled), len(extra), detector.version)
    return detector.version


def _load_sync(services: Any) -> dict[str, Any]:
    s = services.settings
    u = s.understanding
    risk_cfg = load_risk_config(s.resolve(u.risks_file))
    phrases = PhraseDetector(load_rules(s.resolve(u.phrases_file)))
    detectors: list[Any] = [phrases]
    if u.intents:
        intents_cfg = load_intents(s.resolve(u.intents_file))
        services.intents_config = intents_cfg
        clf = _classifier(intents_cfg)
        detectors.append(IntentDetector(clf, intents_cfg.detector, config_version=intents_cfg.version))
    detectors.append(EntityDetector(load_entities_config(s.resolve(u.entities_file))))
    risk = build_text_detectors(risk_cfg)
    return {"phrases": phrases, "detectors": detectors + risk, "risk_cfg": risk_cfg}


async def build_understanding(services: Any) -> None:
    loop = asyncio.get_running_loop()
    built = await loop.run_in_executor(services.detect_pool, _load_sync, services)
    services.detectors = built["detectors"]
    services.hint_policy = PhraseHintPolicy(built["phrases"])
    services.redactor_factory = Redactor
    set_masker(mask_text)
    risk_cfg = built["risk_cfg"]
    services.acoustic_factory = lambda ctx: AcousticMonitor(
        ctx.call_id, risk_cfg, channels=tuple(ctx.metadata.get("channels", ("customer", "agent"))))
    services.tickers = [d.check_deadlines for d in services.detectors if hasattr(d, "check_deadlines")]
    log.info("understanding ready: %s", ", ".join(f"{d.name}@{d.version}" for d in services.detectors))
