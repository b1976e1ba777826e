"""Checks for values that came off the wire, before anything stores, logs or acts on them.

Why one module: a lone surrogate (`"\\ud800"` as a JSON escape) is a valid Python str that no
database, log line or UTF-8 socket accepts, and a 2^63 integer or a float that overflows to
infinity only fails deep inside SQL or arithmetic. Every boundary (platform parsers, client
messages, REST bodies and paths) asks these functions, so each refusal is precise and early.
"""

from __future__ import annotations

import math
from typing import Any

INT64_MAX = 2**63 - 1
MAX_ID = 128


class WireError(ValueError):
    """A value a peer sent that we refuse; the message names the field and why."""


def valid_unicode(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text(v: Any, name: str, *, max_len: int = 2000, required: bool = True, empty_ok: bool = True) -> str | None:
    if v is None:
        if required:
            raise WireError(f"'{name}' is required")
        return None
    if not isinstance(v, str):
        raise WireError(f"'{name}' must be a string, got {type(v).__name__}")
    if not empty_ok and not v:
        raise WireError(f"'{name}' must not be empty")
    if len(v) > max_len:
        raise WireError(f"'{name}' must be at most {max_len} characters, got {len(v)}")
    if not valid_unicode(v):
        raise WireError(f"'{name}' is not valid Unicode (a lone surrogate)")
    return v


def ident(v: Any, name: str, *, required: bool = True, max_len: int = MAX_ID) -> str | None:
    """An identifier: a non-empty printable string without control characters."""
    s = text(v, name, max_len=max_len, required=required, empty_ok=False)
    if s is not None and not s.isprintable():
        raise WireError(f"'{name}' must not contain control characters")
    return s


def integer(v: Any, name: str, *, lo: int = 0, hi: int = INT64_MAX) -> int:
    if isinstance(v, bool):
        raise WireError(f"'{name}' must be an integer, got {v!r}")
    if isinstance(v, float):
        if not math.isfinite(v) or not v.is_integer():
            raise WireError(f"'{name}' must be an integer, got {v!r}")
        v = int(v)
    elif isinstance(v, str):
        if len(v) > 20:
            raise WireError(f"'{name}' must be an integer between {lo} and {hi}")
        try:
            v = int(v)
        except ValueError:
            raise WireError(f"'{name}' must be an integer, got {v!r}") from None
    elif not isinstance(v, int):
        raise WireError(f"'{name}' must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise WireError(f"'{name}' must be between {lo} and {hi}")
    return v


def number(v: Any, name: str, *, lo: float = -1e15, hi: float = 1e15) -> float:
    if isinstance(v, bool):
        raise WireError(f"'{name}' must be a number, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        raise WireError(f"'{name}' must be a number, got {str(v)[:40]!r}") from None
    if not math.isfinite(f) or not lo <= f <= hi:
        raise WireError(f"'{name}' must be a finite number between {lo:g} and {hi:g}")
    return f


def clean_tree(v: Any, name: str, *, depth: int = 32, max_items: int = 10_000) -> Any:
    """Every string (keys too) valid Unicode, nesting bounded, ints within int64: for free-form
    objects (call metadata, override specs) that are stored and echoed as they came."""
    budget = [max_items]

    def walk(x: Any, d: int, path: str) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise WireError(f"'{name}' has more than {max_items} values")
        if d > depth:
            raise WireError(f"'{name}' is nested deeper than {depth} levels")
        if isinstance(x, str):
            if not valid_unicode(x):
                raise WireError(f"'{path}' is not valid Unicode (a lone surrogate)")
            return x
        if isinstance(x, bool) or x is None:
            return x
        if isinstance(x, int):
            if abs(x) > INT64_MAX:
                raise WireError(f"'{path}' is out of the 64-bit integer range")
            return x
        if isinstance(x, float):
            if not math.isfinite(x):
                raise WireError(f"'{path}' must be a finite number")
            return x
        if isinstance(x, dict):
            for k in x:
                if not isinstance(k, str) or not valid_unicode(k):
                    raise WireError(f"'{path}' has a key that is not valid Unicode")
            return {k: walk(val, d + 1, f"{path}.{k}") for k, val in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(val, d + 1, f"{path}[{i}]") for i, val in enumerate(x)]
        raise WireError(f"'{path}' has an unsupported value of type {type(x).__name__}")

    return walk(v, 0, name)
