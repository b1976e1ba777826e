"""Card-number detection from real spoken digits, through the live channel pipeline.

Why compose from FSDD: nobody publishes recordings of people reading card numbers, but the
Free Spoken Digit Dataset has real speakers saying single digits at telephone rate. Gluing
16 of them (one speaker per card, short pauses between digits, longer ones between groups of
four) gives the shape of a real dictation, including the pauses at which the VAD closes a
segment and the number arrives split across utterances. Each composed call is fed as mu-law
8 kHz (what Twilio sends) into `ChannelPipeline` with the real Whisper engine, and every
transcript (partials too) goes through `Redactor` exactly as in production.

What is measured: recall (a non-retracted `risk/card_number` whose last four match) on
Luhn-valid numbers, false alarms on Luhn-invalid ones, and leaks: any 6+ digit run of the
true number in any string of any emitted transcript or signal, serialized to JSON.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from callcue.events import Signal, Transcript
from callcue.privacy.redactor import Redactor
from callcue.privacy.spoken_numbers import find_digit_runs, luhn_valid, tokenize

FSDD_RATE = 8000
_PREFIXES = ("4", "51", "52", "53", "54", "55", "6011", "37")


def luhn_check_digit(body: str) -> str:
    """The digit that makes `body + digit` pass Luhn."""
    for d in "0123456789":
        if luhn_valid(body + d):
            return d
    raise AssertionError("unreachable: one check digit always exists")


def make_card(rng: random.Random, valid: bool, length: int = 16) -> str:
    """A random card-shaped number; invalid ones differ from a valid one in the check digit."""
    prefix = rng.choice(_PREFIXES)
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - 1 - len(prefix)))
    check = luhn_check_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    number = body + check
    assert luhn_valid(number) == valid
    return number


def _load_digits(data_dir: Path) -> dict[str, dict[str, list[Path]]]:
    """speaker -> digit -> wav paths, from the speech manifest."""
    manifest = data_dir / "speech" / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"speech manifest not found: {manifest}")
    by: dict[str, dict[str, list[Path]]] = {}
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("set") != "fsdd_8k":
            continue
        digit = row["id"].split("_", 1)[0]
        by.setdefault(row["speaker"], {}).setdefault(digit, []).append(data_dir / "speech" / row["wav"])
    if not by:
        raise FileNotFoundError(f"no fsdd_8k rows in {manifest}")
    return by


def _read_trimmed(path: Path) -> np.ndarray:
    """Float samples of one FSDD clip, leading/trailing silence cut, peak-normalised."""
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != FSDD_RATE or w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected 8 kHz 16-bit mono")
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    peak = float(np.max(np.abs(x))) or 1.0
    loud = np.nonzero(np.abs(x) > 0.08 * peak)[0]
    if len(loud):
        margin = int(0.03 * FSDD_RATE)
        x = x[max(0, loud[0] - margin) : loud[-1] + margin]
    return 0.5 * x / peak


@dataclass(slots=True)
class ComposedCard:
    number: str
    valid: bool
    split: bool  # long pauses between groups of four: the VAD cuts the number into utterances
    speaker: str
    pcm8k: bytes  # 16-bit LE mono at 8 kHz


def compose(
    number: str, valid: bool, split: bool, speaker: str, clips: dict[str, list[Path]], rng: random.Random
) -> ComposedCard:
    """Concatenate one speaker's digits with dictation-like pauses and a faint noise floor."""
    parts: list[np.ndarray] = [np.zeros(int(0.5 * FSDD_RATE), np.float32)]
    for i, d in enumerate(number):
        parts.append(_read_trimmed(rng.choice(clips[d])))
        if i == len(number) - 1:
            pause = 0.8
        elif i % 4 == 3:
            pause = rng.uniform(1.3, 1.6) if split else rng.uniform(0.35, 0.5)
        else:
            pause = rng.uniform(0.08, 0.2)
        parts.append(np.zeros(int(pause * FSDD_RATE), np.float32))
    x = np.concatenate(parts)
    x += np.random.default_rng(rng.randrange(2**32)).normal(0, 0.002, len(x)).astype(np.float32)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    return ComposedCard(number, valid, split, speaker, pcm)


# ------------------------------------------------------------------------------ leak check


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)] + [k for k in obj if isinstance(k, str)]
    if isinstance(obj, list | tuple):
        return [s for v in obj for s in _strings(v)]
    return []


def leaked_digits(payload: dict[str, Any], number: str, min_run: int = 6) -> list[str]:
    """Every digit run (written or spoken) in any string of `payload` that contains
    `min_run` consecutive digits of `number`. Numbers (timestamps) are not strings: skipped."""
    needles = {number[i : i + min_run] for i in range(len(number) - min_run + 1)}
    hits: list[str] = []
    for s in _strings(json.loads(json.dumps(payload))):
        runs = [re.sub(r"\D", "", m) for m in re.findall(r"\d(?:[\s\-.,/]*\d)*", s)]
        runs += [r.digits for r in find_digit_runs(tokenize(s))]
        hits += [r for r in runs if any(n in r for n in needles)]
    return hits


def _visible_true_digits(texts: list[str], number: str) -> int:
    """How many digits of the number's positions are readable in `texts` (shorter than the
    6-digit leak threshold but still more than "last four" when several groups show)."""
    shown = [False] * len(number)
    for s in texts:
        runs = [re.sub(r"\D", "", m) for m in re.findall(r"\d(?:[\s\-.,/]*\d)*", s)]
        runs += [r.digits for r in find_digit_runs(tokenize(s))]
        for r in runs:
            if len(r) < 3:
                continue  # "2" or "12" says nothing about which digits of the number were shown
            for i in range(len(number) - len(r) + 1):
                if number[i : i + len(r)] == r:
                    shown[i : i + len(r)] = [True] * len(r)
    return sum(shown)


# ------------------------------------------------------------------------------ one call


@dataclass(slots=True)
class CallResult:
    valid: bool
    split: bool
    detected: bool  # a non-retracted card signal with the right last four
    wrong_last4: int  # card signals whose last four do not match the true number
    on_partial: bool  # the first matching signal came from a partial
    retracted: int
    asr_exact: bool  # the digits of the raw finals, concatenated, are exactly the true number
    finals: int
    partials: int
    leaks: list[str] = field(default_factory=list)
    leak_samples: list[str] = field(default_factory=list)  # the strings that leaked
    #: digits of the true number readable anywhere in the masked finals (4 = just the last four)
    visible_true_digits: int = 0
    masked_finals: list[str] = field(default_factory=list)
    decode_s: float = 0.0


async def _run_call(card: ComposedCard, engine: Any, executor: ThreadPoolExecutor, call_id: str) -> CallResult:
    from callcue.audio.codecs import encode
    from callcue.config import PipelineConfig, VadConfig
    from callcue.pipeline.channel import ChannelPipeline

    redactor = Redactor(call_id)
    outputs: list[dict[str, Any]] = []
    signals: list[Signal] = []
    raw_final_digits: list[str] = []
    counts = {"final": 0, "partial": 0}
    masked_finals: list[str] = []

    async def emit(t: Transcript) -> None:
        if t.is_final:
            # raw digits stay in this local list for the ASR-accuracy figure; never output
            raw_final_digits.append("".join(r.digits for r in find_digit_runs(tokenize(t.text))))
        masked, sigs = redactor.redact(t)
        counts["final" if t.is_final else "partial"] += 1
        outputs.append(masked.to_dict())
        if masked.is_final:
            masked_finals.append(masked.text)
        for s in sigs:
            outputs.append(s.to_dict())
            signals.append(s)

    pipe = ChannelPipeline(
        call_id=call_id,
        channel="customer",
        encoding="PCMU",
        sample_rate=FSDD_RATE,
        engine=engine,
        executor=executor,
        vad_cfg=VadConfig(),
        # offline feed: allow every partial (no shedding) and the whole call in the queue
        pipe_cfg=PipelineConfig(queue_max_seconds=600, shed_backlog_seconds=60),
        emit=emit,
    )
    t0 = time.perf_counter()
    pipe.start()
    frame = 160 * 2  # 20 ms of 8 kHz 16-bit
    for i in range(0, len(card.pcm8k), frame):
        await pipe.feed(encode("PCMU", card.pcm8k[i : i + frame]))
    await pipe.finish()
    decode_s = time.perf_counter() - t0

    cards = [s for s in signals if s.name == "card_number"]
    # a retraction is a copy of the partial's signal (same signal_id) with retracted=True
    withdrawn = {s.signal_id for s in cards if s.retracted}
    live = [s for s in cards if not s.retracted and s.signal_id not in withdrawn]
    matching = [s for s in live if s.attrs.get("last4") == card.number[-4:]]
    leaks, leak_samples = [], []
    for o in outputs:
        hits = leaked_digits(o, card.number)
        if hits:
            leaks += hits
            leak_samples.append(json.dumps({k: o.get(k) for k in ("type", "is_final", "text", "attrs") if k in o}))
    return CallResult(
        valid=card.valid,
        split=card.split,
        detected=bool(matching),
        wrong_last4=len(live) - len(matching),
        on_partial=bool(matching) and not matching[0].evidence.is_final if matching and matching[0].evidence else False,
        retracted=sum(1 for s in cards if s.retracted),
        asr_exact="".join(raw_final_digits) == card.number,
        finals=counts["final"],
        partials=counts["partial"],
        leaks=leaks,
        leak_samples=leak_samples,
        visible_true_digits=_visible_true_digits(masked_finals, card.number),
        masked_finals=masked_finals,
        decode_s=decode_s,
    )


def _default_engine(threads: int, partial_interval_s: float) -> Any:
    from callcue.asr.whisper_engine import WhisperEngine, WhisperSettings

    return WhisperEngine(threads=threads, settings=WhisperSettings(partial_interval_s=partial_interval_s))


def run_cards_eval(
    data_dir: str | Path,
    n: int = 20,
    seed: int = 0,
    *,
    threads: int = 1,
    partial_interval_s: float = 0.8,
    engine: Any | None = None,
) -> dict[str, Any]:
    """Compose `n` spoken card numbers (half Luhn-valid, half split across utterances),
    decode them through the live pipeline with real Whisper, redact, and score.

    Blocking (runs its own event loop); `engine` lets a caller reuse a loaded AsrEngine.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    data_dir = Path(data_dir)
    speakers = _load_digits(data_dir)
    rng = random.Random(seed)
    cards: list[ComposedCard] = []
    for i in range(n):
        valid = i % 2 == 0
        split = (i // 2) % 2 == 1
        spk = rng.choice(sorted(speakers))
        cards.append(compose(make_card(rng, valid), valid, split, spk, speakers[spk], rng))
    eng = engine if engine is not None else _default_engine(threads, partial_interval_s)

    async def _all() -> list[CallResult]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cards-eval") as ex:
            return [await _run_call(c, eng, ex, f"cards_{seed}_{i}") for i, c in enumerate(cards)]

    t0 = time.perf_counter()
    results = asyncio.run(_all())
    wall = time.perf_counter() - t0
    valid_calls = [r for r in results if r.valid]
    invalid_calls = [r for r in results if not r.valid]
    audio_s = sum(len(c.pcm8k) / (2 * FSDD_RATE) for c in cards)

    def _ratio(a: int, b: int) -> float | None:
        return round(a / b, 3) if b else None

    return {
        "n": n,
        "seed": seed,
        "engine": getattr(eng, "model_name", "?"),
        "valid": len(valid_calls),
        "invalid": len(invalid_calls),
        "recall": _ratio(sum(r.detected for r in valid_calls), len(valid_calls)),
        "recall_single_utterance": _ratio(
            sum(r.detected for r in valid_calls if not r.split), sum(not r.split for r in valid_calls)
        ),
        "recall_split": _ratio(sum(r.detected for r in valid_calls if r.split), sum(r.split for r in valid_calls)),
        "recall_given_asr_exact": _ratio(
            sum(r.detected for r in valid_calls if r.asr_exact), sum(r.asr_exact for r in valid_calls)
        ),
        "asr_exact_rate": _ratio(sum(r.asr_exact for r in results), len(results)),
        "detected_on_partial": sum(r.on_partial for r in valid_calls),
        "false_alarms": sum(r.detected or r.wrong_last4 > 0 for r in invalid_calls),
        "wrong_last4_signals": sum(r.wrong_last4 for r in results),
        "retracted_signals": sum(r.retracted for r in results),
        "leaks": sum(len(r.leaks) for r in results),
        "calls_with_leaks": sum(bool(r.leaks) for r in results),
        "calls_showing_more_than_last4": sum(r.visible_true_digits > 4 for r in results),
        "max_visible_true_digits": max(r.visible_true_digits for r in results),
        "transcripts": {"finals": sum(r.finals for r in results), "partials": sum(r.partials for r in results)},
        "audio_seconds": round(audio_s, 1),
        "wall_seconds": round(wall, 1),
        "rtf": round(wall / audio_s, 3) if audio_s else None,
        "calls": [
            {
                "valid": r.valid,
                "split": r.split,
                "detected": r.detected,
                "asr_exact": r.asr_exact,
                "finals": r.finals,
                "partials": r.partials,
                "masked_finals": r.masked_finals,
                "leaks": len(r.leaks),
                # synthetic test numbers only: shown so a leak can be fixed, not just counted
                "leak_samples": r.leak_samples[:3],
                "visible_true_digits": r.visible_true_digits,
            }
            for r in results
        ],
    }


def format_report(rep: dict[str, Any]) -> str:
    """A short human summary of `run_cards_eval`'s result."""
    lines = [
        (
            f"cards eval: n={rep['n']} seed={rep['seed']} engine={rep['engine']} "
            f"({rep['audio_seconds']} s audio, {rep['wall_seconds']} s wall, RTF {rep['rtf']})"
        ),
        (
            f"  recall on Luhn-valid      : {rep['recall']}  (single utterance {rep['recall_single_utterance']}, "
            f"split {rep['recall_split']}, given exact ASR {rep['recall_given_asr_exact']})"
        ),
        f"  detected already on partial: {rep['detected_on_partial']}/{rep['valid']}",
        f"  false alarms on invalid   : {rep['false_alarms']}/{rep['invalid']}",
        f"  ASR got all 16 digits      : {rep['asr_exact_rate']}",
        f"  retracted partial signals : {rep['retracted_signals']}",
        f"  LEAKS (6+ true digits)    : {rep['leaks']} in {rep['calls_with_leaks']} calls",
        (
            f"  calls showing > last four : {rep['calls_showing_more_than_last4']} "
            f"(max {rep['max_visible_true_digits']} true digits readable)"
        ),
    ]
    for i, c in enumerate(rep["calls"]):
        kind = "valid  " if c["valid"] else "invalid"
        lines.append(
            f"  #{i:<3} {kind} {'split ' if c['split'] else 'single'} detected={c['detected']!s:<5} "
            f"asr_exact={c['asr_exact']!s:<5} shown={c['visible_true_digits']:<2} finals={c['finals']} partials={c['partials']} | {' / '.join(c['masked_finals'])}"
        )
        for sample in c.get("leak_samples", []):
            lines.append(f"       LEAKED: {sample}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m callcue.evaluation.cards_eval [--n N] [--seed S] [--data DIR]`."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[3].parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the full JSON result")
    a = ap.parse_args(argv)
    rep = run_cards_eval(a.data, n=a.n, seed=a.seed, threads=a.threads)
    print(json.dumps(rep, indent=2) if a.json else format_report(rep))
    return 0 if rep["leaks"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
