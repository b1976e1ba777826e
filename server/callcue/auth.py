"""Bearer-token authentication for agent desktops, supervisor consoles and the REST API.

Tokens come from config (one per user, with a role). Comparison is constant-time so a token
cannot be guessed byte by byte from response timing.
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from callcue.config import AuthConfig


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: Literal["agent", "supervisor"]

    def may_see(self, agent_id: str | None) -> bool:
        return self.role == "supervisor" or (agent_id is not None and agent_id == self.user_id)


class Authenticator:
    def __init__(self, cfg: AuthConfig) -> None:
        self._tokens = [(t.token.encode(), Principal(t.user_id, t.role)) for t in cfg.tokens]

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        given = token.encode()
        found = None
        for secret, principal in self._tokens:
            if hmac.compare_digest(secret, given):
                found = principal
        return found

    def from_headers(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Principal | None:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return self.authenticate(auth[7:].strip())
        return self.authenticate(query.get("token"))


class FailureLimiter:
    """Failed authentications per client address in a sliding minute. Past the limit a source
    is refused without its credentials being checked, so tokens cannot be guessed at speed."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, source: str) -> deque[float]:
        q = self._fails.setdefault(source, deque())
        cutoff = self.clock() - 60.0
        while q and q[0] < cutoff:
            q.popleft()
        if not q:
            self._fails.pop(source, None)
        return q

    def blocked(self, source: str | None) -> bool:
        return len(self._recent(source or "?")) >= self.per_minute

    def failed(self, source: str | None) -> None:
        key = source or "?"
        self._recent(key)
        self._fails.setdefault(key, deque()).append(self.clock())
        if len(self._fails) > 100_000:  # a flood of distinct sources must not grow without bound
            self._fails.pop(next(iter(self._fails)))
