"""Chat and email transcripts: JSON turns with roles and times, through the same understanding,
QA and summary as a call's finals.

Why as a call: a chat is an interaction like a phone call (a customer, an agent, turns in
time); making it a call with no audio channels, whose turns enter the pipeline where ASR
finals do, means one scorecard, one summary, one set of detectors and playbooks, and one
store covers voice and text. Times are seconds from the start of the interaction; without
them, turns are placed 5 s apart.
"""

from __future__ import annotations

from typing import Any, cast

from callcue.events import Channel, Transcript
from callcue.platforms.base import CallStart

ROLES = {"customer": "customer", "user": "customer", "client": "customer", "agent": "agent", "assistant": "agent"}
MAX_TURNS = 2000
MAX_TEXT = 8000


class TextInteractionError(ValueError):
    pass


def parse_metadata(body: dict[str, Any]) -> dict[str, Any]:
    """`metadata`: flat strings and numbers the thread carries as a call's would (queue,
    customer_id for repeat contacts, started_at as Unix time for a thread from the past)."""
    meta = body.get("metadata", {})
    if not isinstance(meta, dict) or len(meta) > 50:
        raise TextInteractionError("metadata must be an object of at most 50 keys")
    for k, v in meta.items():
        if not isinstance(k, str) or len(k) > 64 or isinstance(v, bool) or not isinstance(v, (str, int, float)) or (
                isinstance(v, str) and len(v) > 500):  # fmt: skip
            raise TextInteractionError(f"metadata {str(k)[:64]!r}: keys are strings, values strings (<= 500) or numbers")
    if "started_at" in meta and not isinstance(meta["started_at"], (int, float)):
        raise TextInteractionError("metadata started_at must be a Unix time in seconds")
    return dict(meta)


def parse_turns(body: dict[str, Any]) -> tuple[str, str, str | None, list[tuple[str, float, str]]]:
    """(interaction id, channel kind, agent id, [(role, time, text)]) from a request body."""
    iid = body.get("interaction_id")
    if not isinstance(iid, str) or not iid or len(iid) > 200:
        raise TextInteractionError("interaction_id must be a non-empty string (at most 200 characters)")
    kind = body.get("channel", "chat")
    if kind not in ("chat", "email"):
        raise TextInteractionError("channel must be chat or email")
    agent = body.get("agent_id")
    if agent is not None and not isinstance(agent, str):
        raise TextInteractionError("agent_id must be a string")
    turns = body.get("turns")
    if not isinstance(turns, list) or not turns or len(turns) > MAX_TURNS:
        raise TextInteractionError(f"turns must be a list of 1 to {MAX_TURNS} turns")
    out: list[tuple[str, float, str]] = []
    last = -1.0
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise TextInteractionError(f"turn {i}: must be an object with role and text")
        role = ROLES.get(str(t.get("role", "")).lower())
        if role is None:
            raise TextInteractionError(f"turn {i}: role must be customer or agent")
        text = t.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise TextInteractionError(f"turn {i}: text must be a non-empty string of at most {MAX_TEXT} characters")
        at = t.get("time", i * 5.0)
        if isinstance(at, bool) or not isinstance(at, (int, float)) or at < last:
            raise TextInteractionError(f"turn {i}: time must be seconds from the start, not decreasing")
        last = float(at)
        out.append((role, float(at), text.strip()))
    return iid, kind, agent, out


async def run_text_interaction(calls: Any, body: dict[str, Any]) -> str:
    """Open the interaction as a call, feed its turns, end it; returns its call id. QA and the
    summary follow as for any call that ends."""
    iid, kind, agent, turns = parse_turns(body)
    meta = parse_metadata(body)
    call_id = f"{kind}-{iid}"
    call = await calls.start(CallStart(call_id=call_id, encoding="L16", sample_rate=8000, channels=(), agent_id=agent,
                                       platform=kind, metadata={**meta, "interaction_id": iid, "channel": kind}))  # fmt: skip
    seg = {"customer": 0, "agent": 0}
    for i, (role, at, text) in enumerate(turns):
        seg[role] += 1
        end = turns[i + 1][1] if i + 1 < len(turns) and turns[i + 1][1] > at else at + max(1.0, len(text.split()) * 0.4)
        await call.text(Transcript(call_id, cast(Channel, role), seg[role], 0, text, True, at, end, confidence=1.0, engine=kind))
    await calls.stop(call_id, "end_of_thread")
    return call_id
