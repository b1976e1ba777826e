"""Events that flow through a call's pipeline, downstream of the ingress protocols.

They are plain dataclasses so that every stage (and every test) can build them without a
server, and so that serializers (JSON, msgpack, SQL rows) see one shape. Times are seconds
on the *call's own clock* (0.0 = first audio sample of the call), never wall-clock, so that
transcripts stay true even when silence was never sent to the recognizer.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Channel = Literal["customer", "agent"]
CHANNELS: tuple[Channel, Channel] = ("customer", "agent")


def new_id(prefix: str) -> str:
    """Short random ids: unique enough per deployment, readable in logs."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float  # call clock, seconds
    end: float
    conf: float = 1.0


@dataclass(slots=True)
class Transcript:
    """A partial or final recognition of one speech segment on one channel.

    Partials of a segment share `segment_id` and count up `revision`; the final carries
    `is_final=True`. A later partial replaces an earlier one wholesale.
    """

    call_id: str
    channel: Channel
    segment_id: int
    revision: int
    text: str
    is_final: bool
    start: float
    end: float
    words: list[Word] = field(default_factory=list)
    confidence: float = 0.0
    engine: str = ""
    # a partial's leading words that later partials of the segment keep (0 = any may change)
    stable_words: int = 0
    # wall-clock (time.time()) when the newest audio covered by this result reached the
    # server, and when the result was produced: the difference is recognition latency.
    audio_received_at: float = 0.0
    emitted_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = "transcript"
        d["words"] = [
            {"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3), "conf": round(w.conf, 3)}
            for w in self.words
        ]
        return d


@dataclass(slots=True)
class Evidence:
    """What a signal is based on, so the decision layer and the audit trail can explain it."""

    channel: Channel
    text: str  # already masked
    start: float
    end: float
    segment_id: int
    revision: int
    is_final: bool
    words: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Signal:
    """Something a detector noticed: an intent, a risk, a sentiment, an entity, an acoustic event."""

    call_id: str
    kind: str  # "intent" | "risk" | "sentiment" | "entity" | "acoustic" | "phrase"
    name: str  # e.g. "cancel_account", "card_number"
    confidence: float
    detector: str
    detector_version: str
    evidence: Evidence | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    signal_id: str = field(default_factory=lambda: new_id("sig"))
    emitted_at: float = field(default_factory=time.time)
    # a partial-based signal that the final did not confirm is retracted
    retracted: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = "signal"
        return d


@dataclass(slots=True)
class Hint:
    """Guidance shown to the agent."""

    call_id: str
    title: str
    body: str
    suggested_reply: str = ""
    severity: str = "info"  # info | warning | critical
    source: str = ""  # rule / playbook id@version that raised it
    signal_ids: list[str] = field(default_factory=list)
    hint_id: str = field(default_factory=lambda: new_id("hint"))
    emitted_at: float = field(default_factory=time.time)
    # wall time the evidence audio arrived: emitted_at - this = trigger->hint latency
    audio_received_at: float = 0.0
    attrs: dict[str, Any] = field(default_factory=dict)

    def audit_fields(self) -> dict[str, Any]:
        """What a `hint_shown` audit entry records of the hint, for every path that shows one."""
        out = {"hint_id": self.hint_id, "title": self.title, "severity": self.severity, "source": self.source,
               "signal_ids": list(self.signal_ids)}
        for key in ("card", "kb_version", "passage_id"):  # a knowledge card says what it showed, from which KB
            if self.attrs.get(key) is not None:
                out[key] = self.attrs[key]
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = "hint"
        return d


@dataclass(slots=True)
class AuditIntent:
    """An audit entry a decision needs written before its next step: it travels down the
    call's stream to the Sink, which writes it (and raises if it cannot: fail closed)."""

    call_id: str | None
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CallEvent:
    """An event for whoever watches a call (`audience` "call": its agent and supervisors) or
    for supervisors only (approval requests, action updates, alerts)."""

    call_id: str | None
    event: dict[str, Any]
    audience: str = "call"
