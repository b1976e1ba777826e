"""Human-readable rendering of the agent event stream, for `demo`, `play` and `replay`.

Every line starts with where in the call it happened (mm:ss.s on the call's clock), and lines
come out in that order: the two channels' recognizers and the detectors finish at slightly
different moments, so lines wait in a short buffer (`hold_s` of call time) and leave it
sorted; the call's end flushes it. A line that arrives after later ones were printed is
stamped with the last printed time, so stamps never go backwards; a partial that arrives after
its segment's final (or is still held when the final comes) is not printed: the final says it.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any


def fmt_clock(t: float) -> str:
    t = max(0.0, t)
    return f"{int(t // 60):02d}:{t % 60:04.1f}"


def format_event(ev: dict[str, Any], show_partials: bool = True) -> str | None:
    kind = ev.get("type")
    if kind == "transcript":
        if not ev["is_final"] and not show_partials:
            return None
        tag = "final  " if ev["is_final"] else "partial"
        return f"[{ev['start']:7.2f}-{ev['end']:7.2f}s] {ev['channel']:<8} {tag} {ev['text']}"
    if kind == "signal":
        ev_ = ev.get("evidence") or {}
        extra = " (retracted)" if ev.get("retracted") else ""
        return (f"{'':19} SIGNAL  {ev['kind']}/{ev['name']} conf={ev['confidence']:.2f} "
                f"by {ev['detector']}@{ev['detector_version']} on {ev_.get('channel', '-')}{extra}")
    if kind == "hint" and (ev.get("attrs") or {}).get("card") == "knowledge":
        a = ev["attrs"]
        where = f" / {a['section']}" if a.get("section") else ""
        conf = f" ({100 * a['confidence']:.0f}%)" if isinstance(a.get("confidence"), (int, float)) else ""
        return f"{'':19} >>> KB {ev['title']}{where}{conf}: {ev['body']}"
    if kind == "hint":
        lines = [f"{'':19} >>> HINT [{ev['severity']}] {ev['title']}: {ev['body']}"]
        if ev.get("suggested_reply"):
            lines.append(f"{'':19}     say: \"{ev['suggested_reply']}\"")
        return "\n".join(lines)
    if kind in ("call_started", "call_ended"):
        return f"--- {kind.replace('_', ' ')}: {ev.get('call_id')} {ev.get('reason', '')}".rstrip()
    if kind == "action_update":
        return (f"{'':19} ... action {ev.get('playbook_id')}/{ev.get('kind')}: "
                f"{ev.get('from')} -> {ev.get('state')} by {ev.get('actor')}")
    if kind in ("alert", "escalation", "call_control"):
        what = ev.get("title") or ev.get("message") or ev.get("control") or ev.get("queue") or ""
        return f"{'':19} !!! {kind.upper()} {what}".rstrip()
    return None


class EventPrinter:
    """Collects a call's events and prints each, stamped and in call-time order; `feed` says
    when the call ended. `started_at`: wall time the call's audio started (default: when the
    first event came), `speed`: how much faster than real time it is played."""

    def __init__(self, out: Callable[[str], None], show_partials: bool = True, speed: float = 1.0,
                 hold_s: float = 1.5) -> None:  # fmt: skip
        self.out = out
        self.show_partials = show_partials
        self.speed = speed if speed > 0 else 1.0
        self.hold_s = hold_s
        self.started_at: float | None = None
        self.events: list[dict[str, Any]] = []
        self._held: list[tuple[float, int, str, tuple[Any, Any] | None]] = []
        self._order = itertools.count()
        self._latest = 0.0
        self._printed = 0.0  # the last stamp printed: later lines never go below it
        self._finals: set[tuple[Any, Any]] = set()  # (channel, segment) whose final has come

    def call_time(self, ev: dict[str, Any]) -> float:
        """Where in the call `ev` happened: a transcript's audio end, else when it was made."""
        if ev.get("type") == "transcript" and isinstance(ev.get("end"), (int, float)):
            return float(ev["end"])
        evidence = ev.get("evidence") if ev.get("type") == "signal" else None
        if isinstance(evidence, dict) and isinstance(evidence.get("end"), (int, float)):
            return float(evidence["end"])  # a signal happened where its words did
        if self.started_at is None:
            self.started_at = time.time()
        stamp = ev.get("emitted_at")
        made = float(stamp) if isinstance(stamp, (int, float)) else time.time()
        return max(0.0, (made - self.started_at) * self.speed)

    def feed(self, ev: dict[str, Any]) -> bool:
        self.events.append(ev)
        line = format_event(ev, self.show_partials)
        ended = ev.get("type") == "call_ended"
        key = (ev.get("channel"), ev.get("segment_id")) if ev.get("type") == "transcript" else None
        if key is not None and ev.get("is_final"):
            self._finals.add(key)
            self._held = [h for h in self._held if h[3] != key]  # its partials are superseded
            heapq.heapify(self._held)
        elif key is not None and key in self._finals:
            line = None  # a partial after its own final
        if line:
            t = self.call_time(ev) if not ended else max(self._latest, self.call_time(ev))
            self._latest = max(self._latest, t)
            heapq.heappush(self._held, (t, next(self._order), line, key if not ev.get("is_final") else None))
        self._flush(everything=ended)
        return ended

    def _flush(self, everything: bool = False) -> None:
        while self._held and (everything or self._held[0][0] <= self._latest - self.hold_s):
            t, _, line, _key = heapq.heappop(self._held)
            self._printed = max(self._printed, t)
            stamp = f"{fmt_clock(self._printed)} "
            self.out("\n".join(stamp + ln if i == 0 else " " * len(stamp) + ln for i, ln in enumerate(line.split("\n"))))

    def close(self) -> None:
        self._flush(everything=True)
