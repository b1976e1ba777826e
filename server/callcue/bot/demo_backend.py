"""A stand-in for the bank's systems, served by CallCue itself at `/demo-backend` so the demo
flow's webhooks have something real to call: block a card, look up a payment. It keeps what
it was asked in memory (the demo's "core banking"), and wants the bearer token the bot sends."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class DemoBackend:
    def __init__(self, token: str) -> None:
        self.token = token
        self.blocked: list[dict[str, Any]] = []
        self.lookups: list[dict[str, Any]] = []

    def _ok(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth.lower().startswith("bearer ") and hmac.compare_digest(auth[7:].encode(), self.token.encode())

    async def _body(self, request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def block_card(self, request: Request) -> JSONResponse:
        if not self._ok(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await self._body(request)
        last4 = str((body or {}).get("last4") or "")
        if not (len(last4) == 4 and last4.isdigit()):
            return JSONResponse({"error": "last4 must be 4 digits"}, status_code=400)
        self.blocked.append({"last4": last4, "call_id": (body or {}).get("call_id")})
        return JSONResponse({"status": "blocked", "last4": last4, "replacement_days": "3 to 5"})

    async def payment_status(self, request: Request) -> JSONResponse:
        if not self._ok(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await self._body(request) or {}
        self.lookups.append(body)
        return JSONResponse({"status": "completed", "amount": body.get("amount")})



def backend_routes(get: Callable[[], DemoBackend | None]) -> list[Route]:
    """The routes, bound when the app is built to whatever backend the running server has."""

    async def block(request: Request) -> JSONResponse:
        b = get()
        return await b.block_card(request) if b else JSONResponse({"error": "no demo backend"}, status_code=404)

    async def status(request: Request) -> JSONResponse:
        b = get()
        return await b.payment_status(request) if b else JSONResponse({"error": "no demo backend"}, status_code=404)

    return [Route("/demo-backend/cards/block", block, methods=["POST"]),
            Route("/demo-backend/payments/status", status, methods=["POST"])]  # fmt: skip
