"""The access log: every read of a call (its record, transcript, recording), every export and
every knowledge search is an `access` entry in the audit trail (who, what, when, from where),
and auditors query them (`GET /api/v1/access-log`).

Why in the audit trail: it is already hash-chained and append-only, so a reviewer can trust
that nobody removed the record of their own look at a call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from callcue.audit.log import AuditLog, to_epoch

log = logging.getLogger(__name__)


async def record_access(writer: Any, principal: Any, what: str, request: Request | None = None,
                        call_id: str | None = None, **detail: Any) -> None:  # fmt: skip
    """Write one `access` entry; a read whose entry cannot be written is still answered (the
    failure is logged and counted): refusing reads would let an audit outage stop service."""
    client = request.client.host if request is not None and request.client else None
    try:
        await writer.append("access", call_id=call_id, actor=principal.user_id,
                            payload={"what": what, "role": principal.role, "from": client, **detail})  # fmt: skip
    except Exception:
        log.exception("access log entry failed", extra={"call_id": call_id})


#: payload keys that carry what was said or shown (an auditor without `read_transcripts` sees
#: that an entry exists, and its hash, not the words)
_WORDS = frozenset({"text", "words", "evidence", "passage", "question", "body", "suggested_reply", "title", "correction"})


def without_words(entry: dict[str, Any]) -> dict[str, Any]:
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: ("[withheld]" if k in _WORDS and x not in (None, "", []) else strip(x)) for k, x in v.items()}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return {**entry, "payload": strip(entry.get("payload") or {})}


def access_log_endpoint(get: Callable[[], tuple[AuditLog, Callable[[Request], Any]]]) -> Callable[[Request], Any]:
    """`GET /api/v1/access-log?since=&until=&actor=&call_id=&limit=`: for auditors and admins."""

    async def endpoint(request: Request) -> JSONResponse:
        audit, auth = get()
        principal = auth(request)
        if principal is None:
            return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="callcue"'})  # fmt: skip
        if not principal.can("access_log"):
            return JSONResponse({"error": f"{principal.role} may not read the access log"}, status_code=403)
        q = request.query_params
        try:
            limit = max(1, min(10_000, int(q.get("limit") or 1000)))
            since, until = to_epoch(q.get("since")), to_epoch(q.get("until"))
        except (TypeError, ValueError) as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        rows = await audit.query(kind="access", call_id=q.get("call_id") or None, since=since, until=until, limit=limit)
        actor = q.get("actor")
        entries = [e.to_dict() for e in rows if not actor or e.actor == actor]
        await record_access(audit, principal, "access_log", request, returned=len(entries))
        return JSONResponse({"entries": entries})

    return endpoint
