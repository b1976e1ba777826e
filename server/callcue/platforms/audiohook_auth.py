"""AudioHook's profile of HTTP message signatures (RFC 9421) on the WebSocket upgrade.

Genesys signs the upgrade with HMAC-SHA256 over the client secret of the integration's API
key. The profile (AudioHook protocol docs, "Authentication"; the reference implementation's
`signature-verifier.ts`) narrows RFC 9421: the signature must cover `@request-target`,
`@authority`, `audiohook-organization-id`, `audiohook-session-id`,
`audiohook-correlation-id` and `x-api-key`; `keyid` is the API key itself; `alg` is
`hmac-sha256`; a `nonce` of at least 22 characters is signed (and never accepted twice
while the signature could still be valid); `created` is at most `max_age_s` old and
`expires` not past, both with a small clock skew. A key configured without a secret takes
unsigned upgrades, as Genesys does for such keys.

Why a library: the signature base (structured-field serialization of each component) is
where hand-written verifiers go wrong; `http-message-signatures` implements RFC 9421 and is
checked here against the AudioHook documentation's own example.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Mapping
from types import SimpleNamespace

from http_message_signatures import (
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

REQUIRED_COMPONENTS = ('"@request-target"', '"@authority"', '"audiohook-organization-id"', '"audiohook-session-id"',
                       '"audiohook-correlation-id"', '"x-api-key"')  # fmt: skip
MIN_NONCE_CHARS = 22
CLOCK_SKEW_S = 3.0


class NonceCache:
    """Nonces seen while their signature could still verify: a replayed upgrade is refused."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def first_use(self, nonce: str, valid_until: float, now: float) -> bool:
        with self._lock:
            if len(self._seen) >= self.max_entries or len(self._seen) % 1024 == 0:
                self._seen = {n: t for n, t in self._seen.items() if t >= now}
            if nonce in self._seen and self._seen[nonce] >= now:
                return False
            if len(self._seen) >= self.max_entries:
                return False  # fail closed rather than forget nonces that are still live
            self._seen[nonce] = valid_until
            return True


NONCES = NonceCache()


def http_url(url: str) -> str:
    """The upgrade's URL as the HTTP request it was (RFC 9421 components are HTTP's)."""
    if url.startswith("wss://"):
        return "https://" + url[6:]
    if url.startswith("ws://"):
        return "http://" + url[5:]
    return url


def verify_upgrade(url: str, headers: Mapping[str, str], api_key: str, client_secret: str, *, max_age_s: float,
                   now: float | None = None, nonces: NonceCache | None = NONCES) -> str | None:  # fmt: skip
    """Why the signed upgrade is refused, or None when it verifies. `headers` lower-cased."""
    now = time.time() if now is None else now
    try:
        secret = base64.b64decode(client_secret, validate=True)
    except (binascii.Error, ValueError):
        return "the configured client secret is not base64"
    if "signature" not in headers or "signature-input" not in headers:
        return "the API key has a client secret: Signature and Signature-Input are required"
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.HMAC_SHA256,
                                   key_resolver=MappingKeyResolver(public_keys={api_key: secret}, private_keys={}))  # fmt: skip
    message = SimpleNamespace(method="GET", url=http_url(url), headers=dict(headers))
    try:
        results = verifier.verify(message, max_age=None)
    except (InvalidSignature, HTTPMessageSignaturesException) as e:
        return f"signature does not verify: {str(e)[:120]}"
    result = results[0]
    params = result.parameters
    covered = set(result.covered_components)
    missing = [c.strip('"') for c in REQUIRED_COMPONENTS if c not in covered]
    if missing:
        return f"signature does not cover {', '.join(missing)}"
    if params.get("keyid") != api_key:
        return "signature keyid is not the X-API-KEY"
    if params.get("alg") not in (None, "hmac-sha256"):
        return f"signature alg {str(params.get('alg'))[:20]!r} is not hmac-sha256"
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or len(nonce) < MIN_NONCE_CHARS:
        return f"signature nonce missing or shorter than {MIN_NONCE_CHARS} characters"
    created = params.get("created")
    if not isinstance(created, int):
        return "signature has no created time"
    if created > now + CLOCK_SKEW_S:
        return "signature created in the future"
    if max_age_s and created + max_age_s < now - CLOCK_SKEW_S:
        return f"signature older than {max_age_s:g} s"
    expires = params.get("expires")
    if isinstance(expires, int) and expires < now - CLOCK_SKEW_S:
        return "signature expired"
    valid_until = min(float(expires) if isinstance(expires, int) else float("inf"),
                      created + (max_age_s or 86400.0)) + CLOCK_SKEW_S  # fmt: skip
    if nonces is not None and not nonces.first_use(nonce, valid_until, now):
        return "signature nonce already used (replayed upgrade)"
    return None
