"""`asr.engine = "off"`: no recognition at all.

For measuring what everything before the recognizer costs (ingress parsing, codecs,
resampling, VAD: `bench/ingress.py`) and for deployments that only record and audit. Calls
start, stream and end as usual; no transcripts, so nothing downstream fires on words.
"""

from __future__ import annotations

from callcue.asr.base import AsrEngine, AsrHypothesis, RecognizerStream


class OffStream(RecognizerStream):
    def begin_segment(self) -> None:
        pass

    def accept(self, pcm: bytes, allow_partial: bool = True) -> list[AsrHypothesis]:
        return []

    def end_segment(self) -> list[AsrHypothesis]:
        return []


class OffEngine(AsrEngine):
    name = "off"
    model_name = "none"

    def open_stream(self) -> RecognizerStream:
        return OffStream()


def _register() -> None:
    from pathlib import Path

    from callcue.asr.registry import EngineChoice, EngineProvider, register

    reason = "Recognition is off (asr.engine = \"off\"): calls stream, nothing is transcribed."
    register(EngineProvider(
        name="off",
        find=lambda cfg, dirs: EngineChoice("off", Path(), reason),
        missing=lambda cfg, dirs: "",
        load=lambda choice, cfg: OffEngine(),
    ))  # fmt: skip


_register()
