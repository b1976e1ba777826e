"""Tells the recognizer when a channel is about to say digits.

Why: a recognizer that knows digits are coming can read a mumbled "seven" as 7 instead of
"Kevin" (Moonshine on the shared FSDD digits: 91 % under the expectation, 69 % without;
docs/asr.md). The expectation comes from the conversation: the agent asks for a number (card,
account, phone, date of birth, a code, "the last four digits"), or the customer is in the
middle of a digit run (their last final ended in digits, masked or not). It lasts `seconds`
of wall time from the cue and ends early when the customer says something that is not a
number. Engines that cannot use it ignore it (`RecognizerStream.expect_digits`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

from callcue.events import Channel, Transcript
from callcue.pipeline.processor import Processor

_ASK = re.compile(
    r"\b(can|could|may|would|will|what(?:'s| is)|give|read|tell|need|confirm|verify|provide|have|type|enter|say)\b"
)
_NUMBER_OBJECT = re.compile(
    r"\b(card number|account number|phone number|number|digits?|zip( code)?|post(al)? code|sort code|routing"
    r"|date of birth|birth ?date|d ?o ?b|pin|passcode|security code|cvv|cvc|verification code|code"
    r"|last (four|4|two|2|three|3)|reference|confirmation|member id|policy|extension|social)\b"
)
_DIGIT_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|\d+|\*+)"
_ENDS_IN_DIGITS = re.compile(rf"(?:{_DIGIT_WORD}[\s,.-]*){{2,}}$", re.IGNORECASE)


def asks_for_digits(agent_text: str) -> bool:
    """The agent's words ask the customer for a number."""
    t = agent_text.lower()
    return bool(_NUMBER_OBJECT.search(t) and (_ASK.search(t) or t.rstrip().endswith("?")))


def digit_run_open(customer_text: str) -> bool:
    """The customer's final ends in two or more digits: more may follow."""
    return bool(_ENDS_IN_DIGITS.search(customer_text.strip().rstrip(".?!").strip()))


class DigitsExpectedProcessor(Processor):
    name = "digits_expected"

    def __init__(self, mark: Callable[[Channel, float], None], clear: Callable[[Channel], None], seconds: float = 15.0) -> None:
        self.mark = mark
        self.clear = clear
        self.seconds = seconds

    async def process(self, item: object) -> AsyncIterator[object]:
        if isinstance(item, Transcript) and item.is_final and item.text:
            if item.channel == "agent" and asks_for_digits(item.text):
                self.mark("customer", self.seconds)
            elif item.channel == "customer":
                if digit_run_open(item.text):
                    self.mark("customer", self.seconds)
                else:
                    self.clear("customer")
        yield item
