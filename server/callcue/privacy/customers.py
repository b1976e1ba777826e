"""Who a call was with, as the forms an erasure request may name them by.

Why here: the call store indexes a call by these forms (as keyed hashes, privacy/vault.py
`blind`) when it starts, and erasure looks a customer up by the same forms, so "forget
+1 (555) 010-0123" finds the call whose metadata said `"from": "+15550100123"` without
decrypting every call's metadata. A phone number is matched on its digits (the last ten when
either side carries a country code); anything else on its lower-cased text.
"""

from __future__ import annotations

import re
from typing import Any

#: start-metadata keys that name the customer (platforms and CRMs use these)
CUSTOMER_KEYS = ("customer_id", "customer_key", "customer", "phone", "from", "caller", "caller_id", "ani", "msisdn",
                 "customer_phone", "email")  # fmt: skip


def forms(value: str) -> set[str]:
    """The forms one identifier is matched by: its text, and its number when it is one."""
    text = value.strip().lower()
    out = {f"t:{text}"} if text else set()
    digits = re.sub(r"\D", "", text)
    if len(digits) >= 7:
        out.add(f"n:{digits[-10:]}")
    return out


def identifiers(metadata: dict[str, Any]) -> set[str]:
    """Every form of every customer identifier in a call's start metadata."""
    out: set[str] = set()
    for k in CUSTOMER_KEYS:
        v = metadata.get(k)
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            out |= forms(str(v))
    return out


def names_customer(metadata: dict[str, Any], who: str) -> bool:
    """The call's start metadata names this customer."""
    return bool(identifiers(metadata) & forms(who))
