"""Playbook `when` conditions: small expressions evaluated safely with `simpleeval`.

Playbooks are written by contact-center staff, not programmers we trust with Python, so a
condition is never passed to `eval`. `simpleeval` walks the AST itself and refuses dunder
access, imports, lambdas and comprehensions. On top of that we validate at *load* time: every
name and function must come from the documented context below, and `call.x` / `signal.x` must
be known fields, so a typo fails when the playbook is loaded, not silently during a call.

Context visible to an expression (documented in docs/playbooks.md):

- `signal`: the signal being handled: `kind`, `name`, `confidence`, `channel`, `text`,
  `start`, `end`, `detector`, `attrs` (a dict: `signal.attrs.get('amount', 0)`).
- `signals`: the call's recent signals (list of the same dicts, oldest first).
- `call`: `call_id`, `agent_id`, `queue`, `tier`, `seconds_in_call`, `metadata` (dict).
- functions: `has_signal(name, within_s=None, kind=None, min_confidence=0.0)`,
  `count(name, within_s=None, kind=None)`, `sentiment_trend(window=5)`,
  `attr(key, default=None)` (an attribute of `signal`), plus `min max abs len float int
  str round lower`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpleeval

SIGNAL_FIELDS = frozenset(
    {"kind", "name", "confidence", "channel", "text", "start", "end", "detector", "attrs", "signal_id"}
)
CALL_FIELDS = frozenset({"call_id", "agent_id", "queue", "tier", "seconds_in_call", "metadata"})
NAMES = frozenset({"signal", "signals", "call", "True", "False", "None"})
HELPERS = frozenset({"has_signal", "count", "sentiment_trend", "attr"})
BUILTINS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "len": len,
    "float": float,
    "int": int,
    "str": str,
    "round": round,
    "lower": lambda s: str(s).lower(),
}
# methods an expression may call on dict/str values (e.g. signal.attrs.get('amount', 0))
ALLOWED_METHODS = frozenset({"get", "lower", "upper", "startswith", "endswith", "strip", "keys"})
_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.Is, ast.IsNot, ast.IfExp, ast.Call, ast.keyword, ast.Name, ast.Load, ast.Attribute,
    ast.Subscript, ast.Constant, ast.List, ast.Tuple,
)  # fmt: skip


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message names the offending part."""


@dataclass(frozen=True)
class Condition:
    """A validated expression, parsed once so evaluation on every signal stays cheap."""

    source: str
    _tree: ast.AST = field(repr=False, compare=False)

    @classmethod
    def compile(cls, source: str) -> Condition:
        if not isinstance(source, str) or not source.strip():
            raise ConditionError("condition is empty")
        if len(source) > MAX_SOURCE:
            raise ConditionError(f"condition is longer than {MAX_SOURCE} characters")
        try:
            tree = ast.parse(source.strip(), mode="eval")
            depth = _depth(tree)
        except SyntaxError as e:
            raise ConditionError(f"syntax error at column {e.offset}: {e.msg}") from None
        except (RecursionError, MemoryError, ValueError):
            raise ConditionError("condition is nested too deeply") from None
        if depth > MAX_DEPTH:
            raise ConditionError(f"condition is nested deeper than {MAX_DEPTH} levels")
        _validate(tree)
        return cls(source.strip(), tree.body)


MAX_SOURCE = 4000
MAX_DEPTH = 60  # evaluation recurses per level: bounded well inside Python's own limit


def _depth(node: ast.AST) -> int:
    """Depth of the tree without recursion (the tree may be deeper than the stack)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            break
        stack.extend((c, d + 1) for c in ast.iter_child_nodes(n))
    return deepest


def _validate(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ConditionError(f"'{type(node).__name__}' is not allowed in a condition")
        if isinstance(node, ast.Name) and node.id not in NAMES | HELPERS | BUILTINS.keys():
            raise ConditionError(
                f"unknown name '{node.id}' (allowed: {', '.join(sorted(NAMES | HELPERS | BUILTINS.keys()))})"
            )
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise ConditionError(f"attribute '{node.attr}' is not allowed")
            base = node.value
            if isinstance(base, ast.Name) and base.id == "signal" and node.attr not in SIGNAL_FIELDS:
                raise ConditionError(f"unknown field 'signal.{node.attr}' (known: {', '.join(sorted(SIGNAL_FIELDS))})")
            if isinstance(base, ast.Name) and base.id == "call" and node.attr not in CALL_FIELDS:
                raise ConditionError(f"unknown field 'call.{node.attr}' (known: {', '.join(sorted(CALL_FIELDS))})")
        if isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Attribute):
                if fn.attr not in ALLOWED_METHODS:
                    raise ConditionError(f"method '.{fn.attr}()' is not allowed (allowed: {', '.join(sorted(ALLOWED_METHODS))})")
            elif not (isinstance(fn, ast.Name) and fn.id in HELPERS | BUILTINS.keys()):
                raise ConditionError(f"'{ast.unparse(fn)}' is not a callable function")
        if isinstance(node, ast.Constant) and isinstance(node.value, (bytes, complex)):
            raise ConditionError("bytes/complex literals are not allowed")


@dataclass
class EvalContext:
    """Everything a condition may look at. Built by the engine from plain dicts so that the
    expression can never reach a live object (a call, a socket, the engine)."""

    signal: dict[str, Any]
    signals: Sequence[dict[str, Any]]
    call: dict[str, Any]
    now_s: float  # call clock, to judge `within_s`


@dataclass
class Outcome:
    """The result plus what the expression saw, for the audit log's "why"."""

    matched: bool
    seen: dict[str, Any]
    error: str | None = None


def signal_view(
    *, kind: str, name: str, confidence: float, attrs: dict[str, Any], channel: str | None = None,
    text: str = "", start: float | None = None, end: float | None = None, detector: str = "",
    signal_id: str = "", at_s: float = 0.0,
) -> dict[str, Any]:
    """A signal as conditions see it; `at_s` (call clock when it arrived) drives `within_s`."""
    return {
        "kind": kind, "name": name, "confidence": float(confidence), "attrs": dict(attrs),
        "channel": channel, "text": text, "start": start, "end": end, "detector": detector,
        "signal_id": signal_id, "_at": at_s,
    }  # fmt: skip


def _helpers(ctx: EvalContext, seen: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    def _recent(name: str | None, within_s: float | None, kind: str | None) -> list[dict[str, Any]]:
        out = []
        for s in ctx.signals:
            if name is not None and s["name"] != name:
                continue
            if kind is not None and s["kind"] != kind:
                continue
            if within_s is not None and ctx.now_s - s.get("_at", 0.0) > within_s:
                continue
            out.append(s)
        return out

    def has_signal(name: str, within_s: float | None = None, kind: str | None = None,
                   min_confidence: float = 0.0) -> bool:  # fmt: skip
        r = any(s["confidence"] >= min_confidence for s in _recent(name, within_s, kind))
        seen[f"has_signal({name!r}, within_s={within_s}, kind={kind!r})"] = r
        return r

    def count(name: str, within_s: float | None = None, kind: str | None = None) -> int:
        r = len(_recent(name, within_s, kind))
        seen[f"count({name!r}, within_s={within_s}, kind={kind!r})"] = r
        return r

    def sentiment_trend(window: int = 5) -> float:
        """Slope of the last `window` sentiment scores (attrs.score, -1..1) per signal:
        negative means the customer is getting more upset."""
        scores = [float(s["attrs"]["score"]) for s in ctx.signals
                  if s["kind"] == "sentiment" and isinstance(s["attrs"].get("score"), (int, float))][-window:]  # fmt: skip
        if len(scores) < 2:
            r = 0.0
        else:
            n = len(scores)
            mx = (n - 1) / 2
            my = sum(scores) / n
            r = sum((i - mx) * (y - my) for i, y in enumerate(scores)) / sum((i - mx) ** 2 for i in range(n))
        seen[f"sentiment_trend({window})"] = round(r, 4)
        return r

    def attr(key: str, default: Any = None) -> Any:
        r = ctx.signal["attrs"].get(key, default)
        seen[f"attr({key!r})"] = r
        return r

    return {"has_signal": has_signal, "count": count, "sentiment_trend": sentiment_trend, "attr": attr}


def _public(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.startswith("_")}


def evaluate(cond: Condition, ctx: EvalContext) -> Outcome:
    """Evaluate to a bool. A runtime error (a missing attribute, a type clash) is a non-match
    with the error kept, so a badly-fitting signal never takes down the call's pipeline."""
    seen: dict[str, Any] = {}
    sig = _public(ctx.signal)
    names = {"signal": sig, "signals": [_public(s) for s in ctx.signals], "call": dict(ctx.call),
             "True": True, "False": False, "None": None}  # fmt: skip
    ev = simpleeval.EvalWithCompoundTypes(names=names, functions={**BUILTINS, **_helpers(ctx, seen)})
    seen["signal"] = {k: sig[k] for k in ("kind", "name", "confidence", "attrs")}
    seen["call"] = {k: ctx.call.get(k) for k in ("queue", "tier", "seconds_in_call")}
    try:
        value = ev.eval(cond.source, previously_parsed=cond._tree)
    except (simpleeval.InvalidExpression, KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as e:
        return Outcome(False, seen, f"{type(e).__name__}: {e}")
    return Outcome(bool(value), seen)


def evaluate_value(cond: Condition, ctx: EvalContext) -> Any:
    """Evaluate to a value (used for de-duplication keys); errors propagate."""
    names = {"signal": _public(ctx.signal), "signals": [_public(s) for s in ctx.signals],
             "call": dict(ctx.call), "True": True, "False": False, "None": None}  # fmt: skip
    ev = simpleeval.EvalWithCompoundTypes(names=names, functions={**BUILTINS, **_helpers(ctx, {})})
    return ev.eval(cond.source, previously_parsed=cond._tree)
