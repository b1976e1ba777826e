"""Assembles the understanding layer from config: which detectors run, in which order.

Order matters only for readability of the event stream; every detector sees every
transcript update, and the redactor runs before all of them (pipeline/understanding.py).
"""

from __future__ import annotations

import logging
from typing import Any

from callcue.decide.hints import PhraseHintPolicy
from callcue.understand.phrases import PhraseDetector, load_rules

log = logging.getLogger(__name__)


async def build_understanding(services: Any) -> None:
    s = services.settings
    phrases = PhraseDetector(load_rules(s.resolve(s.understanding.phrases_file)))
    services.detectors = [phrases]
    services.hint_policy = PhraseHintPolicy(phrases)
