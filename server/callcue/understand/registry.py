"""Detectors by name, and their run order from what each declares it reads and writes.

Order is a topological sort (stdlib `graphlib`) over `produces` -> `consumes`; detectors with
no dependency between them keep their registration order. A cycle (two detectors each
reading what the other writes) is refused at start-up rather than run in an arbitrary order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from graphlib import CycleError, TopologicalSorter
from typing import Any

from callcue.understand.base import Detector

#: builds a detector from the server's understanding environment, or None when disabled
DetectorFactory = Callable[[Any], "Detector | None"]


class DetectorOrderError(ValueError):
    """Detectors whose declarations cannot be ordered (a cycle, or a duplicate name)."""


def order_detectors(detectors: Iterable[Detector]) -> list[Detector]:
    dets = list(detectors)
    names = [d.name for d in dets]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DetectorOrderError(f"two detectors share the name(s) {', '.join(sorted(dup))}: their state would collide")
    writers: dict[str, list[int]] = {}
    for i, d in enumerate(dets):
        for item in d.produces:
            writers.setdefault(item, []).append(i)
    ts: TopologicalSorter[int] = TopologicalSorter()
    for i, d in enumerate(dets):
        ts.add(i, *(w for item in d.consumes for w in writers.get(item, ()) if w != i))
    try:
        ts.prepare()
    except CycleError as e:
        cyc = " -> ".join(dets[i].name for i in e.args[1])
        raise DetectorOrderError(f"detectors read each other's output in a cycle: {cyc}") from None
    out: list[int] = []
    while ts.is_active():
        ready = sorted(ts.get_ready())  # registration order among the independent ones
        out.extend(ready)
        ts.done(*ready)
    return [dets[i] for i in out]


class DetectorRegistry:
    """Factories by name; `build` makes the enabled ones and orders them."""

    def __init__(self) -> None:
        self._factories: dict[str, DetectorFactory] = {}

    def register(self, name: str, factory: DetectorFactory) -> None:
        if name in self._factories:
            raise ValueError(f"detector {name!r} is already registered")
        self._factories[name] = factory

    def unregister(self, name: str) -> None:
        self._factories.pop(name, None)

    def names(self) -> list[str]:
        return list(self._factories)

    def build(self, env: Any, only: Sequence[str] | None = None) -> list[Detector]:
        made: list[Detector] = []
        for name, factory in self._factories.items():
            if only is not None and name not in only:
                continue
            d = factory(env)
            if d is not None:
                made.append(d)
        return order_detectors(made)
