"""The supervisor commands over REST: each route of `ROUTES` names the operation it runs,
the same one a `/ws/agent` message of that type runs (supervisor_api.py), plus the streamed
audit export. Thin: authenticate, parse, run, answer."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from callcue.audit.log import AuditLog, canonical_json
from callcue.decide.engine import DecisionEngine
from callcue.egress.access_log import record_access, without_words
from callcue.egress.supervisor_api import MAX_BODY, PREFIX, Auth, CommandError, KpisFn, SupervisorCommands


def routes(engine: DecisionEngine, audit: AuditLog, kpis_fn: KpisFn | None, auth: Auth,
           commands: SupervisorCommands | None = None) -> list[BaseRoute]:  # fmt: skip
    """REST routes over fixed objects; mount them on the app. `auth(request)` returns the
    principal or None."""
    cmds = commands or SupervisorCommands(engine, audit, kpis_fn)
    return supervisor_routes(lambda: (cmds, auth))


def supervisor_routes(get: Callable[[], tuple[SupervisorCommands, Auth]],
                      extra: Sequence[tuple[str, str, bool, str]] = ()) -> list[BaseRoute]:  # fmt: skip
    """The same routes, declared when the app is built and bound to the running server's
    commands on each request (`get`), so no route is appended after start-up. `extra`:
    (path, operation, takes a body, method) of operations other modules add (analytics)."""

    def endpoint(op_name: str, *, body: bool) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            cmds, auth = get()
            principal = auth(request)
            if inspect.isawaitable(principal):
                principal = await principal
            if principal is None:
                return _err("unauthorized", 401, "missing or invalid bearer token",
                            headers={"WWW-Authenticate": 'Bearer realm="callcue"'})  # fmt: skip
            if not cmds.allowed(principal, op_name):
                return _err("forbidden", 403, f"{getattr(principal, 'role', '?')} may not {op_name}")
            args: dict[str, Any] = dict(request.query_params)
            if body:
                raw = await request.body()
                if len(raw) > MAX_BODY:
                    return _err("bad_request", 413, f"body over {MAX_BODY} bytes")
                if raw.strip():
                    try:
                        parsed = json.loads(raw)
                    except ValueError as e:
                        return _err("bad_request", 400, f"body is not JSON: {e}")
                    except RecursionError:
                        return _err("bad_request", 400, "body is not JSON: nested too deeply")
                    if not isinstance(parsed, dict):
                        return _err("bad_request", 400, "body must be a JSON object")
                    args.update(parsed)
            args.update(request.path_params)  # the path wins: it names the object acted on
            try:
                out = await cmds.run(op_name, principal, args)
            except CommandError as e:
                return _err(e.code, e.status, e.message)
            return JSONResponse({"ok": True, **out})

        return handler

    async def export(request: Request) -> Response:
        cmds, auth = get()
        audit = cmds.audit
        principal = auth(request)
        if inspect.isawaitable(principal):
            principal = await principal
        if principal is None:
            return _err("unauthorized", 401, "missing or invalid bearer token")
        if not getattr(principal, "can", lambda _p: False)("audit_read"):
            return _err("forbidden", 403, "the audit trail needs the audit_read permission")
        try:
            filters = cmds.filters(dict(request.query_params))
            first = await audit.query(**filters, limit=1)  # validates filters before streaming starts
        except CommandError as e:
            return _err(e.code, e.status, e.message)
        except (ValueError, TypeError) as e:
            return _err("bad_request", 400, str(e))

        shown = principal.can("read_transcripts")
        await record_access(cmds.writer, principal, "audit_export", request, filters={k: v for k, v in filters.items() if v})

        async def lines() -> AsyncIterator[str]:
            if not first:
                return
            async for e in audit.iter_entries(**filters):
                yield canonical_json(e.to_dict() if shown else {**without_words(e.to_dict()), "withheld": True}) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson",
                                 headers={"Content-Disposition": 'attachment; filename="callcue-audit.jsonl"'})  # fmt: skip

    return [*(Route(f"{PREFIX}{path}", endpoint(op, body=body), methods=[method])
              for path, op, body, method in (*ROUTES, *extra)),
            Route(f"{PREFIX}/audit/export", export, methods=["GET"])]  # fmt: skip


#: (path under /api/v1, operation, takes a JSON body, method): each REST route names the
#: operation it runs, the same one a `/ws/agent` message of that type runs
ROUTES: tuple[tuple[str, str, bool, str], ...] = (
    ("/actions", "list_actions", False, "GET"),
    ("/actions/{action_id}", "get_action", False, "GET"),
    *((f"/actions/{{action_id}}/{verb}", verb, True, "POST") for verb in ("approve", "reject", "cancel", "rollback", "override")),
    ("/calls/{call_id}/override", "override", True, "POST"),
    ("/calls/{call_id}/disposition", "disposition", True, "POST"),
    ("/playbooks", "list_playbooks", False, "GET"),
    ("/playbooks/{playbook_id}/pause", "pause_playbook", True, "POST"),
    ("/playbooks/{playbook_id}/resume", "resume_playbook", True, "POST"),
    ("/audit", "audit_query", False, "GET"),
    ("/kpis", "kpis", False, "GET"),
    ("/playbooks/{playbook_id}/calibrate", "calibrate", True, "POST"),
    ("/playbooks/{playbook_id}/thresholds", "list_thresholds", False, "GET"),
    ("/playbooks/{playbook_id}/thresholds/rollback", "rollback_threshold", True, "POST"),
    ("/thresholds/{version}/shadow", "shadow_threshold", True, "POST"),
    ("/thresholds/{version}/compare", "compare_threshold", False, "GET"),
    ("/thresholds/{version}/promote", "promote_threshold", True, "POST"),
    ("/intent-datasets", "list_intent_datasets", False, "GET"),
    ("/intent-datasets", "build_intent_dataset", True, "POST"),
    ("/intent-datasets/rollback", "rollback_intent_dataset", True, "POST"),
    ("/intent-datasets/{version}", "get_intent_dataset", False, "GET"),
    ("/intent-datasets/{version}/compare", "compare_intent_datasets", False, "GET"),
    ("/intent-datasets/{version}/promote", "promote_intent_dataset", True, "POST"),
)


def _err(code: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"ok": False, "error": {"code": code, "message": message}}, status_code=status, headers=headers)
