"""The event printer of `callcue demo`, `play` and `replay`: a call-clock stamp on every line,
and lines in call-time order although the two channels' results arrive slightly out of it."""

from __future__ import annotations

from callcue.clients.printer import EventPrinter, fmt_clock


def tr(ch: str, start: float, end: float, text: str, final: bool = True) -> dict:
    return {"type": "transcript", "channel": ch, "start": start, "end": end, "text": text, "is_final": final}


def test_every_line_is_stamped_and_lines_leave_in_call_time_order() -> None:
    out: list[str] = []
    p = EventPrinter(out.append, show_partials=False, speed=2.0, hold_s=1.5)
    p.started_at = 1000.0
    p.feed(tr("agent", 0.5, 2.0, "thanks for calling"))
    p.feed(tr("customer", 0.2, 1.2, "hello"))  # late: the other channel's recognizer was slower
    assert out == []  # both still inside the 1.5 s hold
    p.feed(tr("customer", 1.0, 3.5, "i want to cancel"))
    p.feed({"type": "hint", "severity": "warning", "title": "Retention", "body": "offer 20%", "emitted_at": 1002.0,
            "suggested_reply": "We can offer 20% off"})  # made 2 s after the start at 2x: call time 4.0
    p.feed(tr("agent", 0.6, 0.9, "partial", final=False))  # partials off: not printed
    assert p.feed({"type": "call_ended", "call_id": "c1", "reason": "stop", "emitted_at": 1003.0}) is True
    stamps = [line.split(" ", 1)[0] for line in out if line[:1].isdigit()]
    assert stamps == ["00:01.2", "00:02.0", "00:03.5", "00:04.0", "00:06.0"], out
    assert "hello" in out[0] and "thanks for calling" in out[1] and "cancel" in out[2]
    assert ">>> HINT [warning] Retention" in out[3] and 'say: "We can offer 20% off"' in out[3]
    assert out[-1].startswith("00:06.0 --- call ended: c1 stop")
    assert all("partial" not in line for line in out)


def test_fmt_clock() -> None:
    assert fmt_clock(0) == "00:00.0" and fmt_clock(65.25) == "01:05.2" and fmt_clock(-3) == "00:00.0"


def test_stamps_never_go_back_and_partials_never_follow_their_final() -> None:
    out: list[str] = []
    p = EventPrinter(out.append, show_partials=True, speed=1.0, hold_s=1.0)
    p.started_at = 1000.0
    p.feed({**tr("customer", 0.0, 1.0, "i want", final=False), "segment_id": 1})
    p.feed({**tr("customer", 0.0, 6.0, "i want to cancel my account", final=False), "segment_id": 1})
    p.feed({**tr("agent", 3.0, 5.0, "thank you for calling"), "segment_id": 1})  # prints the 1.0 partial
    p.feed({**tr("customer", 0.0, 6.5, "I want to cancel my account."), "segment_id": 1})  # drops the held 6.0 partial
    p.feed({**tr("customer", 0.0, 6.2, "i want to cancel my", final=False), "segment_id": 1})  # late: never printed
    p.feed({**tr("agent", 1.0, 2.0, "hello"), "segment_id": 2})  # arrives after 5.0 was printed
    p.feed({"type": "call_ended", "call_id": "c1", "reason": "stop", "emitted_at": 1007.0})
    stamps = [line.split(" ", 1)[0] for line in out if line[:1].isdigit()]
    assert stamps == sorted(stamps), out
    assert not any("i want to cancel my" in line and "partial" in line for line in out), out
    assert sum("partial" in line for line in out) == 1 and any("hello" in line for line in out)
