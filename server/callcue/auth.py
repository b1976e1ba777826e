"""Bearer-token authentication for agent desktops, supervisor consoles and the REST API.

Tokens come from config (one per user, with a role). Comparison is constant-time so a token
cannot be guessed byte by byte from response timing.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
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
