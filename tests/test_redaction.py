"""Spoken-number normalisation and redaction, on strings shaped the way Vosk and Whisper write them."""

from __future__ import annotations

import dataclasses
import json
import random
import re

import pytest

from callcue.events import Signal, Transcript, Word
from callcue.privacy.masking import card_brand, mask_digits, mask_text, ssn_plausible
from callcue.privacy.redactor import DETECTOR_NAME, DETECTOR_VERSION, Redactor
from callcue.privacy.spoken_numbers import digits_in, luhn_valid, parse_cardinal
from callcue.understand.base import CallContext
from callcue.understand.redaction import RedactionDetector

VISA = "4111111111111111"
MC = "5500000000000004"
AMEX = "378282246310005"
DISCOVER = "6011000990139424"

_WORD = {
    "0": "zero",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
    "9": "nine",
}


def words_of(text: str, start: float = 0.0, step: float = 0.4) -> list[Word]:
    """Word timings the way engines give them: one per token, evenly spaced."""
    return [Word(w, start + i * step, start + i * step + 0.3, 0.9) for i, w in enumerate(text.split())]


def tr(
    text: str,
    seg: int = 1,
    *,
    channel: str = "customer",
    final: bool = True,
    start: float = 0.0,
    rev: int = 0,
    with_words: bool = True,
) -> Transcript:
    words = words_of(text, start) if with_words else []
    end = words[-1].end if words else start + 1.0
    return Transcript("call1", channel, seg, rev, text, final, start, end, words)  # type: ignore[arg-type]


#: random identifiers (uuid hex) that may contain any five digits by chance; never text
_RANDOM_IDS = re.compile(r"^(sig|hint|act|fire|call)_[0-9a-f]{16,32}$")


def strings_of(obj: object) -> list[str]:
    """Every string anywhere in a returned object, its dataclass fields and its JSON form
    (except generated random ids, whose hex digits match a card's by chance)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = strings_of(dataclasses.asdict(obj))
        if hasattr(obj, "to_dict"):
            out += strings_of(json.loads(json.dumps(obj.to_dict())))
        return out
    if isinstance(obj, str):
        return [] if _RANDOM_IDS.match(obj) else [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in strings_of(k) + strings_of(v)]
    if isinstance(obj, list | tuple):
        return [s for v in obj for s in strings_of(v)]
    return []


def assert_no_leak(objs: list[object], number: str, allowed_tail: int = 4) -> None:
    """No string contains more than the last four digits of `number`, written or spoken."""
    for s in (x for o in objs for x in strings_of(o)):
        written = [re.sub(r"\D", "", m) for m in re.findall(r"\d(?:[\s\-.,]*\d)*", s)]
        spoken = digits_in(s)
        for run in written + spoken:
            for size in range(5, len(number) + 1):
                for i in range(len(number) - size + 1):
                    chunk = number[i : i + size]
                    assert chunk not in run, f"{size} digits of the raw number leaked in {s!r}"
        hidden = number[:-allowed_tail] if allowed_tail else number
        assert hidden not in re.sub(r"\D", "", s) or len(hidden) < 5


# ----------------------------------------------------------------------------- spoken numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("four one one one one one one one", ["41111111"]),
        ("4111 1111 1111 1111", ["4111111111111111"]),
        ("4111-1111-1111-1111.", ["4111111111111111"]),
        ("41 11, 11 11.", ["41111111"]),
        ("forty one eleven", ["4111"]),
        ("forty-one eleven", ["4111"]),
        ("double four oh seven", ["4407"]),
        ("triple seven", ["777"]),
        ("nineteen", ["19"]),
        ("zero", ["0"]),
        ("oh I see", []),
        ("five five five uh five one two", ["555512"]),
        ("Five, five, five, one, two.", ["55512"]),
        ("forty one hundred", ["4100"]),
        ("four hundred and five", ["405"]),
        ("twenty twenty four", ["2024"]),
        ("call me at five five five and my zip is nine oh two one oh", ["555", "90210"]),
        ("the year 2019 and not $250", ["2019"]),
    ],
)
def test_digit_runs_from_both_engines_styles(text: str, expected: list[str]) -> None:
    assert digits_in(text) == expected


def test_parse_cardinal_values() -> None:
    assert parse_cardinal(["two", "hundred", "and", "fifty"]) == 250
    assert parse_cardinal(["one", "thousand", "two", "hundred"]) == 1200
    assert parse_cardinal(["twelve", "thousand", "five", "hundred", "and", "forty"]) == 12540
    assert parse_cardinal(["1200"]) == 1200
    assert parse_cardinal(["hello"]) is None
    assert parse_cardinal(["two", "hundred", "apples"]) is None


def test_luhn_and_brands() -> None:
    for n in (VISA, MC, AMEX, DISCOVER):
        assert luhn_valid(n), n
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("41x1")
    assert card_brand(VISA) == "visa" and card_brand(MC) == "mastercard" and card_brand(AMEX) == "amex"
    assert card_brand(DISCOVER) == "discover" and card_brand("9" * 16) is None
    assert ssn_plausible("123456789") and not ssn_plausible("000123456") and not ssn_plausible("666123456")
    assert mask_digits(16, "1111") == "**** **** **** 1111" and mask_digits(3) == "***"


# ----------------------------------------------------------------------------- cards in one utterance


def _spoken(number: str) -> str:
    return " ".join(_WORD[d] for d in number)


@pytest.mark.parametrize(
    "text",
    [
        f"my card number is {_spoken(VISA)}",  # Vosk
        "my card number is 4111 1111 1111 1111.",  # Whisper, grouped
        "My card number is 4111-1111-1111-1111.",
        "my card number is 41 11 11 11 11 11 11 11",
        "It's 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.",
        "4111111111111111",
        "It's 4111—1111—1111—1111.",  # em dashes
        "4,111,111,111,111,111",
        "4111.1111.1111.1111",
        "forty one eleven, eleven eleven, eleven eleven, eleven eleven",
        "four one one one uh one one one one one one one one one one one one",
    ],
)
def test_visa_detected_and_masked_in_all_styles(text: str) -> None:
    red = Redactor("call1")
    out, sigs = red.redact(tr(text))
    cards = [s for s in sigs if s.name == "card_number"]
    assert len(cards) == 1, (text, sigs)
    s = cards[0]
    assert (s.kind, s.detector, s.detector_version) == ("risk", DETECTOR_NAME, DETECTOR_VERSION)
    assert s.attrs["last4"] == "1111" and s.attrs["luhn_valid"] and s.attrs["brand"] == "visa"
    assert s.evidence is not None and s.evidence.text == out.text and s.evidence.channel == "customer"
    assert s.evidence.start < s.evidence.end
    assert "**** **** **** 1111" in out.text or "####" in out.text or "*" in out.text
    assert_no_leak([out, *sigs], VISA)


def test_word_times_and_masked_words() -> None:
    text = "my card is " + _spoken(MC)
    out, sigs = Redactor("call1").redact(tr(text, start=10.0))
    assert out.text == "my card is **** **** **** 0004"
    assert [w.text for w in out.words[:3]] == ["my", "card", "is"]
    assert [w.text for w in out.words[3:15]] == ["####"] * 12
    assert [w.text for w in out.words[15:]] == ["zero", "zero", "zero", "four"]
    assert [(w.start, w.end) for w in out.words] == [(w.start, w.end) for w in words_of(text, 10.0)]
    ev = sigs[0].evidence
    assert (
        ev is not None and ev.start == pytest.approx(10.0 + 3 * 0.4) and ev.end == pytest.approx(10.0 + 18 * 0.4 + 0.3)
    )
    assert ev.words[:12] == ["####"] * 12
    assert sigs[0].confidence > 0.9  # context word + Luhn + issuer prefix


def test_numeric_word_masked_in_place() -> None:
    t = Transcript(
        "call1",
        "customer",
        1,
        0,
        "it's 4111-1111-1111-1111",
        True,
        0,
        2,
        [Word("it's", 0, 0.2), Word(" 4111-1111-1111-1111", 0.3, 2.0)],
    )
    out, _ = Redactor("call1").redact(t)
    assert out.words[1].text == " ####-####-####-1111"
    assert out.text == "it's **** **** **** 1111"


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("double five oh oh, oh oh oh oh, oh oh oh oh, oh oh oh four", MC),
        ("three seven eight two eight two two four six three one double oh oh five", AMEX),
        ("sixty eleven, zero zero zero nine, ninety thirteen, ninety four twenty four", DISCOVER),
    ],
)
def test_idioms_double_oh_and_grouped_numbers(text: str, number: str) -> None:
    out, sigs = Redactor("call1").redact(tr(text))
    cards = [s for s in sigs if s.name == "card_number"]
    assert cards and cards[0].attrs["last4"] == number[-4:] and cards[0].attrs["length"] == len(number)
    assert_no_leak([out, *sigs], number)


def test_luhn_invalid_is_masked_but_not_signalled() -> None:
    bad = "4111111111111112"
    red = Redactor("call1")
    for text in (f"my card number is {_spoken(bad)}", "4111 1111 1111 1112"):
        out, sigs = red.redact(tr(text))
        assert not [s for s in sigs if s.name == "card_number"], text
        assert_no_leak([out, *sigs], bad, allowed_tail=0)
        assert "1112" not in out.text  # not a recognised complete number: nothing revealed


# ----------------------------------------------------------------------------- partials and utterances


def test_partials_signal_once_and_final_confirms() -> None:
    red = Redactor("call1")
    spoken = _spoken(VISA).split()
    emitted: list[Signal] = []
    outs = []
    for k in range(4, len(spoken) + 1, 4):  # growing partials of one segment
        out, sigs = red.redact(tr("card number " + " ".join(spoken[:k]), seg=3, final=False, rev=k))
        outs.append(out)
        emitted += sigs
        if k < 16:
            assert "1111" not in out.text.replace("****", "")  # fragments are fully hidden
    out, sigs = red.redact(tr("card number " + " ".join(spoken), seg=3, rev=99))
    emitted += sigs
    cards = [s for s in emitted if s.name == "card_number"]
    assert len(cards) == 1 and not cards[0].evidence.is_final  # raised on the partial, not repeated
    assert_no_leak([*outs, out, *emitted], VISA)


def test_partial_signal_retracted_when_final_disagrees() -> None:
    red = Redactor("call1")
    _, s1 = red.redact(tr("card " + _spoken(VISA), seg=2, final=False))
    assert [s.name for s in s1] == ["card_number"]
    _, s2 = red.redact(tr("card " + _spoken("4111111111111112"), seg=2))
    assert len(s2) == 1 and s2[0].retracted and s2[0].name == "card_number"


def test_number_split_across_utterances_is_assembled() -> None:
    red = Redactor("call1")
    groups = [VISA[i : i + 4] for i in range(0, 16, 4)]
    outs, sigs = [], []
    t = 0.0
    for i, g in enumerate(groups):
        out, s = red.redact(tr(_spoken(g), seg=i + 1, start=t))
        t = out.end + 1.5  # caller pauses between groups, the VAD closes the segment
        outs.append(out)
        sigs += s
    assert [o.text for o in outs[:3]] == ["****", "****", "****"]
    assert outs[3].text == "1111"
    cards = [s for s in sigs if s.name == "card_number"]
    assert len(cards) == 1
    assert cards[0].attrs["assembled_from_segments"] == [1, 2, 3, 4]
    assert cards[0].evidence.start == 0.0  # evidence spans the whole dictation
    assert_no_leak([*outs, *sigs], VISA)


def test_whisper_style_groups_split_with_sentence_punctuation() -> None:
    red = Redactor("call1")
    texts = ["5, 5, 0, 0.", "0 0 0 0.", "0000.", "0004"]
    outs, sigs, t = [], [], 0.0
    for i, x in enumerate(texts):
        out, s = red.redact(tr(x, seg=i + 1, start=t, with_words=False))
        t = out.end + 1.0
        outs.append(out)
        sigs += s
    assert [s.attrs["last4"] for s in sigs if s.name == "card_number"] == ["0004"]
    assert_no_leak([*outs, *sigs], MC)


def test_long_pause_breaks_the_dictation() -> None:
    red = Redactor("call1", continuation_pause_s=5.0)
    red.redact(tr(_spoken(VISA[:8]), seg=1, start=0.0))
    out, sigs = red.redact(tr(_spoken(VISA[8:]), seg=2, start=60.0))
    assert not [s for s in sigs if s.name == "card_number"]
    assert "1111" not in out.text.replace("*", "")  # still masked: 8 digit-by-digit digits


def test_complete_card_then_a_new_one_is_not_glued_on() -> None:
    red = Redactor("call1")
    red.redact(tr("card " + _spoken(VISA), seg=1, start=0))
    _, sigs = red.redact(tr(_spoken(MC), seg=2, start=9))
    assert [s.attrs["last4"] for s in sigs if s.name == "card_number"] == ["0004"]


# ----------------------------------------------------------------------------- cvv, ssn, account


def test_cvv_in_same_utterance_and_after_agent_question() -> None:
    red = Redactor("call1")
    out, sigs = red.redact(tr("and the security code is seven three seven"))
    assert out.text == "and the security code is ***"
    assert [(s.kind, s.name) for s in sigs] == [("risk", "cvv")] and "last4" not in sigs[0].attrs
    _, sigs_a = red.redact(tr("What's the three digit code on the back?", seg=2, channel="agent", start=5))
    assert [s.name for s in sigs_a] == ["agent_requested_card"] and sigs_a[0].attrs["requested"] == "security_code"
    out_c, sigs_c = red.redact(tr("it's 123", seg=3, start=8))
    assert out_c.text == "it's ***" and [s.name for s in sigs_c] == ["cvv"]


def test_ssn_with_context_and_grouped_without() -> None:
    red = Redactor("call1")
    out, sigs = red.redact(tr("my social is one two three four five six seven eight nine"))
    assert [s.name for s in sigs] == ["ssn"] and sigs[0].attrs["last4"] == "6789"
    assert out.text == "my social is * **** 6789"
    assert_no_leak([out, *sigs], "123456789")
    out2, sigs2 = Redactor("c2").redact(tr("it is 123-45-6789 I think"))
    assert [s.name for s in sigs2] == ["ssn"] and sigs2[0].confidence < sigs[0].confidence
    assert "123" not in out2.text


def test_account_number() -> None:
    out, sigs = Redactor("call1").redact(tr("my account number is 12345678"))
    assert [s.name for s in sigs] == ["account_number"] and sigs[0].attrs["last4"] == "5678"
    assert out.text == "my account number is **** 5678"


def test_money_order_numbers_and_years_stay_readable() -> None:
    red = Redactor("call1")
    for text in (
        "I was charged two hundred fifty thousand dollars",
        "my order number is 123456",
        "it's been like that since 2019",
        "$25,000 is too much",
    ):
        out, sigs = red.redact(tr(text, start=100))
        assert out.text == text and not sigs


def test_unexplained_long_number_is_masked_without_context() -> None:
    out, sigs = Redactor("call1").redact(tr("call me back on 2025550143"))
    assert out.text == "call me back on ** **** ****" and not sigs


# ----------------------------------------------------------------------------- agent asking


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("Can I have your full card number please?", "card_number"),
        ("could you read me the long number on the front of the card", "card_number"),
        ("I'll need the credit card number", "card_number"),
        ("and what's the card numbr", "card_number"),  # ASR slip, tolerant match
        ("can you give me the cvv", "security_code"),
        ("I need the three digits on the back", "security_code"),
    ],
)
def test_agent_requesting_card_details(text: str, what: str) -> None:
    _, sigs = Redactor("call1").redact(tr(text, channel="agent"))
    req = [s for s in sigs if s.name == "agent_requested_card"]
    assert len(req) == 1 and req[0].kind == "compliance" and req[0].attrs["requested"] == what
    assert 0.5 < req[0].confidence <= 1.0


@pytest.mark.parametrize(
    ("text", "channel"),
    [
        ("can I have the last four digits of the card", "agent"),
        ("your new card will arrive in the mail", "agent"),
        ("can I have your date of birth", "agent"),
        ("can I give you my card number", "customer"),
    ],
)
def test_agent_request_negatives(text: str, channel: str) -> None:
    _, sigs = Redactor("call1").redact(tr(text, channel=channel))
    assert not [s for s in sigs if s.name == "agent_requested_card"]


def test_agent_question_arms_masking_of_customer_answer() -> None:
    red = Redactor("call1")
    red.redact(tr("Can I have the card number?", channel="agent"))
    out, _ = red.redact(tr("sure it's 4111 1111", seg=2, start=4))
    assert out.text == "sure it's **** ****"  # a fragment: no digit shown yet


# ----------------------------------------------------------------------------- randomized styles


def _render(number: str, rng: random.Random) -> str:
    """One way an engine could write `number`: words, numerals, groups, 'oh', 'double'."""
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    out: list[str] = []
    for g in groups:
        style = rng.choice(["words", "numeral", "pairs", "commas", "double"])
        if style == "numeral":
            out.append(g)
        elif style == "pairs":
            out.append(" ".join(g[i : i + 2] for i in range(0, len(g), 2)))
        elif style == "commas":
            out.append(", ".join(g) + ",")
        elif style == "double":
            i, words = 0, []
            while i < len(g):
                if i + 1 < len(g) and g[i] == g[i + 1]:
                    words.append("double " + ("oh" if g[i] == "0" else _WORD[g[i]]))
                    i += 2
                else:
                    words.append("oh" if g[i] == "0" and rng.random() < 0.5 else _WORD[g[i]])
                    i += 1
            out.append(" ".join(words))
        else:
            out.append(_spoken(g))
        if rng.random() < 0.2:
            out.append("uh")
    return " ".join(out)


def _random_card(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def test_randomized_renderings_detected_and_never_leak() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        number = _random_card(rng)
        text = _render(number, rng)
        red = Redactor("call1")
        out, sigs = red.redact(tr(("card number " if rng.random() < 0.5 else "") + text))
        cards = [s for s in sigs if s.name == "card_number"]
        assert len(cards) == 1 and cards[0].attrs["last4"] == number[-4:], text
        assert_no_leak([out, *sigs], number)


# ----------------------------------------------------------------------------- misc


def test_mask_text_for_logs() -> None:
    line = "redact failed on 'card 4111 1111 1111 1111' at 2026-11-24 t=1732435200.25 said four one one one one one"
    masked = mask_text(line)
    assert "**** **** **** 1111" in masked and "2026-11-24" in masked and "1732435200.25" in masked
    assert "four one one one one one" not in masked
    assert mask_text("") == "" and mask_text("order 1234") == "order 1234"
    with pytest.raises(ValueError, match="min_digits"):
        mask_text("x", min_digits=0)


def test_bad_channel_is_rejected() -> None:
    with pytest.raises(ValueError, match="channel"):
        Redactor("call1").redact(tr("hello", channel="supervisor"))


def test_detector_wrapper_keeps_state_per_call() -> None:
    det = RedactionDetector()
    ctx = CallContext(call_id="call1")
    groups = [VISA[:8], VISA[8:]]
    sigs = det.detect(tr(_spoken(groups[0]), seg=1), ctx)
    sigs += det.detect(tr(_spoken(groups[1]), seg=2, start=4.0), ctx)
    assert [s.name for s in sigs] == ["card_number"]


def test_input_transcript_is_not_mutated() -> None:
    t = tr("card " + _spoken(VISA))
    before = dataclasses.asdict(t)
    Redactor("call1").redact(t)
    assert dataclasses.asdict(t) == before


@pytest.mark.parametrize("text", ["6-9-7-4.", "four three two one", "4, 3, 2, 1"])
def test_digit_by_digit_groups_are_dictation(text: str) -> None:
    """A lone group read one digit at a time may be the first group of a card: hide it."""
    out, sigs = Redactor("call1").redact(tr(text))
    assert not re.search(r"\d", out.text) and "four" not in out.text and not sigs


@pytest.mark.parametrize("text", ["room 4111", "the year 2019", "1-2"])
def test_short_numbers_without_context_stay(text: str) -> None:
    out, _ = Redactor("call1").redact(tr(text))
    assert out.text == text


def test_masking_log_filter(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from callcue.privacy.masking import MaskingLogFilter

    log = logging.getLogger("callcue.test.redaction")
    handler = caplog.handler
    handler.addFilter(MaskingLogFilter())
    try:
        with caplog.at_level(logging.INFO, logger=log.name):
            log.info("customer said %s", "four one one one one one one one one one one one one one one one")
            log.info("raw %s", VISA)
    finally:
        handler.removeFilter(handler.filters[-1])
    text = caplog.text
    assert VISA not in text and "one one one one one" not in text and "1111" in text


def test_whisper_groups_after_agent_question_show_only_the_final_last_four() -> None:
    red = Redactor("call1")
    red.redact(tr("Can I have your card number?", channel="agent", with_words=False))
    outs, sigs, t = [], [], 3.0
    for i, x in enumerate(["Sure, 4111.", "1111.", "Uh, 1111.", "1111."]):
        out, s = red.redact(tr(x, seg=i + 2, start=t, with_words=False))
        outs.append(out.text)
        sigs += s
        t += 3.0
    assert outs == ["Sure, ****.", "****.", "Uh, ****.", "1111."]
    assert [(s.name, s.attrs["last4"]) for s in sigs] == [("card_number", "1111")]


def test_digits_after_unfinished_dictation_are_hidden_even_after_asr_noise() -> None:
    red = Redactor("call1")
    outs = []
    for i, x in enumerate(["Take 0 1 1", "little six seven nine", "since 2019 we have had it"]):
        outs.append(red.redact(tr(x, seg=i + 1, start=3.0 * i, with_words=False))[0].text)
    assert outs[:2] == ["Take ***", "little ***"]
    assert outs[2] == "since **** we have had it"  # still glued to the dictation: cautious


def test_order_number_does_not_start_a_dictation() -> None:
    red = Redactor("call1")
    red.redact(tr("my order number is 123456", start=0))
    assert red.redact(tr("since 2019", seg=2, start=4))[0].text == "since 2019"


def test_whisper_dotted_digits_are_digits_but_decimals_are_not() -> None:
    assert digits_in("9.0.9.3") == ["9093"] and digits_in("it was 2.50") == [] and digits_in("0.1") == []
    assert Redactor("call1").redact(tr("9.0.9.3", with_words=False))[0].text == "****"


def test_whisper_thousands_grouped_number_is_a_card() -> None:
    out, sigs = Redactor("call1").redact(tr("It's 4,111,111,111,111,111.", with_words=False))
    assert out.text == "It's **** **** **** 1111." and [s.name for s in sigs] == ["card_number"]
    assert mask_text("x 4,111,111,111,111,111 y") == "x **** **** **** 1111 y"
    assert Redactor("c2").redact(tr("that is 1,200 dollars", with_words=False))[0].text == "that is 1,200 dollars"


@pytest.mark.parametrize("text", ["4985.5791.9010.5", "4985.5791 9.01.0.7.4", "4985.5791 9.01.0.749"])
def test_whisper_dotted_groups_seen_in_real_partials_are_masked(text: str) -> None:
    """These partials leaked in a cards-eval run before dotted groups were read as digits."""
    out, _ = Redactor("call1").redact(tr(text, final=False, with_words=False))
    assert not re.search(r"\d", out.text), out.text
    assert not re.search(r"\d{5}", re.sub(r"\D", "", mask_text(text)))


def test_decimals_and_small_floats_stay() -> None:
    assert mask_text("rtf=0.8123 amount 99.99 ratio 2.5") == "rtf=0.8123 amount 99.99 ratio 2.5"
    assert digits_in("it was 2.5 and 99.99 and 1500.50") == []


def test_quantities_stay_readable_while_a_card_context_is_armed() -> None:
    """Banking callers say "account" and "card" constantly; "ten years" is not a secret."""
    from callcue.events import Transcript as _T
    from callcue.privacy.redactor import Redactor as _R

    r = _R("c-units")
    r.redact(_T("c-units", "customer", 1, 0, "I want to cancel my account and my card.", True, 0.0, 2.0))
    out, sigs = r.redact(_T("c-units", "customer", 2, 0, "I have been a customer for 10 years, 3 times this month.", True, 3.0, 6.0))
    assert out.text == "I have been a customer for 10 years, 3 times this month."
    assert not sigs
    # the same context still hides bare digits and a dictated card
    out, _ = r.redact(_T("c-units", "customer", 3, 0, "it is 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", True, 7.0, 12.0))
    assert "4 1 1 1" not in out.text and out.text.endswith("1111")


def test_log_lines_keep_diagnostics_and_lose_card_numbers() -> None:
    """Both directions: what an operator needs to read survives, no card number does."""
    from callcue.privacy.masking import mask_log_text

    readable = [
        "audiosocket listening on 127.0.0.1:9092",
        "Uvicorn running on http://127.0.0.1:8080 (Press CTRL+C to quit)",
        "loaded phrases@2026.11.1 and intent@1+2026-11-24.1; moonshine v0.1.4",
        "7 playbooks (9f86d0263f)",
        "call CA0123456789abcdef0123456789abcdef started",
        "[Errno 98] error while attempting to bind on address ('127.0.0.1', 9092): address already in use",
        "Finished server process [1234567]",
    ]
    for line in readable:
        assert mask_log_text(line) == line
    for secret in ("4111 1111 1111 1111", "4111111111111111", "4111-1111-1111-1111", "cvv4111111111111111",
                   "x@4111111111111111", "abc4111111111111111", "five five five five four four four four three three three three two two two two"):
        out = mask_log_text(f"customer said {secret} at 127.0.0.1:9092")
        assert "4111111111111111" not in out.replace(" ", "").replace("-", "") and "1111 1111 1111" not in out, out
        assert "127.0.0.1:9092" in out
