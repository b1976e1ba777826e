"""Webhooks against a real local HTTP server (Starlette under uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callcue.decide.webhooks import WebhookClient, WebhookError, idempotency_key


class Receiver:
    """A stand-in external system (CRM/billing) that behaves like real ones: it can fail with
    5xx for a while, be slow, reject bad requests, and honours `Idempotency-Key` by replaying
    the first response for a key instead of acting twice."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.effects: list[dict[str, Any]] = []  # requests that actually "did" something
        self.fail_next: dict[str, int] = {}  # path -> how many 503s to answer first
        self.status: dict[str, int] = {}  # path -> fixed status
        self.delay_s: dict[str, float] = {}
        self._replay: dict[str, dict[str, Any]] = {}
        self.base = ""
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        body = await request.json()
        key = request.headers.get("idempotency-key")
        self.requests.append({"path": path, "key": key, "json": body, "at": time.monotonic()})
        if self.delay_s.get(path):
            await asyncio.sleep(self.delay_s[path])
        if self.fail_next.get(path, 0) > 0:
            self.fail_next[path] -= 1
            return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
        if path in self.status:
            return JSONResponse({"error": "rejected"}, status_code=self.status[path])
        if key and key in self._replay:
            return JSONResponse(self._replay[key])
        self.effects.append({"path": path, "key": key, "json": body})
        resp = {"ok": True, "effect": len(self.effects), "path": path}
        if key:
            self._replay[key] = resp
        return JSONResponse(resp)

    def on(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


async def start_receiver() -> tuple[Receiver, uvicorn.Server, asyncio.Task[None]]:
    rec = Receiver()
    server = uvicorn.Server(uvicorn.Config(rec.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "receiver did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    rec.base = f"http://127.0.0.1:{port}"
    return rec, server, task


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec, server, task = await start_receiver()
    yield rec
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def test_success_sends_json_and_stable_idempotency_key(receiver: Receiver) -> None:
    c = WebhookClient()
    try:
        r = await c.post(receiver.base + "/crm", {"a": 1}, key=idempotency_key("act_1"))
    finally:
        await c.aclose()
    assert r.status == 200 and r.attempts == 1 and r.body["ok"] is True
    assert receiver.requests[0]["key"] == "callcue-act_1-do" and receiver.requests[0]["json"] == {"a": 1}


async def test_5xx_is_retried_with_backoff_and_the_same_key(receiver: Receiver) -> None:
    receiver.fail_next["/billing"] = 2
    waits: list[float] = []

    async def sleep(s: float) -> None:  # the backoff schedule, read instead of timed
        waits.append(s)

    c = WebhookClient(sleep=sleep)
    try:
        r = await c.post(receiver.base + "/billing", {"x": 1}, key="k-1", retries=3, backoff_s=0.05)
    finally:
        await c.aclose()
    assert r.status == 200 and r.attempts == 3
    reqs = receiver.on("/billing")
    assert [q["key"] for q in reqs] == ["k-1"] * 3
    assert len(receiver.effects) == 1
    assert waits == [0.05, 0.10]  # exponential


async def test_gives_up_after_retries_with_attempt_count(receiver: Receiver) -> None:
    receiver.fail_next["/down"] = 99
    c = WebhookClient()
    try:
        with pytest.raises(WebhookError, match=r"failed after 3 attempts: HTTP 503") as e:
            await c.post(receiver.base + "/down", {}, key="k", retries=2, backoff_s=0.01)
    finally:
        await c.aclose()
    assert e.value.attempts == 3 and e.value.status == 503 and len(receiver.on("/down")) == 3


async def test_4xx_is_not_retried(receiver: Receiver) -> None:
    receiver.status["/bad"] = 422
    c = WebhookClient()
    try:
        with pytest.raises(WebhookError, match="rejected: HTTP 422") as e:
            await c.post(receiver.base + "/bad", {}, key="k", retries=3, backoff_s=0.01)
    finally:
        await c.aclose()
    assert e.value.attempts == 1 and len(receiver.on("/bad")) == 1


async def test_timeout_is_retried_then_reported(receiver: Receiver) -> None:
    receiver.delay_s["/slow"] = 1.0
    c = WebhookClient()
    try:  # the receiver answers after 1 s: an error at all proves the 0.2 s timeout held
        with pytest.raises(WebhookError, match="ReadTimeout") as e:
            await c.post(receiver.base + "/slow", {}, key="k", timeout_s=0.2, retries=1, backoff_s=0.01)
    finally:
        await c.aclose()
    assert e.value.attempts == 2 and len(receiver.on("/slow")) == 2


async def test_connection_refused_is_retried() -> None:
    c = WebhookClient()
    try:
        with pytest.raises(WebhookError, match="ConnectError") as e:
            await c.post("http://127.0.0.1:9/x", {}, key="k", retries=1, backoff_s=0.01)
    finally:
        await c.aclose()
    assert e.value.attempts == 2 and e.value.status is None


async def test_replayed_key_does_not_act_twice(receiver: Receiver) -> None:
    c = WebhookClient()
    try:
        a = await c.post(receiver.base + "/refund", {"amount": 10}, key="same")
        b = await c.post(receiver.base + "/refund", {"amount": 10}, key="same")
    finally:
        await c.aclose()
    assert a.body == b.body and len(receiver.effects) == 1
