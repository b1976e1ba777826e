"""The Starlette application: routes only. Behaviour lives in the modules they call."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from callcue import __version__
from callcue.config import Settings
from callcue.egress.agent_ws import agent_endpoint
from callcue.transports.websocket import run_ingress
from callcue.services import Services

log = logging.getLogger(__name__)
CLIENT_DIR = Path(__file__).resolve().parents[2] / "client_js"


async def twilio_ws(ws: WebSocket) -> None:
    from callcue.platforms.twilio import TwilioProtocol

    limit = ws.app.state.services.settings.server.max_frame_bytes
    await run_ingress(ws, TwilioProtocol(max_message_bytes=limit), "twilio")


async def native_ws(ws: WebSocket) -> None:
    from callcue.platforms.native import NativeProtocol

    limit = ws.app.state.services.settings.server.max_frame_bytes
    await run_ingress(ws, NativeProtocol(max_message_bytes=limit), "native")


async def healthz(request: Request) -> JSONResponse:
    s: Services = request.app.state.services
    return JSONResponse({
        "status": "ok",
        "version": __version__,
        "engine": s.engine.describe() if s.engine else None,
        "active_calls": len(s.manager.calls) if s.manager else 0,
    })


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def call_record(request: Request) -> JSONResponse:
    """A stored call (transcripts, signals, hints, feedback) for a user allowed to see it."""
    s: Services = request.app.state.services
    principal = s.auth.from_headers(request.headers, request.query_params)
    if principal is None:
        return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401)
    call_id = request.path_params["call_id"]
    agent = await s.call_agent(call_id)
    if agent is False:
        return JSONResponse({"error": f"no call {call_id!r}"}, status_code=404)
    if not principal.may_see(agent):
        return JSONResponse({"error": f"not allowed to see call {call_id!r}"}, status_code=403)
    return JSONResponse(await s.store.call_record(call_id))


def create_app(settings: Settings) -> Starlette:
    services = Services(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.startup()
        for route in services.extra_routes():
            app.router.routes.append(route)
        try:
            yield
        finally:
            await services.shutdown()

    routes: list = [
        Route("/healthz", healthz),
        Route("/metrics", metrics_endpoint),
        Route("/api/v1/calls/{call_id}", call_record),
        WebSocketRoute("/ws/twilio", twilio_ws),
        WebSocketRoute("/ws/native", native_ws),
        WebSocketRoute("/ws/agent", agent_endpoint),
    ]
    if settings.server.serve_client and CLIENT_DIR.is_dir():
        routes.append(Route("/", lambda r: RedirectResponse("/agent/agent.html")))
        routes.append(Mount("/agent", app=StaticFiles(directory=CLIENT_DIR), name="client"))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    return app
