"""Supervisor commands for QA: a call's scorecards, a reviewer's changes, and the agreement
between automatic and human answers. Registered on SupervisorCommands, so they are the same
over /ws/agent (`{"type": "qa_review", ...}`) and REST (`/api/v1/calls/{id}/scorecard`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from callcue.egress.supervisor_api import CommandError
from callcue.qa.card import Scorecard
from callcue.qa.review import ReviewError, agreement, apply_review
from callcue.qa.scoring import facts_from_record, score_call


class QaReader(Protocol):
    async def call_agent(self, call_id: str) -> str | bool | None: ...
    async def call_record(self, call_id: str) -> dict[str, Any]: ...
    async def ended_calls(self, since: float) -> list[dict[str, Any]]: ...
    async def qa_evaluations(self, call_id: str | None = None, card_id: str | None = None,
                             card_version: int | None = None) -> list[dict[str, Any]]: ...  # fmt: skip


class QaWriter(Protocol):
    async def qa_evaluation(self, call_id: str, result: dict[str, Any], source: str = "auto") -> None: ...
    async def append(self, kind: str, **fields: Any) -> Any: ...


# (path under /api/v1, operation, takes a JSON body, method)
ROUTES: list[tuple[str, str, bool, str]] = [
    ("/calls/{call_id}/scorecard", "get_scorecard", False, "GET"),
    ("/calls/{call_id}/scorecard/review", "qa_review", True, "POST"),
    ("/qa/agreement", "qa_agreement", False, "GET"),
    ("/qa/compare", "qa_compare", False, "GET"),
]


class QaCommands:
    def __init__(self, cards: Callable[[], list[Scorecard]], store: QaReader, writer: QaWriter) -> None:
        self._cards = cards
        self.store = store
        self.writer = writer

    def ops(self) -> dict[str, Callable[[Any, dict[str, Any]], Any]]:
        return {"get_scorecard": self.get_scorecard, "qa_review": self.qa_review, "qa_agreement": self.qa_agreement,
                "qa_compare": self.qa_compare}

    def _card(self, card_id: str | None, version: Any = None) -> Scorecard:
        cards = self._cards()
        if not cards:
            raise CommandError("not_available", 404, "no scorecards are loaded ([qa] scorecards_dir)")
        found = [c for c in cards if (card_id is None or c.id == card_id) and (version is None or c.version == int(version))]
        if not found:
            raise CommandError("not_found", 404, f"no scorecard {card_id or ''} {('v' + str(version)) if version else ''}".strip())
        return max(found, key=lambda c: c.version)

    async def get_scorecard(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        call_id = _need(a, "call_id")
        if await self.store.call_agent(call_id) is False:
            raise CommandError("not_found", 404, f"no call {call_id!r}")
        record = await self.store.call_record(call_id)
        return {"call_id": call_id, "evaluations": record.get("qa", []), "summary": record.get("summary")}

    async def qa_review(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        call_id = _need(a, "call_id")
        reason = _need(a, "reason")
        changes = a.get("answers")
        if not isinstance(changes, dict) or not changes or not all(isinstance(k, str) for k in changes):
            raise CommandError("bad_request", 400, "'answers' must map question ids to answers")
        evals = await self.store.qa_evaluations(call_id=call_id, card_id=a.get("card_id"))
        autos = [e for e in evals if e["source"] == "auto"]
        if not autos:
            raise CommandError("not_found", 404, f"call {call_id!r} has no automatic evaluation to review")
        auto = autos[-1]
        card = self._card(auto["card_id"], auto["card_version"])
        try:
            result = apply_review(card, auto, {k: str(v) for k, v in changes.items()}, p.user_id, reason)
        except ReviewError as e:
            raise CommandError("bad_request", 400, str(e)) from None
        # audited first: a human change to a score must never exist without its entry
        await self.writer.append("qa_reviewed", call_id=call_id, actor=p.user_id,
                                 payload={"card_id": card.id, "card_version": card.version, "reason": reason,
                                          "changes": {k: {"from": next(x["answer"] for x in auto["answers"] if x["question_id"] == k),
                                                          "to": str(v)} for k, v in changes.items()},
                                          "auto_score": auto.get("score"), "score": result["score"]})  # fmt: skip
        await self.writer.qa_evaluation(call_id, result, source=f"human:{p.user_id}")
        return {"call_id": call_id, "evaluation": result}

    async def qa_agreement(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        card = self._card(a.get("card_id"), a.get("card_version"))
        evals = await self.store.qa_evaluations(card_id=card.id, card_version=card.version)
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for e in evals:  # oldest first: the last of each kind per call wins
            latest[(e["call_id"], "auto" if e["source"] == "auto" else "human")] = e
        pairs = [(latest[(cid, "auto")], h) for (cid, kind), h in latest.items() if kind == "human" and (cid, "auto") in latest]
        return {"card_id": card.id, "card_version": card.version, "reviewed_calls": len(pairs),
                "questions": agreement(card, pairs)}  # fmt: skip


    async def qa_compare(self, p: Any, a: dict[str, Any]) -> dict[str, Any]:
        """Two versions of a card on the same stored calls, before promoting the new one: the
        score of each call under both, and per question how many answers would change."""
        card_id = _need(a, "card_id")
        try:
            va, vb = int(a.get("version_a") or 0), int(a.get("version_b") or 0)
            limit = max(1, min(500, int(a.get("limit") or 100)))
        except (TypeError, ValueError):
            raise CommandError("bad_request", 400, "version_a, version_b and limit must be integers") from None
        old, new = self._card(card_id, va), self._card(card_id, vb)
        calls = (await self.store.ended_calls(0.0))[:limit]
        rows, changed = [], {q.id: 0 for _s, q in new.questions()}
        for c in calls:
            facts = facts_from_record(await self.store.call_record(c["call_id"]))
            ra, rb = score_call(old, facts), score_call(new, facts)
            before = {x["question_id"]: x["answer"] for x in ra["answers"]}
            for x in rb["answers"]:
                if x["question_id"] in before and before[x["question_id"]] != x["answer"]:
                    changed[x["question_id"]] += 1
            rows.append({"call_id": c["call_id"], "score_a": ra["score"], "score_b": rb["score"]})
        scored = [(r["score_a"], r["score_b"]) for r in rows if r["score_a"] is not None and r["score_b"] is not None]
        mean = (lambda xs: round(sum(xs) / len(xs), 1) if xs else None)
        return {"card_id": card_id, "version_a": old.version, "version_b": new.version, "calls": rows,
                "mean_a": mean([x for x, _ in scored]), "mean_b": mean([y for _, y in scored]),
                "answers_changed": changed,
                "only_in_b": sorted({q.id for _s, q in new.questions()} - {q.id for _s, q in old.questions()})}  # fmt: skip


def _need(a: dict[str, Any], key: str) -> str:
    v = a.get(key)
    if not isinstance(v, str) or not v.strip():
        raise CommandError("bad_request", 400, f"'{key}' is required")
    if len(v) > 2000:
        raise CommandError("bad_request", 400, f"'{key}' must be at most 2000 characters")
    return v
