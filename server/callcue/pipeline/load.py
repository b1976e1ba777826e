"""How full this node is, for a load balancer deciding where the next call goes.

Why the decoder backlog and not CPU: a node is full when its recognizers fall behind real
time, which is what makes hints late; CPU near 100 % with no backlog is a node doing its job.
The backlog of the slowest channel says that directly, and call count guards the hard limit.
`os.getloadavg` rides along for operators (it includes other processes on the box).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class NodeLoad:
    active_calls: int
    max_calls: int
    channels: int
    backlog_max_s: float
    ready_max_backlog_s: float
    load_1m: float
    cores: int

    @property
    def reason(self) -> str | None:
        """Why the node takes no new calls (every cause, "; "-joined), or None when it does."""
        causes = []
        if self.backlog_max_s > self.ready_max_backlog_s:
            causes.append(f"recognizers behind real time: {self.backlog_max_s:.1f} s backlog "
                          f"> ready_max_backlog_s {self.ready_max_backlog_s:g}")  # fmt: skip
        if self.active_calls >= self.max_calls:
            causes.append(f"at max_calls ({self.active_calls}/{self.max_calls})")
        return "; ".join(causes) or None

    def as_dict(self) -> dict[str, Any]:
        return {"accepting": self.reason is None, "reason": self.reason, "active_calls": self.active_calls,
                "max_calls": self.max_calls, "channels": self.channels,
                "backlog_max_s": round(self.backlog_max_s, 3), "ready_max_backlog_s": self.ready_max_backlog_s,
                "load_1m": round(self.load_1m, 2), "cores": self.cores}  # fmt: skip


def load_report(manager: Any, server: Any) -> dict[str, Any]:
    """What /healthz, /readyz and the cluster heartbeat say: the load of a `CallManager`'s
    calls against the `[server]` limits."""
    return node_load(manager.calls.values(), server.max_calls, server.ready_max_backlog_s).as_dict()


def node_load(calls: Iterable[Any], max_calls: int, ready_max_backlog_s: float) -> NodeLoad:
    """The load of the calls a `CallManager` holds (each with `.channels` of pipelines)."""
    calls = list(calls)
    backlogs = [chp.lag_seconds for call in calls for chp in call.channels.values()]
    try:
        load_1m = os.getloadavg()[0]
    except OSError:  # not available on every platform
        load_1m = 0.0
    return NodeLoad(active_calls=len(calls), max_calls=max_calls, channels=len(backlogs),
                    backlog_max_s=max(backlogs, default=0.0), ready_max_backlog_s=ready_max_backlog_s,
                    load_1m=load_1m, cores=os.cpu_count() or 1)  # fmt: skip
