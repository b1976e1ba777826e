"""Entity extraction from redacted transcripts written the way Vosk and Whisper write them."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from callcue.events import Transcript, Word
from callcue.privacy.redactor import Redactor
from callcue.understand.base import CallContext
from callcue.understand.entities import (
    DEFAULT_CONFIG,
    EntitiesConfigError,
    EntityDetector,
    load_entities_config,
)

TODAY = dt.date(2026, 11, 24)  # a Tuesday


@pytest.fixture(scope="module")
def det() -> EntityDetector:
    return EntityDetector()


def found(det: EntityDetector, text: str) -> list[tuple[str, str]]:
    return [(m.name, m.normalized) for m in det.extract(text, TODAY)]


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("I was charged two hundred and fifty dollars", "250.00 USD"),
        ("I was charged two hundred fifty dollars", "250.00 USD"),
        ("a refund of $250 please", "250.00 USD"),
        ("a refund of $1,250.50, please.", "1250.50 USD"),
        ("it was 40 bucks", "40.00 USD"),
        ("twenty five dollars and fifty cents", "25.50 USD"),
        ("about 1.5 million dollars", "1500000.00 USD"),
        ("a fee of twelve thousand five hundred dollars", "12500.00 USD"),
        ("fifty pounds", "50.00 GBP"),
        ("$5k", "5000.00 USD"),
    ],
)
def test_money(det: EntityDetector, text: str, normalized: str) -> None:
    assert ("money", normalized) in found(det, text)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("next Tuesday works", "2026-12-01"),
        ("can we do this Friday", "2026-11-27"),
        ("last Monday", "2026-11-23"),
        ("on Thursday", "2026-11-26"),
        ("tomorrow", "2026-11-25"),
        ("the day after tomorrow", "2026-11-26"),
        ("call me on March third", "--03-03"),
        ("March 3rd, 2025", "2025-03-03"),
        ("the third of March twenty twenty five", "2025-03-03"),
        ("the twenty-first of June", "--06-21"),
        ("on 3/15/2025", "2025-03-15"),
        ("it renews May fifth", "--05-05"),
    ],
)
def test_dates(det: EntityDetector, text: str, normalized: str) -> None:
    assert ("date", normalized) in found(det, text)


@pytest.mark.parametrize("text", ["I may call you", "three of them", "February thirtieth", "it's the second time"])
def test_not_dates(det: EntityDetector, text: str) -> None:
    assert not [n for n, _ in found(det, text) if n == "date"]


@pytest.mark.parametrize(
    ("text", "name", "normalized"),
    [
        ("my order number is 12345678", "order_number", "12345678"),
        ("the order number is AB-12345.", "order_number", "AB12345"),
        ("confirmation number four five six seven eight nine", "order_number", "456789"),
        ("my account number is **** 5678", "account_number", "****5678"),
    ],
)
def test_numbers(det: EntityDetector, text: str, name: str, normalized: str) -> None:
    assert (name, normalized) in found(det, text)


@pytest.mark.parametrize(
    ("text", "name", "canonical"),
    [
        ("I am switching to T-Mobile", "competitor", "T-Mobile"),
        ("i am switching to t mobile", "competitor", "T-Mobile"),
        ("we have AT and T at home", "competitor", "AT&T"),
        ("Wells Fargos gave me a better rate", "competitor", "Wells Fargo"),  # ASR slip
        ("I moved my savings over to chase", "competitor", "Chase"),
        ("tell me about the unlimited plus plan", "product", "Unlimited Plus Plan"),
        ("is there a high-yield savings account", "product", "High-Yield Savings"),
        ("I'd like overdraft protektion", "product", "Overdraft Protection"),
    ],
)
def test_names_from_config(det: EntityDetector, text: str, name: str, canonical: str) -> None:
    assert (name, canonical) in found(det, text)


@pytest.mark.parametrize("text", ["let me chase that up", "the city is nice", "I love cricket", "a mint tea"])
def test_names_not_matched_on_ordinary_words(det: EntityDetector, text: str) -> None:
    assert not [n for n, _ in found(det, text) if n in ("competitor", "product")]


def test_detector_signals_with_evidence_and_dedupe(det: EntityDetector) -> None:
    text = "I paid 40 bucks to Verizon on March third"
    words = [Word(w, 2.0 + i * 0.5, 2.4 + i * 0.5) for i, w in enumerate(text.split())]
    ctx = CallContext(call_id="c1")
    t = Transcript(
        "c1",
        "customer",
        4,
        2,
        text,
        True,
        2.0,
        words[-1].end,
        words,
        emitted_at=dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC).timestamp(),
    )
    sigs = det.detect(t, ctx)
    by = {s.name: s for s in sigs}
    assert set(by) == {"money", "competitor", "date"}
    m = by["money"]
    assert (m.kind, m.detector) == ("entity", "entities") and m.detector_version.startswith("1.0+lists")
    assert m.attrs["value"] == "40 bucks" and m.attrs["normalized"] == "40.00 USD" and m.attrs["amount"] == 40.0
    assert m.evidence is not None and (m.evidence.start, m.evidence.end) == (3.0, 3.9)
    assert by["competitor"].attrs["normalized"] == "Verizon"
    assert det.detect(t, ctx) == []  # same segment again (e.g. a re-sent final): no repeat
    partial = Transcript("c1", "customer", 5, 0, text, False, 9.0, 10.0)
    assert det.detect(partial, ctx) == []  # finals only by default
    assert EntityDetector(on_partials=True).detect(partial, CallContext(call_id="c1"))


def test_sensitive_numbers_arrive_masked_after_redaction(det: EntityDetector) -> None:
    """The pipeline order: Redactor first, entities on its output; no raw digits survive."""
    red = Redactor("c1")
    ctx = CallContext(call_id="c1")
    t = Transcript("c1", "customer", 1, 0, "my account number is one two three four five six seven eight", True, 0, 3)
    masked, _ = red.redact(t)
    sigs = det.detect(masked, ctx)
    acct = [s for s in sigs if s.name == "account_number"]
    assert acct and acct[0].attrs["normalized"] == "****5678" and acct[0].attrs["last4"] == "5678"
    blob = json.dumps([s.to_dict() for s in sigs])
    assert "1234" not in re.sub(r"[^0-9]", "", blob.replace("5678", ""))


def test_raw_account_number_is_masked_even_without_redactor(det: EntityDetector) -> None:
    sigs = det.detect(
        Transcript("c1", "customer", 1, 0, "account number 9876543210", True, 0, 1), CallContext(call_id="c1")
    )
    assert [s.attrs["normalized"] for s in sigs] == ["******3210"]
    assert "987654" not in json.dumps([s.to_dict() for s in sigs])


def test_shipped_config_is_valid_and_realistic() -> None:
    cfg = load_entities_config(DEFAULT_CONFIG)
    assert len(cfg.competitors) >= 15 and len(cfg.products) >= 10


def test_bad_config_is_rejected_with_the_key(tmp_path: Path) -> None:
    p = tmp_path / "e.yaml"
    p.write_text("version: '1'\ncompetitors:\n  - name: X\n    aliasses: [x]\n")
    with pytest.raises(EntitiesConfigError, match=r"competitors\.0\.aliasses"):
        load_entities_config(p)
    p.write_text("version: '1'\nfuzzy_threshold: 20\n")
    with pytest.raises(EntitiesConfigError, match="fuzzy_threshold"):
        load_entities_config(p)
    with pytest.raises(EntitiesConfigError, match="cannot read"):
        load_entities_config(tmp_path / "missing.yaml")
