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


def _classifier(cfg: Any) -> IntentClassifier:
    """Fitting takes seconds; servers in one process (tests, replay) share a fitted model
    per distinct intent config."""
    key = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()
    with _CLASSIFIERS_LOCK:
        if key not in _CLASSIFIERS:
            _CLASSIFIERS[key] = IntentClassifier.from_config(cfg)
        return _CLASSIFIERS[key]


def _load_sync(services: Any) -> dict[str, Any]:
    s = services.settings
    u = s.understanding
    risk_cfg = load_risk_config(s.resolve(u.risks_file))
    phrases = PhraseDetector(load_rules(s.resolve(u.phrases_file)))
    detectors: list[Any] = [phrases]
    if u.intents:
        intents_cfg = load_intents(s.resolve(u.intents_file))
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
