"""A knowledge card: the passage that answers the customer, shown as a hint the desktop draws
as a card (title, passage with the answering span, article link, confidence, why).

Why a hint underneath: a card then has everything a hint has, with no second path: it is
audited (`hint_shown` with the KB version and passage) before it is stored and sent, it is
numbered with the call's events and replayed to a late desktop, and the agent's verdict
(accept, not useful, copy) is hint feedback that calibrates the playbook's threshold and the
passage's standing (supervisor `kb_report`). Undone, like a hint, by striking it through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from callcue.decide.actions.base import ActionPorts, ActionSpec
from callcue.decide.actions.hint import HintKind
from callcue.events import Hint, new_id

if TYPE_CHECKING:
    from callcue.decide.actions.record import ActionRecord


class KnowledgeAction(ActionSpec):
    kind: Literal["knowledge"]
    severity: Literal["info", "warning", "critical"] = "info"


def build_card(rec: ActionRecord, spec: KnowledgeAction) -> Hint:
    sig = rec.values.get("signal") or {}
    a: dict[str, Any] = dict(sig.get("attrs") or {})
    passage = str(a.get("passage") or "")
    span = a.get("span") or [0, len(passage)]
    return Hint(
        call_id=rec.call_id,
        title=str(a.get("title") or "Knowledge"),
        body=passage,
        suggested_reply=passage[int(span[0]): int(span[1])].strip(),
        severity=spec.severity,
        source=f"{rec.playbook_id}@{rec.playbook_version}",
        signal_ids=list(rec.signal_ids),
        hint_id=rec.hint_id or new_id("hint"),
        audio_received_at=float(rec.values.get("audio_received_at", 0.0)),
        attrs={"card": "knowledge", "action_id": rec.action_id, "autonomy": rec.autonomy,
               "passage_id": a.get("passage_id"), "doc_id": a.get("doc_id"), "section": a.get("section") or "",
               "url": a.get("url") or "", "span": [int(span[0]), int(span[1])], "why": list(a.get("why") or []),
               "kb_version": a.get("kb_version"), "confidence": sig.get("confidence"),
               "alternatives": list(a.get("alternatives") or []),
               "question": (sig.get("text") or "")[:300]},
    )  # fmt: skip


class KnowledgeKind(HintKind):
    """Shown, published and retracted as a hint is; only the card it builds differs."""

    name = "knowledge"
    spec = KnowledgeAction

    def card(self, rec: ActionRecord) -> Hint:
        assert isinstance(rec.spec, KnowledgeAction)
        return build_card(rec, rec.spec)

    async def run(self, rec: ActionRecord, ports: ActionPorts) -> dict[str, Any]:
        out = await super().run(rec, ports)
        assert rec.shown is not None
        return {**out, "passage_id": rec.shown.attrs.get("passage_id"), "kb_version": rec.shown.attrs.get("kb_version")}


KIND = KnowledgeKind()
