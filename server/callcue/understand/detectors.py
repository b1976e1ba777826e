"""The detectors a server runs. Adding one: a module with a `Detector` subclass that
declares its inputs, what it produces and what it consumes, and one `register` line below.
Order comes from those declarations (understand/registry.py), not from this list.
"""

from __future__ import annotations

from callcue.understand.acoustic import AcousticDetector
from callcue.understand.checklist import ChecklistDetector
from callcue.understand.compliance import ComplianceDetector
from callcue.understand.entities import EntityDetector, load_entities_config
from callcue.understand.env import DetectorEnv
from callcue.understand.intent_detector import IntentDetector
from callcue.understand.knowledge import KnowledgeDetector
from callcue.understand.phrases import PhraseDetector, load_rules
from callcue.understand.qa_live import QaLiveDetector
from callcue.understand.registry import DetectorRegistry
from callcue.understand.replies import RepliesDetector
from callcue.understand.risks import (
    AbuseDetector,
    ChurnDetector,
    CompetitorDetector,
    EscalationDetector,
)
from callcue.understand.sentiment import SentimentDetector


def _intents(env: DetectorEnv) -> IntentDetector | None:
    if env.intents_config is None or env.classifier is None:
        return None
    return IntentDetector(env.classifier, env.intents_config.detector, config_version=env.intents_config.version)


DETECTORS = DetectorRegistry()
DETECTORS.register("phrases", lambda env: PhraseDetector(load_rules(env.path("phrases_file"))))
DETECTORS.register("intent", _intents)
DETECTORS.register("entities", lambda env: EntityDetector(load_entities_config(env.path("entities_file"))))
DETECTORS.register("sentiment", lambda env: SentimentDetector(env.risk_cfg))
DETECTORS.register("abuse", lambda env: AbuseDetector(env.risk_cfg))
DETECTORS.register("escalation", lambda env: EscalationDetector(env.risk_cfg, env.embed()))
DETECTORS.register("competitor", lambda env: CompetitorDetector(env.risk_cfg))
DETECTORS.register("compliance", lambda env: ComplianceDetector(env.risk_cfg, env.embed()))
DETECTORS.register("churn", lambda env: ChurnDetector(env.risk_cfg))
DETECTORS.register("acoustic", lambda env: AcousticDetector(env.risk_cfg))
DETECTORS.register("qa_live", lambda env: QaLiveDetector.from_dir(env.settings.resolve(env.settings.qa.scorecards_dir))
                   if env.settings.qa.enabled else None)
DETECTORS.register("knowledge", lambda env: KnowledgeDetector(env.knowledge) if env.knowledge is not None else None)
DETECTORS.register("replies", lambda env: RepliesDetector(book) if (book := env.reply_book()) is not None else None)
DETECTORS.register("checklist", lambda env: ChecklistDetector(m) if (m := env.checklists()) is not None else None)
