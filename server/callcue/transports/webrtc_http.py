"""HTTP signalling for WebRTC: `POST /webrtc/offer` (JSON or WHIP) and `DELETE
/webrtc/sessions/{id}`, bearer-authenticated, with CORS for the configured origins.

Why Starlette's CORSMiddleware on a mount of its own: a softphone page served from a CRM's
origin must pass the browser's preflight for these two routes, and nothing else of the server
should answer cross-origin requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, Router

from callcue.auth import Principal
from callcue.platforms.webrtc import OfferError, parse_offer
from callcue.transports.webrtc import WebRTCSessions

UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="callcue"'}


def webrtc_mount(sessions: Callable[[], WebRTCSessions], authenticate: Callable[[Request], Principal | None],
                 cfg: Any) -> Mount:  # fmt: skip
    async def offer(request: Request) -> Response:
        principal = authenticate(request)
        if principal is None:
            return JSONResponse({"error": "missing or invalid bearer token (Authorization: Bearer <token>)"},
                                status_code=401, headers=UNAUTHORIZED)  # fmt: skip
        body = await request.body()
        try:
            req = parse_offer(body, request.headers.get("content-type", ""), dict(request.query_params),
                              user_id=principal.user_id, role=principal.role, default_role=cfg.default_role)  # fmt: skip
            session, answer = await sessions().offer(req, owner=principal.user_id)
        except OfferError as e:
            if "application/sdp" in request.headers.get("content-type", ""):
                return Response(e.message, status_code=e.status, media_type="text/plain")
            return JSONResponse({"error": e.message}, status_code=e.status)
        location = f"/webrtc/sessions/{session.session_id}"
        if req.whip:
            return Response(answer, status_code=201, media_type="application/sdp",
                            headers={"Location": location, "ETag": f'"{session.session_id}"'})  # fmt: skip
        return JSONResponse({"type": "answer", "sdp": answer, "session_id": session.session_id,
                             "call_id": req.call_id, "location": location}, headers={"Location": location})  # fmt: skip

    async def hangup(request: Request) -> Response:
        principal = authenticate(request)
        if principal is None:
            return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401, headers=UNAUTHORIZED)
        sid = request.path_params["session_id"]
        s = sessions()
        session = s.sessions.get(sid)
        if session is None:
            return JSONResponse({"error": f"no WebRTC session {sid[:40]!r}"}, status_code=404)
        if principal.role != "supervisor" and session.owner != principal.user_id:
            return JSONResponse({"error": "not your session"}, status_code=403)
        await s.hangup(sid, "hangup")
        return Response(status_code=200)

    router = Router(routes=[Route("/offer", offer, methods=["POST"]),
                            Route("/sessions/{session_id}", hangup, methods=["DELETE"])])  # fmt: skip
    app = CORSMiddleware(router, allow_origins=list(cfg.allowed_origins), allow_methods=["POST", "DELETE", "OPTIONS"],
                         allow_headers=["Authorization", "Content-Type"], expose_headers=["Location"], max_age=600)  # fmt: skip
    return Mount("/webrtc", app=app)
