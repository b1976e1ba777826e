"""Outbound webhooks to external systems (CRM, billing, payment IVR).

External systems fail in boring ways: a 503 during a deploy, a dropped connection, a slow
response. We retry those with exponential backoff, but a retried POST must not refund twice,
so every attempt of one logical call carries the same `Idempotency-Key`; the compensating
undo call uses a different, equally stable key. 4xx answers (other than 408/429) mean the
request itself is wrong, so retrying would only repeat the mistake.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookError(RuntimeError):
    """The webhook did not succeed after all attempts; `attempts` and `status` say how."""

    def __init__(self, message: str, *, attempts: int, status: int | None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status


@dataclass
class WebhookResult:
    status: int
    attempts: int
    body: Any
    elapsed_s: float


def idempotency_key(action_id: str, phase: str = "do") -> str:
    """Stable per action and phase, so retries (even after a server restart) dedupe."""
    return f"callcue-{action_id}-{phase}"


class WebhookClient:
    """Posts JSON with timeout, retries and an idempotency key. One shared `httpx.AsyncClient`
    keeps connections pooled across calls; pass your own to control proxies/TLS."""

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        user_agent: str = "callcue-webhooks/1",
    ) -> None:
        self._client = client or httpx.AsyncClient(follow_redirects=False)
        self._owns = client is None
        self._sleep = sleep
        self._ua = user_agent

    async def aclose(self) -> None:
        if self._owns:
            await self._client.aclose()

    async def post(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        key: str,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        headers: dict[str, str] | None = None,
    ) -> WebhookResult:
        if retries < 0 or timeout_s <= 0:
            raise ValueError(f"retries must be >= 0 and timeout_s > 0 (got {retries}, {timeout_s})")
        hdrs = {"User-Agent": self._ua, **(headers or {}), "Idempotency-Key": key}
        t0 = time.monotonic()
        last = "no attempt made"
        status: int | None = None
        for attempt in range(1, retries + 2):
            try:
                r = await self._client.post(url, json=payload, headers=hdrs, timeout=timeout_s)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                last, status = f"{type(e).__name__}: {e or 'no detail'}", None
            else:
                status = r.status_code
                if 200 <= status < 300:
                    try:
                        body: Any = r.json()
                    except ValueError:
                        body = r.text
                    return WebhookResult(status, attempt, body, time.monotonic() - t0)
                last = f"HTTP {status}: {r.text[:200]}"
                if status not in RETRY_STATUS:
                    raise WebhookError(f"POST {url} rejected: {last}", attempts=attempt, status=status)
            if attempt <= retries:
                await self._sleep(backoff_s * (2 ** (attempt - 1)))
        raise WebhookError(f"POST {url} failed after {retries + 1} attempts: {last}", attempts=retries + 1, status=status)
