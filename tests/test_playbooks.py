"""Playbook loading and conditions: the shipped set loads, bad ones fail loudly and precisely."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from callcue.decide.actions.base import render
from callcue.decide.conditions import (
    Condition,
    ConditionError,
    EvalContext,
    evaluate,
    signal_view,
)
from callcue.decide.playbooks import PlaybookError, PlaybookSet

REPO = Path(__file__).resolve().parents[1]

GOOD = """
id: refund_check
version: 2
trigger: {kinds: [entity], names: [money]}
when: "signal.attrs.get('amount', 0) > 200 and call.tier != 'vip'"
autonomy: approve
approval: {deadline_s: 30, on_expiry: drop}
actions:
  - {kind: hint, title: "Refund of $attr_amount needs approval"}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_shipped_starter_playbooks_load_and_cover_the_issue() -> None:
    s = PlaybookSet.load(REPO / "config" / "playbooks")
    ids = {p.id for p in s}
    assert {"retention_offer", "secure_payment_handoff", "manager_escalation_request",
            "sustained_anger_escalation", "disclosure_reminder", "refund_approval"} <= ids  # fmt: skip
    assert {p.autonomy for p in s} == {"auto", "suggest", "approve"}
    kinds = {a.kind for p in s for a in p.actions}
    assert kinds == {"hint", "alert", "webhook", "escalate", "call_control", "knowledge"}
    assert len(s.digest) == 12


def test_good_playbook_loads_with_versions(tmp_path: Path) -> None:
    s = PlaybookSet.load(_write(tmp_path, "a.yaml", GOOD))
    pb = s.get("refund_check")
    assert pb.ref == "refund_check@2"
    assert pb.approval is not None and pb.approval.deadline_s == 30
    assert pb.trigger.accepts("entity", "money") and not pb.trigger.accepts("intent", "money")


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (("when: \"signal.attrs", "when: \"__import__('os').system('x') or signal.attrs"), "method '.system()' is not allowed"),
        (("call.tier != 'vip'", "call.tierr != 'vip'"), "unknown field 'call.tierr'"),
        (("signal.attrs.get('amount', 0) > 200", "signal.attrs.get('amount', 0) >"), "syntax error"),
        (("call.tier != 'vip'", "open('/etc/passwd')"), "'open' is not a callable function"),
        (("signal.attrs.get('amount', 0)", "signal.__class__"), "attribute '__class__' is not allowed"),
        (("autonomy: approve", "autonomy: yolo"), "autonomy: Input should be 'auto', 'suggest' or 'approve'"),
        (("approval: {deadline_s: 30, on_expiry: drop}", "approval: {deadline_s: 30, on_expiry: escalate}"),
         "needs 'escalate_to'"),
        (("approval: {deadline_s: 30, on_expiry: drop}", "approval: {deadline_s: -1}"),
         "approval.deadline_s: Input should be greater than 0"),
        (("autonomy: approve", "autonomy: auto"), "'approval' is only meaningful with autonomy 'approve'"),
        (("{kind: hint, title:", "{kind: sms, title:"), "actions.0: Input tag 'sms' found using 'kind' does not match"),
        (("version: 2", "version: 2\nsurprise: 1"), "surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_playbooks_are_rejected_with_file_playbook_and_reason(tmp_path: Path, patch: tuple[str, str], expected: str) -> None:
    old, new = patch
    assert old in GOOD
    _write(tmp_path, "bad.yaml", GOOD.replace(old, new))
    with pytest.raises(PlaybookError) as e:
        PlaybookSet.load(tmp_path)
    msg = str(e.value)
    assert "bad.yaml" in msg and "refund_check" in msg, msg
    assert expected in msg, msg


def test_webhook_needs_http_url_and_suggest_needs_a_hint(tmp_path: Path) -> None:
    _write(tmp_path, "w.yaml", """
        id: hook
        version: 1
        trigger: {kinds: [intent]}
        autonomy: suggest
        actions: [{kind: webhook, url: "ftp://x"}]
    """)
    with pytest.raises(PlaybookError, match=r"w.yaml: playbook 'hook': actions.0.webhook.url: String should match"):
        PlaybookSet.load(tmp_path)


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    _write(tmp_path, "broken.yaml", "id: x\nversion: [1\n")
    with pytest.raises(PlaybookError, match=r"broken.yaml: line \d+ column \d+: invalid YAML"):
        PlaybookSet.load(tmp_path)


def test_duplicate_ids_across_files_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", GOOD)
    _write(tmp_path, "b.yaml", GOOD)
    with pytest.raises(PlaybookError, match=r"b.yaml: playbook 'refund_check': duplicate id \(also in .*a.yaml\)"):
        PlaybookSet.load(tmp_path)


def test_empty_or_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="no playbooks"):
        PlaybookSet.load(tmp_path)
    with pytest.raises(PlaybookError, match="not found"):
        PlaybookSet.load(tmp_path / "nope")


def _ctx(sig: dict, signals: list[dict], call: dict | None = None, now: float = 100.0) -> EvalContext:
    return EvalContext(signal=sig, signals=signals, call=call or {"queue": "billing", "tier": "gold",
                                                                   "seconds_in_call": 42.0}, now_s=now)  # fmt: skip


def test_condition_helpers_window_and_trend() -> None:
    old = signal_view(kind="intent", name="refund", confidence=0.9, attrs={}, at_s=10.0)
    s = [signal_view(kind="sentiment", name="negative", confidence=0.8, attrs={"score": x}, at_s=90.0 + i)
         for i, x in enumerate([0.2, 0.0, -0.3, -0.5])]  # fmt: skip
    money = signal_view(kind="entity", name="money", confidence=0.95, attrs={"amount": 250.0}, at_s=99.0)
    sigs = [old, *s, money]
    c = Condition.compile("has_signal('refund') and not has_signal('refund', within_s=60) and count('negative') == 4")
    assert evaluate(c, _ctx(money, sigs)).matched
    trend = Condition.compile("sentiment_trend(4) < -0.2 and attr('amount') > 200 and call.seconds_in_call > 30")
    out = evaluate(trend, _ctx(money, sigs))
    assert out.matched and out.seen["sentiment_trend(4)"] < -0.2 and out.seen["attr('amount')"] == 250.0
    assert not evaluate(trend, _ctx(money, sigs, {"queue": "q", "tier": None, "seconds_in_call": 5})).matched


def test_runtime_error_is_a_non_match_with_the_reason() -> None:
    c = Condition.compile("signal.attrs.amount > 10")
    sig = signal_view(kind="entity", name="money", confidence=1.0, attrs={})
    out = evaluate(c, _ctx(sig, [sig]))
    assert not out.matched and out.error and "amount" in out.error


def test_conditions_cannot_escape_the_sandbox() -> None:
    for expr in ["().__class__", "signals.__len__()", "[x for x in signals]", "(lambda: 1)()", "import os",
                 "signal.attrs.update({'a': 1})", "call.metadata.clear()"]:  # fmt: skip
        with pytest.raises(ConditionError):
            Condition.compile(expr)


def test_render_fills_known_and_keeps_unknown_placeholders() -> None:
    assert render("Refund of $attr_amount for $call_tier ($nope)", {"attr_amount": 1250.5, "call_tier": "gold"}) == (
        "Refund of 1,250.50 for gold ($nope)"
    )
