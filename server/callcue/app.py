"""The Starlette application: routes only, all declared here when the app is built.

The parts behind them are assembled at start-up (`wiring.assemble`, in the lifespan) and
reached through one typed slot, so a route never looks anything up in a shared container.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, cast

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from callcue import __version__
from callcue.auth import Principal, bearer_token, token_matches
from callcue.bot.demo_backend import backend_routes
from callcue.config import Settings
from callcue.egress.access_log import access_log_endpoint, record_access
from callcue.egress.agent_ws import agent_endpoint
from callcue.egress.analytics_api import ROUTES as ANALYTICS_ROUTES
from callcue.egress.bot_api import ROUTES as BOT_ROUTES
from callcue.egress.knowledge_api import ROUTES as KB_ROUTES
from callcue.egress.knowledge_api import search_endpoint
from callcue.egress.qa_api import ROUTES as QA_ROUTES
from callcue.egress.supervisor_http import supervisor_routes
from callcue.governance.erasure import ErasureError
from callcue.pipeline.load import load_report
from callcue.platforms.base import Platform
from callcue.platforms.registry import PLATFORMS, check_sections, platform_config
from callcue.store.recordings import COPIES, Copy
from callcue.transports.session import IngressPolicy, StreamCounter
from callcue.transports.tcp import serve_tcp
from callcue.transports.webrtc_http import webrtc_mount
from callcue.transports.websocket import run_websocket
from callcue.wiring import Runtime, assemble

log = logging.getLogger(__name__)
CLIENT_DIR = Path(__file__).resolve().parents[2] / "client_js"


class RuntimeSlot:
    """The running server, set by the lifespan; routes fail clearly before start-up."""

    def __init__(self) -> None:
        self._rt: Runtime | None = None

    def set(self, rt: Runtime | None) -> None:
        self._rt = rt

    def get(self) -> Runtime:
        if self._rt is None:
            raise RuntimeError("the server is not started")
        return self._rt


def _policy(rt: Runtime, platform: Platform, cfg: Any, streams: StreamCounter) -> IngressPolicy:
    frame_limit = getattr(cfg, "max_frame_bytes", None) or rt.settings.server.max_frame_bytes
    return IngressPolicy(platform, cfg, frame_limit, rt.settings.platforms.idle_timeout_s, rt.auth_failures,
                         streams=streams)  # fmt: skip


def _ingress(slot: RuntimeSlot, platform: Platform, settings: Settings,
             streams: StreamCounter) -> Callable[[WebSocket], Awaitable[None]]:  # fmt: skip
    cfg = platform_config(settings.platforms, platform)

    async def endpoint(ws: WebSocket) -> None:
        rt = slot.get()
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        chosen = next((p for p in offered if p in platform.subprotocols), None)
        await run_websocket(ws, _policy(rt, platform, cfg, streams), rt.calls, rt.sink.rejection, subprotocol=chosen)

    return endpoint


async def _tcp_listener(rt: Runtime, platform: Platform, streams: StreamCounter, *, port: int | None = None,
                        start_metadata: dict[str, Any] | None = None) -> asyncio.Server:  # fmt: skip
    """Raw-TCP platforms listen on their own host:port from their config section; a second
    listener on `port` adds `start_metadata` to each call it takes (the flow that answers)."""
    cfg = platform_config(rt.settings.platforms, platform)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_tcp(reader, writer, _policy(rt, platform, cfg, streams), rt.calls, rt.sink.rejection,
                        start_metadata=start_metadata)  # fmt: skip

    try:
        host, port = cast(_Listens, cfg).host, cast(_Listens, cfg).port if port is None else port
        srv = await asyncio.start_server(on_connect, host, port)
    except OSError as e:
        raise OSError(e.errno, f"{platform.name} cannot listen on {host}:{port}: {e.strerror} "
                               f"(set [platforms.{platform.name}] port, or stop what holds it)") from None  # fmt: skip
    port = srv.sockets[0].getsockname()[1] if srv.sockets else port  # port 0: the one the OS chose
    log.info("%s listening on %s:%s", platform.name, host, port)
    return srv


class _Listens(Protocol):
    """What a raw-TCP platform's section has besides the limits (AudioSocket's does)."""

    host: str
    port: int


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`bytes=a-b`, `bytes=a-` or `bytes=-n` as an inclusive (first, last); None when absent or
    not one simple range (the whole body is then sent)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size - 1) if n > 0 else None
        a = int(first)
        b = int(last) if last else size - 1
    except ValueError:
        return None
    if a >= size:
        return (a, a)  # past the end: the caller answers 416
    return (a, min(b, size - 1)) if b >= a else None


def _enabled(settings: Settings, platform: Platform) -> bool:
    return platform_config(settings.platforms, platform).enabled


def create_app(settings: Settings) -> Starlette:
    check_sections(settings.platforms)
    slot = RuntimeSlot()
    streams = StreamCounter()  # open streams per platform, for each platform's max_streams

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt = await assemble(settings)
        slot.set(rt)
        listeners: list[asyncio.Server] = []
        try:
            for p in PLATFORMS.values():
                if p.transport == "tcp" and _enabled(settings, p):
                    listeners.append(await _tcp_listener(rt, p, streams))
                    flow, flow_port = (getattr(platform_config(settings.platforms, p), k, None) for k in ("flow", "flow_port"))
                    if flow and flow_port:  # the virtual agent's own port
                        listeners.append(await _tcp_listener(rt, p, streams, port=int(flow_port),
                                                             start_metadata={"flow": flow}))  # fmt: skip
            yield
        finally:
            for srv in listeners:
                srv.close()
            slot.set(None)
            await rt.close()

    def load() -> dict[str, Any]:
        rt = slot.get()
        return load_report(rt.calls, rt.settings.server)

    async def healthz(request: Request) -> JSONResponse:
        """Liveness: 200 while the process serves, with its load for dashboards."""
        rt = slot.get()
        return JSONResponse({"status": "ok", "version": __version__, "engine": rt.asr.describe(),
                             "active_calls": len(rt.calls.calls), "load": load()})  # fmt: skip

    async def readyz(request: Request) -> JSONResponse:
        """Readiness for a load balancer: 503 while the node is full (max_calls reached, or
        its recognizers are behind real time), so new calls go to another node; calls it
        holds keep running."""
        body = load()
        return JSONResponse(body, status_code=200 if body["accepting"] else 503)

    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus text, for the scraper's token or an admin (per-call counts and load are
        not for everyone who can reach the port)."""
        rt = slot.get()
        allowed = rt.settings.auth.metrics_tokens
        if allowed:
            client = request.client.host if request.client else None
            token = bearer_token(request.headers)
            if rt.auth_failures.blocked(client) or not (token_matches(token, allowed) or _is_admin(request)):
                rt.auth_failures.failed(client)
                return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401,
                                    headers={"WWW-Authenticate": 'Bearer realm="callcue-metrics"'})  # fmt: skip
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def _is_admin(request: Request) -> bool:
        p = slot.get().auth.from_headers(request.headers, {})
        return p is not None and p.role == "admin"

    def authenticate(request: Request, header_only: bool = False) -> Principal | None:
        """Bearer token, counted per client address: past the limit nobody is let in from it."""
        rt = slot.get()
        client = request.client.host if request.client else None
        if rt.auth_failures.blocked(client):
            return None
        principal = rt.auth.from_headers(request.headers, {} if header_only else request.query_params)
        if principal is None:
            rt.auth_failures.failed(client)
        return principal

    def permitted(request: Request, permission: str, what: str) -> Principal | JSONResponse:
        """The signed-in user holding `permission` (bearer header only), or the 401/403 to send."""
        principal = authenticate(request, header_only=True)
        if principal is None:
            return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="callcue"'})  # fmt: skip
        if not principal.can(permission):
            return JSONResponse({"error": f"{principal.role} may not {what}"}, status_code=403)
        return principal

    async def call_record(request: Request) -> JSONResponse:
        """A stored call (transcripts, signals, hints, feedback) for a user allowed to see it."""
        rt = slot.get()
        principal = authenticate(request)
        if principal is None:
            return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401)
        call_id = request.path_params["call_id"]
        agent = await rt.access.call_agent(call_id)
        if agent is False:
            return JSONResponse({"error": f"no call {call_id!r}"}, status_code=404)
        if not principal.may_see(agent):  # type: ignore[arg-type]
            return JSONResponse({"error": f"not allowed to see call {call_id!r}"}, status_code=403)
        record = await rt.access.call_record(call_id)
        await record_access(rt.sink, principal, "call_record", request, call_id=call_id)
        return JSONResponse(record)

    async def recording(request: Request) -> Response:
        """A call's recording as FLAC (customer left, agent right), redacted as it was written;
        byte ranges for seeking in a player. Each playback or download is in the access log."""
        rt = slot.get()
        principal = permitted(request, "read_recordings", "play recordings")
        if isinstance(principal, JSONResponse):
            return principal
        call_id = request.path_params["call_id"]
        asked = request.query_params.get("copy") or "redacted"
        if asked not in COPIES:
            return JSONResponse({"error": "copy is redacted (the default) or unredacted"}, status_code=400)
        copy: Copy = asked
        if copy == "unredacted" and not principal.can("read_unredacted"):
            return JSONResponse({"error": "the unredacted copy needs the read_unredacted grant"}, status_code=403)
        agent = await rt.access.call_agent(call_id)
        if agent is False or rt.recordings is None or not rt.recordings.exists(call_id, copy):
            return JSONResponse({"error": f"no {copy} recording of call {call_id!r}"}, status_code=404)
        if not principal.may_see(agent):  # type: ignore[arg-type]
            return JSONResponse({"error": f"not allowed to hear call {call_id!r}"}, status_code=403)
        data = await asyncio.get_running_loop().run_in_executor(rt.detect_pool, rt.recordings.as_flac, call_id, copy)
        rng = byte_range(request.headers.get("range"), len(data))
        await record_access(rt.sink, principal, "recording", request, call_id=call_id, copy=copy,
                            range=None if rng is None else [rng[0], rng[1]])  # fmt: skip
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
        if rng is None:
            return Response(data, media_type="audio/flac", headers=headers)
        a, b = rng
        if a >= len(data):
            return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
        return Response(data[a : b + 1], status_code=206, media_type="audio/flac",
                        headers={**headers, "Content-Range": f"bytes {a}-{b}/{len(data)}"})  # fmt: skip

    async def erase(request: Request, call_ids: list[str] | None, scope: str) -> JSONResponse:
        rt = slot.get()
        principal = permitted(request, "erase", "erase data (admin only)")
        if isinstance(principal, JSONResponse):
            return principal
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        reason = str(body.get("reason") or request.query_params.get("reason") or "")
        assert rt.eraser is not None
        try:
            if call_ids is None:
                who = body.get("customer") or body.get("phone")
                if not isinstance(who, str):
                    return JSONResponse({"error": "name the customer: {\"customer\": id, phone or e-mail}"}, status_code=400)
                call_ids = await rt.eraser.calls_of_customer(who)
            elif await rt.access.call_agent(call_ids[0]) is False and not (rt.recordings and rt.recordings.exists(call_ids[0])):
                return JSONResponse({"error": f"no call {call_ids[0]!r}"}, status_code=404)
            out = await rt.eraser.erase(call_ids, actor=principal.user_id, reason=reason, scope=scope)
        except ErasureError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        return JSONResponse(out)

    async def erase_call(request: Request) -> JSONResponse:
        """`DELETE /api/v1/calls/{id}` (admin): the call, everywhere (governance/erasure.py)."""
        return await erase(request, [request.path_params["call_id"]], "call")

    async def erase_customer(request: Request) -> JSONResponse:
        """`POST /api/v1/erasure {"customer": ..., "reason": ...}` (admin): every call of one customer."""
        return await erase(request, None, "customer")

    async def legal_hold(request: Request) -> JSONResponse:
        """`POST` (set, with a reason) or `DELETE` (release) `/api/v1/calls/{id}/hold`, admin:
        a held call is kept whole past every retention rule and cannot be erased."""
        rt = slot.get()
        principal = permitted(request, "erase", "set legal holds (admin only)")
        if isinstance(principal, JSONResponse):
            return principal
        call_id = request.path_params["call_id"]
        if await rt.access.call_agent(call_id) is False:
            return JSONResponse({"error": f"no call {call_id!r}"}, status_code=404)
        assert rt.retention is not None
        if request.method == "DELETE":
            return JSONResponse({"call_id": call_id, "released": await rt.retention.release(call_id, actor=principal.user_id)})
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        reason = str((body or {}).get("reason") or "").strip() if isinstance(body, dict) else ""
        if not reason:
            return JSONResponse({"error": "a legal hold needs a reason"}, status_code=400)
        await rt.retention.hold(call_id, actor=principal.user_id, reason=reason[:500])
        return JSONResponse({"call_id": call_id, "held": True})

    async def text_interaction(request: Request) -> JSONResponse:
        """A chat or email thread (JSON turns) through understanding, QA and the summary, as a
        call without audio; authenticated like the native ingress (`[platforms.native] tokens`)."""
        import json

        from callcue.clients.ingest import post_call_results
        from callcue.transports.text_thread import (
            TextInteractionError,
            run_text_interaction,
        )

        rt = slot.get()
        client = request.client.host if request.client else None
        if rt.auth_failures.blocked(client) or not token_matches(bearer_token(request.headers),
                                                                 list(settings.platforms.native.tokens)):  # fmt: skip
            rt.auth_failures.failed(client)
            return JSONResponse({"error": "missing or invalid bearer token ([platforms.native] tokens)"}, status_code=401)
        raw = await request.body()
        if len(raw) > 4 * 1024 * 1024:
            return JSONResponse({"error": "body over 4 MiB"}, status_code=413)
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise TextInteractionError("body must be a JSON object")
            call_id = await run_text_interaction(rt.calls, body)
        except (ValueError, RecursionError) as e:  # TextInteractionError is a ValueError, as is bad JSON
            rt.sink.rejection("text", None, 400, str(e))
            return JSONResponse({"error": str(e)}, status_code=400)
        if rt.qa is not None:
            await rt.qa.done(call_id)
        record = await rt.access.call_record(call_id)
        done = post_call_results(record)
        return JSONResponse({"call_id": call_id, "finals": done["finals"], "signals": len(record.get("signals", [])),
                             "scorecard": done["scorecard"], "summary": done["summary"]})  # fmt: skip

    def supervisor() -> tuple[Any, Any]:
        rt = slot.get()
        return rt.supervisor, authenticate

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route("/api/v1/calls/{call_id}", call_record, methods=["GET"]),
        Route("/api/v1/calls/{call_id}", erase_call, methods=["DELETE"]),
        Route("/api/v1/erasure", erase_customer, methods=["POST"]),
        Route("/api/v1/calls/{call_id}/hold", legal_hold, methods=["POST", "DELETE"]),
        Route("/api/v1/calls/{call_id}/recording", recording),
        Route("/api/v1/interactions", text_interaction, methods=["POST"]),
        Route("/api/v1/kb/search", search_endpoint(lambda: (slot.get().knowledge, lambda r: authenticate(r, header_only=True)),
                                                   lambda: slot.get().sink)),
        *backend_routes(lambda: slot.get().demo_backend),
        Route("/api/v1/access-log", access_log_endpoint(lambda: (slot.get().audit, lambda r: authenticate(r, header_only=True)))),
        *[WebSocketRoute(p.path, _ingress(slot, p, settings, streams)) for p in PLATFORMS.values()
          if p.transport == "websocket" and _enabled(settings, p)],
        WebSocketRoute("/ws/agent", agent_endpoint(lambda: slot.get().agents)),
        *supervisor_routes(supervisor, (*QA_ROUTES, *ANALYTICS_ROUTES, *KB_ROUTES, *BOT_ROUTES)),
    ]
    if settings.platforms.webrtc.enabled:
        routes.append(webrtc_mount(lambda: slot.get().webrtc, lambda r: authenticate(r, header_only=True),
                                   settings.platforms.webrtc))  # fmt: skip
    if settings.server.serve_client and CLIENT_DIR.is_dir():
        routes.append(Route("/", lambda r: RedirectResponse("/agent/agent.html")))
        routes.append(Mount("/agent", app=StaticFiles(directory=CLIENT_DIR), name="client"))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = slot  # for tests and in-process tools that need the running parts
    return app
