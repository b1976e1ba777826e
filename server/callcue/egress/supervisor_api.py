"""Supervisor control surface: REST under /api/v1/ and the same commands over /ws/agent.

Both transports call one `SupervisorCommands` object so a supervisor gets identical
behaviour (and identical error codes) whether they click in a web console or script against
REST. Every command acts on the decision engine, which audits it; this module only checks
who is asking, parses input and maps refusals to status codes:
unknown id -> 404, not allowed in the current state -> 409, malformed input -> 400.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Protocol

from pydantic import ValidationError
from starlette.requests import Request

from callcue import wire
from callcue.audit.log import (
    AuditLog,
    AuditPayloadError,
    SensitiveDataError,
)
from callcue.decide.engine import (
    AuditUnavailable,
    DecisionEngine,
    InvalidTransition,
    UnknownAction,
)
from callcue.egress.access_log import without_words
from callcue.learning.store import Learning, LearningError

PREFIX = "/api/v1"
MAX_BODY = 64 * 1024


class PrincipalLike(Protocol):
    @property
    def user_id(self) -> str: ...
    @property
    def role(self) -> str: ...
    def can(self, permission: str) -> bool: ...


Auth = Callable[[Request], "PrincipalLike | None"]
KpisFn = Callable[..., Any]


class CommandError(Exception):
    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def _str(d: dict[str, Any], key: str, *, required: bool = True, default: str | None = None) -> str | None:
    v = d.get(key, default)
    if v is None:
        if required:
            raise CommandError("bad_request", 400, f"'{key}' is required")
        return None
    if not isinstance(v, str) or (required and not v):
        raise CommandError("bad_request", 400, f"'{key}' must be a non-empty string")
    if len(v) > 2000:
        raise CommandError("bad_request", 400, f"'{key}' must be at most 2000 characters")
    return v or None if not required else v


class SupervisorCommands:
    """The operations supervisors may perform. Each takes the principal and a plain dict
    (the WebSocket message or the REST path+query+body merged) and returns a plain dict."""

    def __init__(self, engine: DecisionEngine, audit: AuditLog, kpis_fn: KpisFn | None = None,
                 learning: Learning | None = None, writer: Any = None) -> None:  # fmt: skip
        """`writer` (the server's Sink) takes the per-call audit entries this API writes
        (dispositions); reads go to `audit`. Without one, `audit` takes both."""
        self.engine = engine
        self.audit = audit
        self.writer = writer if writer is not None else audit
        self.kpis_fn = kpis_fn
        self.learning = learning
        self._ops: dict[str, Callable[[PrincipalLike, dict[str, Any]], Any]] = {
            "list_actions": self.list_actions, "get_action": self.get_action,
            "approve": self.approve, "reject": self.reject, "cancel": self.cancel, "rollback": self.rollback,
            "override": self.override, "pause_playbook": self.pause, "resume_playbook": self.resume,
            "list_playbooks": self.list_playbooks, "audit_query": self.audit_query, "kpis": self.kpis,
            "disposition": self.disposition,
            # learning from feedback: thresholds per playbook and intent dataset versions
            "calibrate": self.calibrate, "list_thresholds": self.list_thresholds,
            "shadow_threshold": self.shadow_threshold, "compare_threshold": self.compare_threshold,
            "promote_threshold": self.promote_threshold, "rollback_threshold": self.rollback_threshold,
            "build_intent_dataset": self.build_intent_dataset, "list_intent_datasets": self.list_intent_datasets,
            "get_intent_dataset": self.get_intent_dataset, "compare_intent_datasets": self.compare_intent_datasets,
            "promote_intent_dataset": self.promote_intent_dataset,
            "rollback_intent_dataset": self.rollback_intent_dataset,
        }  # fmt: skip
        #: the permission (auth.PERMISSIONS) each operation needs; call control by default
        self._needs: dict[str, str] = {op: "call_control" for op in self._ops}
        self._needs.update({"audit_query": "audit_read", "kpis": "analytics", "list_playbooks": "call_control",
                            **{op: "learning" for op in ("calibrate", "list_thresholds", "shadow_threshold",
                                                         "compare_threshold", "promote_threshold", "rollback_threshold",
                                                         "build_intent_dataset", "list_intent_datasets", "get_intent_dataset",
                                                         "compare_intent_datasets", "promote_intent_dataset",
                                                         "rollback_intent_dataset")}})  # fmt: skip
        #: cluster mode: runs a command on the node that holds its call, or returns None to
        #: run it here (`callcue.cluster.node.ClusterNode.route`)
        self.route: Callable[[str, PrincipalLike, dict[str, Any]], Awaitable[dict[str, Any] | None]] | None = None

    def add_ops(self, ops: dict[str, Callable[[PrincipalLike, dict[str, Any]], Any]],
                needs: str | dict[str, str] = "call_control") -> None:  # fmt: skip
        """Operations another module provides (QA), under the same checks and routing; `needs`
        is the permission they require (one for all, or per operation)."""
        self._ops.update(ops)
        for op in ops:
            self._needs[op] = needs if isinstance(needs, str) else needs.get(op, "call_control")

    def allowed(self, principal: PrincipalLike, kind: str) -> bool:
        can = getattr(principal, "can", None)
        return bool(can is not None and can(self._needs.get(kind, "call_control")))

    def has(self, kind: str) -> bool:
        return kind in self._ops

    @property
    def operations(self) -> list[str]:
        return sorted(self._ops)

    def _in_scope(self, principal: PrincipalLike, args: dict[str, Any]) -> None:
        """A supervisor scoped to teams acts only on their agents' calls and actions."""
        may_see = getattr(principal, "may_see", None)
        if may_see is None or getattr(principal, "scope", None) is None:
            return
        agent: Any = ...
        if isinstance(args.get("action_id"), str):
            try:
                agent = self.engine.action(args["action_id"]).agent_id
            except UnknownAction:
                return  # the operation says not found
        elif isinstance(args.get("call_id"), str):
            st = self.engine.switches.calls.get(args["call_id"])
            agent = st.info.agent_id if st is not None else ...
        if agent is not ... and not may_see(agent):
            raise CommandError("forbidden", 403, "that call is outside your teams")

    async def handle_supervisor_message(self, principal: PrincipalLike, msg: dict[str, Any]) -> dict[str, Any]:
        """Entry point for `/ws/agent` (role=supervisor). Reply type is `<type>_result` or `error`."""
        kind = msg.get("type")
        try:
            if not isinstance(kind, str) or kind not in self._ops:
                raise CommandError("unknown_type", 400, f"unknown supervisor command {kind!r}; one of: {', '.join(self.operations)}")
            if not self.allowed(principal, kind):
                raise CommandError("forbidden", 403, f"{getattr(principal, 'role', '?')} may not {kind} ({self._needs.get(kind)})")
            out = await self.run(kind, principal, msg)
        except CommandError as e:
            return {"type": "error", "code": e.code, "message": e.message, "request": kind}
        return {"type": f"{kind}_result", "ok": True, **out}

    async def run(self, kind: str, principal: PrincipalLike, args: dict[str, Any], *, here: bool = False) -> dict[str, Any]:
        """Run the operation named `kind`, mapping the engine's refusals to CommandError; in a
        cluster, on the node that holds its call unless `here` (a command another node routed
        to this one)."""
        op = self._ops.get(kind)
        if op is None:
            raise CommandError("unknown_type", 400, f"unknown supervisor command {kind!r}")
        try:
            args = wire.clean_tree(args, "request", depth=16, max_items=20_000)
            if self.route is not None and not here:
                routed = await self.route(kind, principal, args)
                if routed is not None:
                    return routed
            self._in_scope(principal, args)
            out: dict[str, Any] = await op(principal, args)
            return out
        except CommandError:
            raise
        except UnknownAction as e:
            raise CommandError("not_found", 404, str(e)) from None
        except AuditUnavailable as e:
            raise CommandError("audit_unavailable", 503, str(e)) from None
        except InvalidTransition as e:
            raise CommandError("conflict", 409, str(e)) from None
        except LearningError as e:  # "no version 7" -> 404; "version 7 is retired; ..." -> 409
            raise (CommandError("not_found", 404, str(e)) if str(e).startswith("no ")
                   else CommandError("conflict", 409, str(e))) from None  # fmt: skip
        except ValidationError as e:
            msgs = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors())
            raise CommandError("bad_request", 400, f"invalid action: {msgs}") from None
        except (ValueError, TypeError, AuditPayloadError, SensitiveDataError) as e:
            raise CommandError("bad_request", 400, str(e)) from None

    # ---------------------------------------------------------------- operations
    async def list_actions(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        recs = self.engine.actions(state=_str(a, "state", required=False), call_id=_str(a, "call_id", required=False),
                                   playbook_id=_str(a, "playbook_id", required=False))  # fmt: skip
        return {"actions": [r.to_dict() for r in recs]}

    async def get_action(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        return {"action": self.engine.action(_str(a, "action_id") or "").to_dict()}

    async def approve(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        recs = await self.engine.approve(_str(a, "action_id") or "", p.user_id, note=_str(a, "note", required=False) or "")
        return {"actions": [r.to_dict() for r in recs]}

    async def reject(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        recs = await self.engine.reject(_str(a, "action_id") or "", p.user_id, reason=_str(a, "reason", required=False) or "")
        return {"actions": [r.to_dict() for r in recs]}

    async def cancel(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        rec = await self.engine.cancel(_str(a, "action_id") or "", p.user_id, reason=_str(a, "reason", required=False) or "")
        return {"action": rec.to_dict()}

    async def rollback(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        rec = await self.engine.rollback(_str(a, "action_id") or "", p.user_id, reason=_str(a, "reason", required=False) or "")
        return {"action": rec.to_dict()}

    async def override(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        replacement = a.get("action")
        if replacement is not None and not isinstance(replacement, dict):
            raise CommandError("bad_request", 400, "'action' must be an action object (e.g. {\"kind\": \"hint\", ...}) or null")
        new = await self.engine.override(p.user_id, replacement, action_id=_str(a, "action_id", required=False),
                                         call_id=_str(a, "call_id", required=False),
                                         reason=_str(a, "reason", required=False) or "")  # fmt: skip
        return {"replacement": new.to_dict() if new else None}

    async def pause(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        pid = _str(a, "playbook_id") or ""
        call_id = _str(a, "call_id", required=False)
        n = await self.engine.pause(pid, p.user_id, call_id=call_id, reason=_str(a, "reason", required=False) or "")
        return {"playbook_id": pid, "call_id": call_id, "paused": True, "cancelled_actions": n}

    async def resume(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        pid = _str(a, "playbook_id") or ""
        call_id = _str(a, "call_id", required=False)
        await self.engine.resume(pid, p.user_id, call_id=call_id)
        return {"playbook_id": pid, "call_id": call_id, "paused": self.engine.is_paused(pid, call_id)}

    async def list_playbooks(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        return {"digest": self.engine.playbooks.digest, "playbooks": self.engine.playbook_status()}

    def filters(self, a: dict[str, Any]) -> dict[str, Any]:
        f: dict[str, Any] = {k: _str(a, k, required=False) for k in ("call_id", "agent_id", "playbook_id", "action_id", "kind")}
        for k in ("since", "until"):
            if a.get(k) not in (None, ""):
                v = a[k]
                try:
                    f[k] = float(v)
                except (TypeError, ValueError):
                    f[k] = v  # ISO-8601; the audit log parses it and says precisely when it cannot
        return {k: v for k, v in f.items() if v is not None}

    async def audit_query(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        f = self.filters(a)
        limit = _int(a.get("limit"), "limit", 1000, 1, 10_000)
        after = _int(a.get("after_seq"), "after_seq", None, 0, None)
        rows = await self.audit.query(**f, limit=limit, after_seq=after)
        shown = getattr(p, "can", lambda _x: True)("read_transcripts")
        return {"entries": [e.to_dict() if shown else without_words(e.to_dict()) for e in rows],
                "next_after_seq": rows[-1].seq if len(rows) == limit else None}  # fmt: skip

    async def kpis(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        if self.kpis_fn is None:
            raise CommandError("not_available", 404, "KPIs are not configured on this server")
        by = a.get("by") or "playbook"
        if by not in ("playbook", "agent"):
            raise CommandError("bad_request", 400, f"'by' must be 'playbook' or 'agent', got {by!r}")
        f = {k: v for k, v in self.filters(a).items() if k in ("since", "until")}
        out = self.kpis_fn(by=by, **f)
        if inspect.isawaitable(out):
            out = await out
        return {"by": by, "kpis": out}

    async def disposition(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        call_id = _str(a, "call_id") or ""
        payload = {"outcome": a.get("outcome"), "notes": _str(a, "notes", required=False) or ""}
        e = await self.writer.append("disposition", call_id=call_id, agent_id=_str(a, "agent_id", required=False),
                                    actor=p.user_id, payload=payload)  # fmt: skip
        return {"call_id": call_id, "outcome": payload["outcome"], "seq": e.seq}

    # ---------------------------------------------------------------- learning
    def _learning(self) -> Learning:
        if self.learning is None:
            raise CommandError("not_available", 404, "learning is not configured on this server")
        return self.learning

    async def calibrate(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        """Threshold the playbook's accept/dismiss feedback supports, per confidence band.
        A change is stored as a `proposed` version; `promote: true` also makes it active at
        once (the engine applies it to the next signal), otherwise review it with
        shadow/compare/promote."""
        lrn = self._learning()
        pid = _str(a, "playbook_id") or ""
        pb = self.engine.playbook(pid)
        current = await lrn.threshold_for(pb.id, pb.min_confidence)
        cal = await lrn.calibrate(pb.id, current=current, target=_float(a.get("target"), "target", 0.6),
                                  band=_float(a.get("band"), "band", 0.1),
                                  min_count=_int(a.get("min_count"), "min_count", 20, 1, 100_000) or 20,
                                  max_step=_float(a.get("max_step"), "max_step", 0.1),
                                  since=a.get("since"), until=a.get("until"))  # fmt: skip
        version = None
        if cal.changed:
            if not await lrn.active(pb.id):  # seed the file's value so a rollback has somewhere to go
                await lrn.add_threshold(pb.id, pb.min_confidence, status="active", actor=p.user_id,
                                        reason={"seed": "playbook min_confidence"})  # fmt: skip
            v = await lrn.add_threshold(pb.id, cal.proposed, status="proposed", actor=p.user_id,
                                        reason={"calibration": cal.to_dict()})  # fmt: skip
            if a.get("promote") in (True, "true", "1"):
                v = await lrn.promote(v.version, actor=p.user_id)
            version = asdict(v)
        return {"playbook_id": pb.id, "calibration": cal.to_dict(), "changed": cal.changed, "version": version,
                "threshold_now": await lrn.threshold_for(pb.id, pb.min_confidence)}  # fmt: skip

    async def list_thresholds(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        lrn = self._learning()
        pb = self.engine.playbook(_str(a, "playbook_id") or "")
        return {"playbook_id": pb.id, "file_threshold": pb.min_confidence,
                "threshold_now": await lrn.threshold_for(pb.id, pb.min_confidence),
                "versions": [asdict(v) for v in await lrn.versions(pb.id)]}  # fmt: skip

    async def shadow_threshold(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        v = await self._learning().start_shadow(_int(a.get("version"), "version", None, 1, None) or 0, actor=p.user_id)
        self.engine.refresh_shadows(v.playbook_id)  # start evaluating it on the next signal
        return {"version": asdict(v)}

    async def compare_threshold(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        r = await self._learning().compare(_int(a.get("version"), "version", None, 1, None) or 0)
        return {"report": r.to_dict()}

    async def promote_threshold(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        v = await self._learning().promote(_int(a.get("version"), "version", None, 1, None) or 0, actor=p.user_id)
        self.engine.refresh_shadows(v.playbook_id)
        return {"version": asdict(v)}

    async def rollback_threshold(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        pb = self.engine.playbook(_str(a, "playbook_id") or "")
        v = await self._learning().rollback(pb.id, actor=p.user_id)
        return {"version": asdict(v), "threshold_now": v.threshold}

    async def build_intent_dataset(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        """Snapshot the utterances agents confirmed (accepted hint -> its intent; corrected ->
        the correction) as a new `proposed` dataset version; null when nothing changed."""
        v = await self._learning().build_intent_dataset(actor=p.user_id)
        return {"dataset": v.to_dict() if v else None}

    async def list_intent_datasets(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        lrn = self._learning()
        act = await lrn.active_dataset()
        return {"active": act.version if act else None, "datasets": [v.to_dict() for v in await lrn.dataset_versions()]}

    async def get_intent_dataset(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        lrn = self._learning()
        v = await lrn.dataset_version(_int(a.get("version"), "version", None, 1, None) or 0)
        return {"dataset": v.to_dict(), "examples": await lrn.dataset_examples(v.version)}

    async def compare_intent_datasets(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        return await self._learning().compare_datasets(_int(a.get("version"), "version", None, 1, None) or 0,
                                                       _int(a.get("against"), "against", None, 1, None))  # fmt: skip

    async def promote_intent_dataset(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        v = await self._learning().promote_dataset(_int(a.get("version"), "version", None, 1, None) or 0, actor=p.user_id)
        return {"dataset": v.to_dict()}

    async def rollback_intent_dataset(self, p: PrincipalLike, a: dict[str, Any]) -> dict[str, Any]:
        v = await self._learning().rollback_dataset(actor=p.user_id)
        return {"active": v.to_dict() if v else None}


def _float(v: Any, name: str, default: float) -> float:
    if v in (None, ""):
        return default
    if isinstance(v, bool):
        raise CommandError("bad_request", 400, f"'{name}' must be a number, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        raise CommandError("bad_request", 400, f"'{name}' must be a number, got {str(v)[:40]!r}") from None
    if not math.isfinite(f):
        raise CommandError("bad_request", 400, f"'{name}' must be a finite number, got {str(v)[:40]!r}")
    return f


def _int(v: Any, name: str, default: int | None, lo: int, hi: int | None) -> int | None:
    if v in (None, ""):
        return default
    try:
        n = int(v)
    except (TypeError, ValueError, OverflowError):
        raise CommandError("bad_request", 400, f"'{name}' must be an integer, got {str(v)[:40]!r}") from None
    hi = wire.INT64_MAX if hi is None else hi
    if n < lo or n > hi:
        raise CommandError("bad_request", 400, f"'{name}' must be between {lo} and {hi if hi is not None else 'any'}, got {n}")
    return n
