"""Knowledge over the API: the agent's own KB search (`GET /api/v1/kb/search`, any signed-in
user), and the supervisor's KB commands, the same over /ws/agent and REST: versions, diff,
promote, roll back, and `kb_report`: which articles help agents and which are dismissed.

Why the report reads the audit trail: a card's `hint_shown` entry names its passage and KB
version, and the agent's verdict is a `feedback` entry on the same hint id, so the trail is
already the one record of what was shown and what agents made of it. The report also sets
each passage's standing (`KnowledgeBase.priors`), which nudges the live ranking.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from callcue.audit.log import AuditLog
from callcue.egress.access_log import record_access
from callcue.egress.supervisor_api import CommandError
from callcue.knowledge.index import Filters
from callcue.knowledge.service import KnowledgeBase
from callcue.knowledge.store import KnowledgeError

# (path under /api/v1, operation, takes a JSON body, method)
ROUTES: list[tuple[str, str, bool, str]] = [
    ("/kb/versions", "kb_versions", False, "GET"),
    ("/kb/diff", "kb_diff", False, "GET"),
    ("/kb/versions/{version}/promote", "kb_promote", True, "POST"),
    ("/kb/rollback", "kb_rollback", True, "POST"),
    ("/kb/report", "kb_report", False, "GET"),
]


def _int(a: dict[str, Any], key: str) -> int:
    try:
        return int(a[key])
    except (KeyError, TypeError, ValueError):
        raise CommandError("bad_request", 400, f"{key!r} must be a KB version number") from None


async def article_report(audit: AuditLog, since: float | None = None) -> dict[str, Any]:
    """Per passage: cards shown, accepted (useful or copied), dismissed (not useful)."""
    shown: dict[str, dict[str, Any]] = {}
    by_hint: dict[str, str] = {}
    async for e in audit.iter_entries(kind=["hint_shown", "feedback"], since=since):
        p = e.payload
        if e.kind == "hint_shown" and p.get("card") == "knowledge" and p.get("passage_id"):
            pid = str(p["passage_id"])
            by_hint[str(p["hint_id"])] = pid
            row = shown.setdefault(pid, {"passage_id": pid, "title": p.get("title"), "shown": 0, "accepted": 0,
                                         "dismissed": 0, "kb_versions": set()})  # fmt: skip
            row["shown"] += 1
            row["kb_versions"].add(p.get("kb_version"))
        elif e.kind == "feedback" and str(p.get("hint_id")) in by_hint:
            row = shown[by_hint[str(p["hint_id"])]]
            row["accepted" if p.get("action") == "accepted" else "dismissed"] += 1
    rows = []
    for r in shown.values():
        rated = r["accepted"] + r["dismissed"]
        rows.append({**r, "kb_versions": sorted(v for v in r["kb_versions"] if v is not None),
                     "helpful_rate": round(r["accepted"] / rated, 3) if rated else None})  # fmt: skip
    rows.sort(key=lambda r: (-(r["shown"]), r["passage_id"]))
    return {"articles": rows, "since": since}


def standing(report: dict[str, Any]) -> dict[str, float]:
    """A passage's standing from agents' verdicts, -1..1, shrunk toward 0 for few verdicts."""
    out = {}
    for r in report["articles"]:
        n = r["accepted"] + r["dismissed"]
        if n:
            out[r["passage_id"]] = (r["accepted"] - r["dismissed"]) / (n + 4)
    return out


class KnowledgeCommands:
    def __init__(self, kb: KnowledgeBase, audit: AuditLog) -> None:
        self.kb = kb
        self.audit = audit

    def ops(self) -> dict[str, Callable[[Any, dict[str, Any]], Any]]:
        return {"kb_versions": self.kb_versions, "kb_diff": self.kb_diff, "kb_promote": self.kb_promote,
                "kb_rollback": self.kb_rollback, "kb_report": self.kb_report}  # fmt: skip

    async def refresh_standing(self) -> dict[str, Any]:
        report = await article_report(self.audit, since=time.time() - 180 * 86400)
        self.kb.priors = standing(report)
        return report

    async def kb_versions(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        return {"versions": [v.to_dict() for v in await self.kb.store.versions()],
                "active": await self.kb.store.active_version()}  # fmt: skip

    async def kb_diff(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.kb.store.diff(_int(a, "from"), _int(a, "to"))
        except KnowledgeError as e:
            raise CommandError("not_found", 404, str(e)) from None

    async def kb_promote(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        try:
            await self.kb.promote(_int(a, "version"), actor=p.user_id)
        except KnowledgeError as e:
            raise CommandError("not_found", 404, str(e)) from None
        return {"active": self.kb.index.version if self.kb.index else None}

    async def kb_rollback(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"active": await self.kb.rollback(actor=p.user_id)}
        except KnowledgeError as e:
            raise CommandError("conflict", 409, str(e)) from None

    async def kb_report(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        since = a.get("since")
        report = await article_report(self.audit, float(since) if since not in (None, "") else None)
        self.kb.priors = standing(report) if since in (None, "") else self.kb.priors
        return report


def search_endpoint(get: Callable[[], tuple[KnowledgeBase | None, Callable[[Request], Any]]],
                    writer: Callable[[], Any] | None = None) -> Callable[[Request], Any]:  # fmt: skip
    """`GET /api/v1/kb/search?q=...&k=5`: the active KB for any signed-in user (agents
    search while the customer waits); the bearer token in the Authorization header only."""

    async def endpoint(request: Request) -> JSONResponse:
        kb, auth = get()
        principal = auth(request)
        if principal is None:
            return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="callcue"'})  # fmt: skip
        if kb is None:
            return JSONResponse({"error": "knowledge assist is off ([knowledge] enabled)"}, status_code=404)
        q = " ".join(str(request.query_params.get("q") or "").split())[:500]
        if not q:
            return JSONResponse({"error": "'q' is required"}, status_code=400)
        try:
            k = max(1, min(20, int(request.query_params.get("k") or 5)))
        except ValueError:
            return JSONResponse({"error": "'k' must be a number"}, status_code=400)
        f = Filters(product=request.query_params.get("product") or None, queue=request.query_params.get("queue") or None)
        try:
            found = await kb.search(q, filters=f, k=k)
        except KnowledgeError as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        if writer is not None:
            await record_access(writer(), principal, "kb_search", request, results=[r["passage_id"] for r in found["results"]])
        return JSONResponse(found)

    return endpoint


__all__ = ["ROUTES", "KnowledgeCommands", "article_report", "search_endpoint", "standing"]
