"""The redactor as a detector, for pipelines that only know detectors (evaluations, tests).

The production pipeline calls `privacy.redactor.Redactor.redact` itself, before any other
stage; this wrapper keeps one Redactor per call in `ctx.state` and returns its signals.
"""

from __future__ import annotations

from callcue.events import Signal, Transcript
from callcue.privacy.redactor import DETECTOR_NAME, DETECTOR_VERSION, Redactor
from callcue.understand.base import CallContext, Detector


class RedactionDetector(Detector):
    name = DETECTOR_NAME
    version = DETECTOR_VERSION

    def detect(self, t: Transcript, ctx: CallContext) -> list[Signal]:
        red = ctx.state.get(self.name)
        if not isinstance(red, Redactor):
            red = Redactor(ctx.call_id)
            ctx.state[self.name] = red
        return red.redact(t)[1]
