"""Synthesize whole test calls (WAV + JSON timeline) from real customer-service dialogues.

Why this exists: the server is judged on *whole calls* streamed in real time, but the only
real call-shaped data we have is text (MultiDoGo, SGD banking, ABCD). Rendering those
dialogues with espeak-ng gives calls whose every word has a known time on the call clock,
so the latency benchmark can measure "word spoken -> word shown" and "trigger said -> hint
shown" without hand labelling.

Word timing comes from espeak-ng itself: we drive libespeak-ng through ctypes in
synchronous mode and read its WORD events (sample-accurate start of every word). A word's
end is the last voiced 10 ms frame before the next word starts (or before the utterance
ends), so ends are measured from the audio, not guessed from character counts.

Everything is deterministic for a given (dialogue, seed, voices, rate): espeak-ng's only
randomness is libc rand(), which we reseed before each utterance, and gaps come from a
seeded numpy Generator.

CLI:  python bench/callgen.py --dialogue ../shared/data/dialogues/sgd_banking/banks1_train.jsonl \
          --pick 0 --out call.wav            # writes call.wav and call.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import re
import sys
import threading
import wave
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soxr

Channel = Literal["customer", "agent"]

TIMELINE_VERSION = 1
WORD_TIMING_METHOD = (
    "espeak-ng WORD events via libespeak-ng synth callback (word starts, sample-accurate); "
    "word end = last voiced 10 ms frame before the next word start"
)
DEFAULT_VOICES: dict[str, str] = {"customer": "en-us+f3", "agent": "en"}  # en = British English
DEFAULT_RATE_WPM: dict[str, int] = {"customer": 165, "agent": 165}
# Between speakers people leave ~0.4-1.2 s; a speaker continuing with a second message
# (ABCD chats split one thought over several turns) pauses less.
SPEAKER_CHANGE_GAP_S = (0.4, 1.2)
SAME_SPEAKER_GAP_S = (0.2, 0.5)
# MultiDoGo's public splits only carry the customer's turns; the agent's replies are kept
# as silence of a plausible length so the customer's timing stays conversational.
MISSING_AGENT_TURN_S = (1.5, 3.0)
LEAD_IN_S = 0.5
TAIL_S = 0.8
PEAK_LEVEL = 0.6  # of full scale: loud enough for the VAD, clear of mu-law clipping

# ---------------------------------------------------------------- espeak-ng via ctypes

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    # mirrors espeak_EVENT in speak_lib.h
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class SynthesisError(RuntimeError):
    """espeak-ng is missing or refused the text/voice."""


class _Espeak:
    """The libespeak-ng instance of a synthesis child process (the library is process-global)."""

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL("libespeak-ng.so.1")
        except OSError as e:  # pragma: no cover - depends on the host
            raise SynthesisError("libespeak-ng.so.1 not found: install the espeak-ng Debian package") from e
        self.sample_rate = int(self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0))
        if self.sample_rate <= 0:
            raise SynthesisError(f"espeak_Initialize failed ({self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int, int]] = []  # (char position 0-based, length, sample)
        self._cb = _SynthCallback(self._on_audio)  # keep a reference: C holds only the pointer
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lock = threading.Lock()
        # espeak-ng jitters pitch with libc rand(), whose state the fork inherits from the
        # parent: reseed so the parent's history cannot leak into the audio.
        self.libc = ctypes.CDLL(None)

    def _on_audio(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_WORD and e.length > 0:
                self._words.append((e.text_position - 1, e.length, e.sample))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate_wpm: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise SynthesisError(f"espeak-ng has no voice {voice!r} (names are the files of `espeak-ng --voices=en`, e.g. en-us, en-gb-x-rp, en, plus an optional +variant such as +f3)")
            self.lib.espeak_SetParameter(_ESPEAK_RATE, int(rate_wpm), 0)
            self._chunks, self._words = [], []
            self.libc.srand(1)
            data = text.encode("utf-8")
            rc = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
            if rc != 0:
                raise SynthesisError(f"espeak_Synth failed ({rc}) for {text[:60]!r}")
            self.lib.espeak_Synchronize()
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return audio.astype(np.int16), list(self._words)


def _synth_in_child(conn: Any, text: str, voice: str, rate_wpm: int) -> None:
    try:
        eng = _Espeak()
        audio, words = eng.synth(text, voice, rate_wpm)
        conn.send(("ok", eng.sample_rate, audio.tobytes(), words))
    except Exception as e:
        conn.send(("err", type(e).__name__, str(e), None))
    finally:
        conn.close()


def espeak_synth(text: str, voice: str, rate_wpm: int) -> tuple[int, np.ndarray, list[tuple[int, int, int]]]:
    """(sample rate, int16 audio, WORD events) for one utterance, from a fresh espeak-ng.

    libespeak-ng carries waveform-generator state (flutter phase, echo buffer) from one
    utterance to the next and cannot be re-initialized in-process, so the same text would
    come out a few samples different depending on what was spoken before. A forked child
    per utterance (~75 ms) makes every utterance reproducible on its own.
    """
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_synth_in_child, args=(send, text, voice, rate_wpm), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(60):
            raise SynthesisError(f"espeak-ng did not answer within 60 s for {text[:60]!r}")
        status, a, b, words = recv.recv()
    except EOFError as e:
        raise SynthesisError(f"espeak-ng worker died (exit code {proc.exitcode}) on {text[:60]!r}") from e
    finally:
        recv.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    if status != "ok":
        raise SynthesisError(b) if a == "SynthesisError" else SynthesisError(f"{a}: {b}")
    return int(a), np.frombuffer(b, dtype=np.int16), list(words)


# ---------------------------------------------------------------- data model


@dataclass(slots=True)
class Turn:
    channel: Channel
    text: str
    # seconds of silence the *absent* other party would have taken before this turn
    missing_before_s: float = 0.0


@dataclass(slots=True)
class TimedWord:
    text: str
    start: float
    end: float


@dataclass(slots=True)
class TimedTurn:
    index: int
    channel: Channel
    text: str
    start: float
    end: float
    words: list[TimedWord] = field(default_factory=list)


@dataclass(slots=True)
class Dialogue:
    dataset: str
    dialogue_id: str
    turns: list[Turn]
    license: str
    file: str = ""


@dataclass(slots=True)
class Utterance:
    """One synthesized turn at the call's sample rate, speech-trimmed."""

    audio: np.ndarray  # float32 mono, [-1, 1]
    words: list[TimedWord]  # times relative to the utterance start


# ---------------------------------------------------------------- dialogue loading

_DATASET_LICENSES = {
    "multidogo": "CDLA-Permissive-1.0",
    "sgd_banking": "CC-BY-SA-4.0",
    "abcd": "MIT",
}


def _clean_text(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", text).strip()


def dialogue_from_record(rec: dict[str, Any], *, file: str = "") -> Dialogue:
    """Recognize the three shapes in ../shared/data/dialogues and map speakers to channels."""
    if "original" in rec and "convo_id" in rec:  # ABCD
        turns = [
            Turn("customer" if t["speaker"] == "customer" else "agent", _clean_text(t["text"]))
            for t in rec["original"]
            if t["speaker"] in ("customer", "agent") and _clean_text(t["text"])
        ]
        return Dialogue("abcd", str(rec["convo_id"]), turns, _DATASET_LICENSES["abcd"], file)
    if "dialogue_id" in rec:  # SGD
        turns = [
            Turn("customer" if t["speaker"] == "user" else "agent", _clean_text(t["text"]))
            for t in rec["turns"]
            if _clean_text(t["text"])
        ]
        return Dialogue("sgd_banking", str(rec["dialogue_id"]), turns, _DATASET_LICENSES["sgd_banking"], file)
    if "conversation_id" in rec:  # MultiDoGo: customer turns only, numbered with gaps
        turns: list[Turn] = []
        prev = -1
        for t in rec["turns"]:
            text = _clean_text(t["text"])
            if not text:
                continue
            skipped = max(0, int(t.get("turn", prev + 1)) - prev - 1)
            turns.append(Turn("customer", text, missing_before_s=float(skipped)))  # count, scaled later
            prev = int(t.get("turn", prev + 1))
        return Dialogue("multidogo", str(rec["conversation_id"]), turns, _DATASET_LICENSES["multidogo"], file)
    raise ValueError(f"unrecognized dialogue record (keys {sorted(rec)[:6]}): expected ABCD, SGD or MultiDoGo")


def load_dialogues(path: str | Path) -> list[Dialogue]:
    """All dialogues in one JSONL file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"dialogue file not found: {p}")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{n}: not JSON: {e}") from e
        out.append(dialogue_from_record(rec, file=str(p)))
    return out


def load_dialogue(path: str | Path, pick: str | int = 0) -> Dialogue:
    """One dialogue by index (int or digit string) or by its id."""
    dialogues = load_dialogues(path)
    if isinstance(pick, int) or (isinstance(pick, str) and pick.isdigit() and not any(d.dialogue_id == pick for d in dialogues)):
        i = int(pick)
        if not 0 <= i < len(dialogues):
            raise IndexError(f"{path} has {len(dialogues)} dialogues; index {i} is out of range")
        return dialogues[i]
    for d in dialogues:
        if d.dialogue_id == pick:
            return d
    raise KeyError(f"no dialogue with id {pick!r} in {path}")


# ---------------------------------------------------------------- synthesis

_FRAME_S = 0.010
_SILENCE_DB = -40.0  # relative to the utterance's loudest frame


def _frame_db(x: np.ndarray, sr: int) -> np.ndarray:
    n = max(1, round(sr * _FRAME_S))
    frames = len(x) // n
    if frames == 0:
        return np.full(1, -120.0)
    f = x[: frames * n].reshape(frames, n).astype(np.float64)
    rms = np.sqrt(np.mean(f * f, axis=1)) + 1e-12
    return 20 * np.log10(rms / rms.max())


def _tokens(text: str) -> list[tuple[int, int, str]]:
    """Whitespace tokens with their character spans: the units the timeline reports."""
    return [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]


def synthesize_utterance(text: str, voice: str, rate_wpm: int, sample_rate: int) -> Utterance:
    """Speak one turn and time its words; leading/trailing silence is trimmed so that the
    turn's start/end on the call clock are the speech bounds."""
    if not text.strip():
        raise ValueError("cannot synthesize empty text")
    if sample_rate not in (8000, 16000):
        raise ValueError(f"sample_rate must be 8000 or 16000 (telephone or wideband), got {sample_rate}")
    espeak_rate, raw, events = espeak_synth(text, voice, rate_wpm)
    if raw.size == 0:
        raise SynthesisError(f"espeak-ng produced no audio for {text[:60]!r}")
    audio = soxr.resample(raw.astype(np.float32) / 32768.0, espeak_rate, sample_rate, quality="HQ")
    audio = np.asarray(audio, dtype=np.float32)
    scale = float(espeak_rate) / sample_rate

    db = _frame_db(audio, sample_rate)
    voiced = np.flatnonzero(db > _SILENCE_DB)
    if voiced.size == 0:
        raise SynthesisError(f"espeak-ng produced only silence for {text[:60]!r}")
    fn = round(sample_rate * _FRAME_S)
    s0, s1 = int(voiced[0] * fn), int((voiced[-1] + 1) * fn)
    trimmed = audio[s0:s1]
    peak = float(np.max(np.abs(trimmed))) or 1.0
    trimmed = trimmed * (PEAK_LEVEL / peak)

    # word starts: first espeak WORD event whose text position falls inside the token
    toks = _tokens(text)
    starts: list[int | None] = [None] * len(toks)
    for pos, _length, sample in events:
        for k, (a, b, _t) in enumerate(toks):
            if a <= pos < b:
                if starts[k] is None:
                    starts[k] = round(sample / scale) - s0
                break
    # tokens espeak skipped (pure punctuation such as "-") inherit the next word's start
    nxt = len(trimmed)
    for k in range(len(toks) - 1, -1, -1):
        if starts[k] is None:
            starts[k] = nxt
        nxt = starts[k]  # type: ignore[assignment]
    starts_c = [min(max(0, int(s)), len(trimmed)) for s in starts]  # type: ignore[arg-type]
    starts_c = list(np.maximum.accumulate(starts_c)) if starts_c else []

    tdb = _frame_db(trimmed, sample_rate)
    words: list[TimedWord] = []
    for k, (_a, _b, tok) in enumerate(toks):
        st = starts_c[k]
        limit = starts_c[k + 1] if k + 1 < len(toks) else len(trimmed)
        f0, f1 = st // fn, max(st // fn + 1, limit // fn)
        seg = tdb[f0:f1]
        v = np.flatnonzero(seg > _SILENCE_DB)
        end = (f0 + int(v[-1]) + 1) * fn if v.size else limit
        end = min(max(end, st), len(trimmed))
        words.append(TimedWord(tok, st / sample_rate, end / sample_rate))
    return Utterance(trimmed.astype(np.float32), words)


# ---------------------------------------------------------------- whole call


@dataclass(slots=True)
class RenderedCall:
    pcm: np.ndarray  # int16, shape (n_samples, n_channels)
    sample_rate: int
    timeline: dict[str, Any]


def render_call(
    dialogue: Dialogue,
    *,
    sample_rate: int = 8000,
    stereo: bool = True,
    voices: dict[str, str] | None = None,
    rate_wpm: dict[str, int] | None = None,
    seed: int = 0,
    max_turns: int | None = None,
) -> RenderedCall:
    """Lay the turns on one call clock: customer left, agent right (or customer-only mono).

    Mono drops the agent's speech but keeps the time the agent would have taken, so the
    customer's words land at the same call-clock times in both layouts.
    """
    voices = {**DEFAULT_VOICES, **(voices or {})}
    rate_wpm = {**DEFAULT_RATE_WPM, **(rate_wpm or {})}
    turns = dialogue.turns[:max_turns] if max_turns else dialogue.turns
    if not turns:
        raise ValueError(f"dialogue {dialogue.dialogue_id} has no speakable turns")
    rng = np.random.default_rng(seed)
    layout: list[Channel] = ["customer", "agent"] if stereo else ["customer"]

    placed: list[tuple[int, Channel, Utterance, TimedTurn]] = []
    t = LEAD_IN_S
    prev_channel: Channel | None = None
    for i, turn in enumerate(turns):
        utt = synthesize_utterance(turn.text, voices[turn.channel], rate_wpm[turn.channel], sample_rate)
        if prev_channel is not None:
            lo, hi = SAME_SPEAKER_GAP_S if turn.channel == prev_channel and not turn.missing_before_s else SPEAKER_CHANGE_GAP_S
            t += float(rng.uniform(lo, hi))
        if turn.missing_before_s:
            # one absent agent turn (+ its two gaps) per missing turn number pair
            for _ in range(max(1, int(turn.missing_before_s) // 2)):
                t += float(rng.uniform(*MISSING_AGENT_TURN_S)) + float(rng.uniform(*SPEAKER_CHANGE_GAP_S))
        start_sample = round(t * sample_rate)
        start = start_sample / sample_rate
        dur = len(utt.audio) / sample_rate
        t0, t1 = round(start, 3), round(start + dur, 3)
        timed = TimedTurn(
            index=i,
            channel=turn.channel,
            text=turn.text,
            start=t0,
            end=t1,
            # rounding each time on its own must not push a word past its turn
            words=[TimedWord(w.text, min(round(start + w.start, 3), t1), min(round(start + w.end, 3), t1)) for w in utt.words],
        )
        placed.append((start_sample, turn.channel, utt, timed))
        t = start + dur
        prev_channel = turn.channel

    total = round((t + TAIL_S) * sample_rate)
    mix = np.zeros((total, len(layout)), dtype=np.float32)
    for start_sample, channel, utt, _timed in placed:
        if channel not in layout:
            continue
        c = layout.index(channel)
        mix[start_sample : start_sample + len(utt.audio), c] += utt.audio
    pcm = np.clip(np.round(mix * 32767.0), -32768, 32767).astype(np.int16)

    timed_turns = [p[3] for p in placed]
    timeline: dict[str, Any] = {
        "version": TIMELINE_VERSION,
        "sample_rate": sample_rate,
        "channels": layout,
        "duration": round(total / sample_rate, 3),
        "source": {
            "dataset": dialogue.dataset,
            "dialogue_id": dialogue.dialogue_id,
            "file": dialogue.file,
            "license": dialogue.license,
        },
        "voices": voices,
        "rate_wpm": rate_wpm,
        "seed": seed,
        "word_timing": WORD_TIMING_METHOD,
        "turns": [asdict(tt) for tt in timed_turns],
    }
    timeline["triggers"] = find_triggers(timeline)
    return RenderedCall(pcm, sample_rate, timeline)


# ---------------------------------------------------------------- triggers

# Phrase rules for "the customer says something the agent must react to now". They are
# deliberately narrow (intent words near their object) so that a trigger is unambiguous
# ground truth for the benchmark, not a classifier.
TRIGGER_RULES: dict[str, str] = {
    "cancel_account": (
        r"\b(cancel|close|closing|cancelling|canceling|terminate|shut down)\b(\s+\w+){0,3}?\s+"
        r"(account|card|subscription|service|membership|plan|policy|contract)s?\b"
    ),
    "escalation": r"\b(speak|talk|speaking|talking)\s+(to|with)\s+(a|an|the|your|my)?\s*(manager|supervisor)\b",
}


def _norm(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def find_triggers(timeline: dict[str, Any], rules: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Customer turns matching a phrase rule, with the utterance end and the matched phrase's end.

    `end` (the utterance end) is what the benchmark measures hint latency from; `phrase_end`
    (end of the last matched word) shows how early a streaming detector *could* fire.
    """
    rules = rules or TRIGGER_RULES
    compiled = {name: re.compile(rx, re.IGNORECASE) for name, rx in rules.items()}
    out: list[dict[str, Any]] = []
    for turn in timeline["turns"]:
        if turn["channel"] != "customer":
            continue
        words = turn["words"]
        joined = " ".join(_norm(w["text"]) for w in words)
        for name, rx in compiled.items():
            m = rx.search(joined)
            if not m:
                continue
            last_word = joined[: m.end()].count(" ")  # index of the word containing the match end
            out.append(
                {
                    "rule": name,
                    "turn_index": turn["index"],
                    "channel": "customer",
                    "text": turn["text"],
                    "phrase": m.group(0),
                    "start": turn["start"],
                    "phrase_end": float(words[min(last_word, len(words) - 1)]["end"]),
                    "end": turn["end"],
                }
            )
    return out


# ---------------------------------------------------------------- output


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV; channel order = columns of `pcm` (customer left, agent right)."""
    if pcm.dtype != np.int16 or pcm.ndim != 2:
        raise ValueError("pcm must be int16 with shape (samples, channels)")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(np.ascontiguousarray(pcm).tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(int16 array shaped (samples, channels), sample rate) of a 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        ch, sr = w.getnchannels(), w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.reshape(-1, ch), sr


def save_call(call: RenderedCall, wav_path: str | Path, json_path: str | Path | None = None) -> Path:
    """Write WAV + timeline (JSON next to the WAV unless told otherwise); returns the JSON path."""
    wav_path = Path(wav_path)
    json_path = Path(json_path) if json_path else wav_path.with_suffix(".json")
    write_wav(wav_path, call.pcm, call.sample_rate)
    json_path.write_text(json.dumps(call.timeline, indent=1) + "\n", encoding="utf-8")
    return json_path


def generate(
    dialogue_file: str | Path,
    pick: str | int,
    out: str | Path,
    **kwargs: Any,
) -> RenderedCall:
    """Load, render and save in one call: what the benchmark and the tests use."""
    call = render_call(load_dialogue(dialogue_file, pick), **kwargs)
    save_call(call, out)
    return call


# The shipped demo call (server/callcue/data/demo_call.*), written for this project so it
# carries no third-party license. The customer says the two things a supervisor must see
# in plain words: they want to cancel, and later they want a manager (a supervisor).
DEMO_DIALOGUE = Dialogue(
    dataset="callcue-demo",
    dialogue_id="demo-bank-cancel-escalate",
    license="Apache-2.0 (written for CallCue)",
    turns=[
        Turn("agent", "Thank you for calling Northwind Bank, this is Daniel. How can I help you today?"),
        Turn("customer", "Hi Daniel. I want to cancel my account."),
        Turn("agent", "I'm sorry to hear that. May I ask why you would like to close it?"),
        Turn("customer", "The monthly fees keep going up, and nobody told me about it."),
        Turn("agent", "I understand. I can see a new service fee from last month. I can waive it for you."),
        Turn("customer", "That does not help me. I have been a customer for ten years and I am really frustrated."),
        Turn("agent", "I completely understand. Let me look at the other options we have."),
        # "speak to a manager" comes out of Whisper tiny.en as "speak to a man in your" on
        # espeak audio at any rate we tried; "talk to a supervisor" survives mu-law + Whisper.
        Turn("customer", "No. I want to talk to a supervisor right now."),
        Turn("agent", "Of course. Please hold while I transfer you to my supervisor."),
        Turn("customer", "Thank you."),
    ],
)
DEMO_WAV = Path(__file__).resolve().parents[1] / "server" / "callcue" / "data" / "demo_call.wav"


def build_demo(out: str | Path = DEMO_WAV, **kwargs: Any) -> RenderedCall:
    """Regenerate the shipped demo call: stereo 8 kHz 16-bit, customer left / agent right."""
    call = render_call(DEMO_DIALOGUE, sample_rate=8000, stereo=True, seed=kwargs.pop("seed", 2), **kwargs)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_call(call, out)
    return call


def _parse_pairs(items: Sequence[str] | None, cast: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or key not in ("customer", "agent"):
            raise argparse.ArgumentTypeError(f"expected customer=VALUE or agent=VALUE, got {item!r}")
        out[key] = cast(value)
    return out


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--dialogue", help="JSONL file from ../shared/data/dialogues (MultiDoGo, SGD, ABCD)")
    src.add_argument("--demo", action="store_true", help="render the built-in demo script (see build_demo)")
    ap.add_argument("--pick", default="0", help="dialogue index in the file or its id (default 0)")
    ap.add_argument("--out", default=None, help="output WAV; the timeline goes next to it as .json (--demo: defaults to the shipped demo_call.wav)")
    ap.add_argument("--rate", type=int, default=8000, choices=(8000, 16000), help="sample rate (default 8000)")
    ap.add_argument("--mono", action="store_true", help="customer-only mono instead of stereo customer/agent")
    ap.add_argument("--voice", action="append", metavar="CHANNEL=VOICE", help="e.g. customer=en-us+f3")
    ap.add_argument("--wpm", action="append", metavar="CHANNEL=WPM", help="e.g. agent=170")
    ap.add_argument("--seed", type=int, default=0, help="seed for the gaps between turns")
    ap.add_argument("--max-turns", type=int, default=None, help="keep only the first N turns")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.demo:
        args.out = args.out or str(DEMO_WAV)
        call = build_demo(args.out, voices=_parse_pairs(args.voice, str), rate_wpm=_parse_pairs(args.wpm, int))
        tl = call.timeline
        print(f"{args.out}: {tl['duration']:.1f} s, triggers: " + ", ".join(f"{t['rule']}@{t['end']:.2f}s" for t in tl["triggers"]))
        return 0
    if not args.out:
        ap.error("--out is required with --dialogue")
    try:
        call = generate(
            args.dialogue,
            args.pick,
            args.out,
            sample_rate=args.rate,
            stereo=not args.mono,
            voices=_parse_pairs(args.voice, str),
            rate_wpm=_parse_pairs(args.wpm, int),
            seed=args.seed,
            max_turns=args.max_turns,
        )
    except (FileNotFoundError, KeyError, IndexError, ValueError, SynthesisError) as e:
        print(f"callgen: {e}", file=sys.stderr)
        return 2
    tl = call.timeline
    print(
        f"{args.out}: {tl['duration']:.1f} s, {len(tl['turns'])} turns, {len(tl['channels'])} ch @ {tl['sample_rate']} Hz, "
        f"{len(tl['triggers'])} trigger(s): " + ", ".join(f"{t['rule']}@{t['end']:.2f}s" for t in tl["triggers"])
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
