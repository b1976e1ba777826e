"""Bearer-token authentication for agent desktops, supervisor consoles and the REST API.

Tokens come from config (one per user, with a role). Comparison is constant-time so a token
cannot be guessed byte by byte from response timing.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from callcue.config import AuthConfig

Role = Literal["agent", "supervisor", "qa", "admin", "auditor"]
ROLES: tuple[Role, ...] = ("agent", "supervisor", "qa", "admin", "auditor")

#: what each role may do; a token's `grants` add permissions to its role's. The permission
#: matrix test (tests/test_roles.py) walks every endpoint and command against this table.
PERMISSIONS: dict[str, frozenset[str]] = {
    "read_calls": frozenset({"agent", "supervisor", "qa", "admin"}),  # scoped: own calls, teams
    "read_transcripts": frozenset({"agent", "supervisor", "qa", "admin"}),
    "read_recordings": frozenset({"agent", "supervisor", "qa", "admin"}),
    "read_unredacted": frozenset(),  # no role: granted to named users ([[auth.tokens]] grants, or a claim)
    "call_control": frozenset({"supervisor"}),  # approve, reject, cancel, roll back, override, pause
    "supervisor_feed": frozenset({"supervisor"}),  # approval requests, action updates, alerts
    "qa_review": frozenset({"supervisor", "qa"}),
    "analytics": frozenset({"supervisor", "qa", "admin"}),
    "kb_read": frozenset({"supervisor", "qa", "admin"}),
    "kb_manage": frozenset({"supervisor", "admin"}),
    "learning": frozenset({"supervisor", "admin"}),
    "flows_manage": frozenset({"supervisor", "admin"}),  # promote and roll back the virtual agent's flows
    "audit_read": frozenset({"supervisor", "auditor", "admin"}),
    "access_log": frozenset({"auditor", "admin"}),
    "erase": frozenset({"admin"}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: Role
    #: the agents whose calls this user may see (None: every agent's); an agent sees its own
    scope: frozenset[str] | None = None
    grants: frozenset[str] = frozenset()

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS.get(permission, frozenset()) or permission in self.grants

    def may_see(self, agent_id: str | None) -> bool:
        """Whether this user may read a call handled by `agent_id` (its transcript, events)."""
        if not self.can("read_calls") and not self.can("read_transcripts"):
            return False
        if self.role == "agent":
            return agent_id is not None and agent_id == self.user_id
        return self.scope is None or (agent_id is not None and agent_id in self.scope)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (lower-case header names)."""
    auth = headers.get("authorization", "")
    return auth[7:].strip() or None if auth[:7].lower() == "bearer " else None


def secret_in(message: Mapping[str, Any], names: Sequence[str], accepted: Sequence[str], *, bearer: bool = False) -> bool:
    """A shared secret carried in a platform's first message (the audio fork's metadata,
    Vonage's NCCO headers): the first string among `names` (with `bearer`, a `Bearer ` prefix
    is allowed), compared like every other token."""
    given = next((message[k] for k in names if isinstance(message.get(k), str)), None)
    if bearer and given is not None and given[:7].lower() == "bearer ":
        given = given[7:]
    return token_matches(given, list(accepted))


def token_matches(given: str | None, accepted: list[str]) -> bool:
    """Constant-time against every accepted token, so timing tells nothing about which."""
    if not given:
        return False
    found = False
    for t in accepted:
        found |= hmac.compare_digest(t.encode(), given.encode())
    return found


TOKEN_PROTOCOL = "callcue.bearer."


def _b64url(s: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def token_protocol(token: str) -> str:
    """The subprotocol a browser offers to carry its token (client_js/common.js does the same)."""
    return TOKEN_PROTOCOL + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def principals(cfg: AuthConfig) -> list[tuple[str, Principal]]:
    """Each configured token's principal; a supervisor's or QA lead's teams become the set of
    agents in those teams (no teams: every agent)."""
    team_agents: dict[str, set[str]] = {}
    for t in cfg.tokens:
        if t.role == "agent":
            for team in t.teams:
                team_agents.setdefault(team, set()).add(t.user_id)
    out = []
    for t in cfg.tokens:
        scope = None
        if t.role in ("supervisor", "qa") and t.teams:
            scope = frozenset(a for team in t.teams for a in team_agents.get(team, ()))
        out.append((t.token, Principal(t.user_id, t.role, scope, frozenset(t.grants))))
    return out


class Authenticator:
    def __init__(self, cfg: AuthConfig, base_dir: Path | None = None) -> None:
        self._tokens = [(token.encode(), p) for token, p in principals(cfg)]
        self._oidc = OidcVerifier(cfg, base_dir) if cfg.oidc.enabled else None

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        if self._oidc is not None and token.count(".") == 2 and token.startswith("ey"):
            return self._oidc.principal(token)
        given = token.encode()
        found = None
        for secret, principal in self._tokens:
            if hmac.compare_digest(secret, given):
                found = principal
        return found

    def from_headers(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Principal | None:
        """`Authorization: Bearer`, or (browsers, which cannot set headers on a WebSocket) a
        `callcue.bearer.<base64url token>` subprotocol; `?token=` is still read for old pages
        but never logged (logs.py scrubs it) and the shipped pages no longer send it."""
        token = bearer_token(headers)
        if token is not None:
            return self.authenticate(token)
        for proto in headers.get("sec-websocket-protocol", "").split(","):
            proto = proto.strip()
            if proto.startswith(TOKEN_PROTOCOL):
                return self.authenticate(_b64url(proto[len(TOKEN_PROTOCOL):]))
        return self.authenticate(query.get("token"))


class OidcVerifier:
    """JWT bearer tokens from an OpenID Connect provider (PyJWT): signature against the JWKS
    (file or URL), issuer, audience, expiry; the user, role, teams and grants from claims.
    A token whose role claim names no CallCue role is refused."""

    def __init__(self, cfg: AuthConfig, base_dir: Path | None) -> None:
        import jwt

        o = cfg.oidc
        self.cfg = o
        self._jwt = jwt
        self._client = jwt.PyJWKClient(o.jwks_url, cache_keys=True) if o.jwks_url else None
        self._set = None
        if o.jwks_file:
            path = Path(o.jwks_file)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            self._set = jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
        if self._client is None and self._set is None:
            raise ValueError("[auth.oidc] needs jwks_file or jwks_url")
        # the agents of each team, from the static tokens, for a supervisor's team scope
        self._team_agents: dict[str, set[str]] = {}
        for t in cfg.tokens:
            if t.role == "agent":
                for team in t.teams:
                    self._team_agents.setdefault(team, set()).add(t.user_id)

    def _key(self, token: str) -> Any:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = self._jwt.get_unverified_header(token).get("kid")
        assert self._set is not None
        for k in self._set.keys:
            if kid is None or k.key_id == kid:
                return k.key
        raise self._jwt.InvalidTokenError(f"no key {kid!r} in the JWKS")

    def principal(self, token: str) -> Principal | None:
        o = self.cfg
        try:
            claims = self._jwt.decode(token, self._key(token), algorithms=o.algorithms, audience=o.audience or None,
                                      issuer=o.issuer or None, leeway=o.leeway_s,
                                      options={"require": ["exp", "iat"], "verify_aud": bool(o.audience)})  # fmt: skip
        except Exception:
            return None
        user = claims.get(o.user_claim)
        roles = claims.get(o.role_claim)
        roles = [roles] if isinstance(roles, str) else roles if isinstance(roles, list) else []
        role = next((r for r in roles if r in ROLES), None)
        if not isinstance(user, str) or not user or role is None:
            return None
        teams = claims.get(o.teams_claim)
        teams = [teams] if isinstance(teams, str) else teams if isinstance(teams, list) else []
        scope = None
        if role in ("supervisor", "qa") and teams:
            scope = frozenset(a for team in teams for a in self._team_agents.get(str(team), ()))
        grants = claims.get(o.grants_claim)
        grants = grants if isinstance(grants, list) else []
        return Principal(user, role, scope, frozenset(str(g) for g in grants))


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
