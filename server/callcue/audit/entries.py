"""What one audit entry is, how it is hashed and checked, and the payload rules.

Kept apart from the log so that the KPI projection (`audit/kpis.py`) and the learning
store can read entries and times without importing the writer (which imports them).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64

# Kinds the decision engine writes (documented in docs/audit.md). Other snake_case kinds are
# accepted so new stages can audit without a schema change; only the three KPI kinds below
# have a payload contract that append() enforces.
KNOWN_KINDS: tuple[str, ...] = (
    "signal", "playbook_matched", "suppressed", "condition_error", "action_proposed",
    "action_pending_approval", "action_approved", "action_rejected", "action_expired",
    "action_dispatched", "action_succeeded", "action_failed", "action_cancelled",
    "action_rolled_back", "override", "paused", "resumed", "hint_shown", "feedback",
    "disposition", "anomaly", "threshold_changed", "dataset_version_created",
    "model_version_promoted", "call_ended",
)
FEEDBACK_ACTIONS = ("accepted", "dismissed", "corrected")
OUTCOMES = ("resolved", "escalated", "churned")

_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# 13+ digits, optionally split by single spaces/dashes (card/account numbers), not part of a
# longer word such as a random hex id (`sig_3f0012...`).
_SECRET_RE = re.compile(r"(?<![0-9A-Za-z_])\d(?:[ -]?\d){12,}(?![0-9A-Za-z])")

_COLUMNS = ("seq", "ts", "kind", "call_id", "agent_id", "playbook_id", "playbook_version",
            "action_id", "actor", "payload", "prev_hash", "hash")  # fmt: skip



class SensitiveDataError(ValueError):
    """A payload looked like it holds an unmasked card/account number."""


class AuditPayloadError(ValueError):
    """A payload broke the contract of its kind (e.g. feedback without hint_id)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: float
    kind: str
    call_id: str | None
    agent_id: str | None
    playbook_id: str | None
    playbook_version: str | None  # stored as text: playbooks may version with ints or strings
    action_id: str | None
    actor: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditEntry:
        missing = [c for c in _COLUMNS if c not in d]
        if missing:
            raise ValueError(f"audit entry is missing fields: {', '.join(missing)}")
        payload = d["payload"]
        if isinstance(payload, str):
            payload = json.loads(payload)
        return cls(seq=int(d["seq"]), ts=float(d["ts"]), kind=d["kind"], call_id=d["call_id"],
                   agent_id=d["agent_id"], playbook_id=d["playbook_id"], playbook_version=d["playbook_version"],
                   action_id=d["action_id"], actor=d["actor"], payload=payload, prev_hash=d["prev_hash"],
                   hash=d["hash"])  # fmt: skip


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""
    last_seq: int = 0
    last_hash: str = GENESIS_HASH


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, UTF-8 as is, NaN/Infinity refused: one byte string per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


#: the payload of an entry whose content was erased: its digest stays, so the chain verifies
ERASED = "__erased__"
#: the payload as stored when call text is encrypted at rest: the sealed canonical payload and
#: its digest, so the chain verifies without the keys (an auditor checks it, never reads it)
SEALED = "__sealed__"


def payload_digest(payload: dict[str, Any]) -> str:
    """sha256 of the canonical payload, or the digest an erased or sealed payload kept."""
    if isinstance(payload, dict) and isinstance(payload.get("payload_sha256"), str) and (
            payload.get(ERASED) is True or isinstance(payload.get(SEALED), str)):  # fmt: skip
        return str(payload["payload_sha256"])
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def sealed_payload(sealed: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {SEALED: sealed, "payload_sha256": payload_digest(payload)}


def erased_payload(payload: dict[str, Any], erasure_seq: int | None = None) -> dict[str, Any]:
    """What an entry's payload becomes when its call or customer is erased."""
    return {ERASED: True, "payload_sha256": payload_digest(payload), "erasure_seq": erasure_seq}


def entry_hash(fields: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of every column except `hash` itself (prev_hash
    included), the payload by its digest: a payload can be erased (GDPR, a customer's
    request) while the chain, which covers the digest, still verifies."""
    material: dict[str, Any] = {c: fields[c] for c in _COLUMNS if c not in ("hash", "payload")}
    material["payload_sha256"] = payload_digest(fields["payload"])
    return hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()


def entry_hash_v1(fields: dict[str, Any]) -> str:
    """The hash of entries written before payloads could be erased (the payload in full)."""
    material = {c: fields[c] for c in _COLUMNS if c != "hash"}
    return hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()


def find_unmasked_digits(payload: Any, path: str = "payload") -> str | None:
    """JSON path of the first string/int holding a 13+ digit run, or None.

    Defence in depth: the pipeline masks card and account numbers before anything reaches the
    decision layer; if one slipped through it must not become permanent in an append-only log.
    Floats are not checked (confidences like 0.1234567890123 are not secrets).
    """
    if isinstance(payload, dict):
        for k, v in payload.items():
            if isinstance(k, str) and _SECRET_RE.search(k):
                return f"{path} (a key)"
            hit = find_unmasked_digits(v, f"{path}.{k}")
            if hit:
                return hit
    elif isinstance(payload, (list, tuple)):
        for i, v in enumerate(payload):
            hit = find_unmasked_digits(v, f"{path}[{i}]")
            if hit:
                return hit
    elif isinstance(payload, bool):
        return None
    elif isinstance(payload, int):
        if abs(payload) >= 10**12:
            return path
    elif isinstance(payload, str):
        if _SECRET_RE.search(payload):
            return path
    return None


def to_epoch(value: float | str | datetime | None) -> float | None:
    """Accept epoch seconds, a datetime or an ISO-8601 string (naive = UTC) for time filters."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a time filter cannot be a bool")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        s = value.strip()
        try:
            return float(s)
        except ValueError:
            pass
        try:
            value = datetime.fromisoformat(s)
        except ValueError:
            raise ValueError(f"time {value!r} is neither epoch seconds nor ISO-8601 (e.g. 2026-11-24T08:00:00Z)") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    raise TypeError(f"unsupported time value {value!r}")


def _check_kpi_contract(kind: str, payload: dict[str, Any]) -> None:
    if kind in ("hint_shown", "feedback"):
        hid = payload.get("hint_id")
        if not isinstance(hid, str) or not hid:
            raise AuditPayloadError(f"{kind} payload needs a non-empty string 'hint_id'")
    if kind == "hint_shown":
        conf = payload.get("confidence")
        if conf is not None and (isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 <= conf <= 1):
            raise AuditPayloadError(f"hint_shown 'confidence' must be a number in [0, 1], got {conf!r}")
    if kind == "feedback" and payload.get("action") not in FEEDBACK_ACTIONS:
        raise AuditPayloadError(f"feedback 'action' must be one of {', '.join(FEEDBACK_ACTIONS)}, got {payload.get('action')!r}")
    if kind == "disposition" and payload.get("outcome") not in OUTCOMES:
        raise AuditPayloadError(f"disposition 'outcome' must be one of {', '.join(OUTCOMES)}, got {payload.get('outcome')!r}")


def verify_entries(entries: Iterable[AuditEntry | dict[str, Any]], *, contiguous: bool = True,
                   start_seq: int = 1, start_hash: str = GENESIS_HASH) -> VerifyResult:  # fmt: skip
    """Check a sequence of entries (from the DB or an exported JSONL file).

    With `contiguous=True` the entries must be the whole chain from `start_seq`; with False
    (a filtered export) only each entry's own hash is checked, which still proves no field
    of an exported entry was changed.
    """
    expected_seq, prev = start_seq, start_hash
    checked = 0
    for raw in entries:
        e = raw if isinstance(raw, AuditEntry) else AuditEntry.from_dict(raw)
        if contiguous:
            if e.seq != expected_seq:
                if e.seq > expected_seq:
                    why = f"seq {expected_seq}..{e.seq - 1} missing (rows deleted)"
                else:
                    why = f"seq {e.seq} appears where {expected_seq} was expected (rows reordered or duplicated)"
                return VerifyResult(False, checked, expected_seq, why, expected_seq - 1, prev)
            if e.prev_hash != prev:
                return VerifyResult(False, checked, e.seq, f"prev_hash of seq {e.seq} does not match the hash of seq "
                                    f"{e.seq - 1} (rows replaced or reordered)", expected_seq - 1, prev)  # fmt: skip
        d = e.to_dict()
        if entry_hash(d) != e.hash and entry_hash_v1(d) != e.hash:
            return VerifyResult(False, checked, e.seq, f"hash of seq {e.seq} does not match its content (row edited)",
                                expected_seq - 1, prev)  # fmt: skip
        checked += 1
        expected_seq, prev = e.seq + 1, e.hash
    return VerifyResult(True, checked, None, "", expected_seq - 1, prev)
