"""Intent examples confirmed by agents, built into immutable, reviewable dataset versions."""

from __future__ import annotations

import hashlib
from typing import Any

from callcue.audit.log import canonical_json, to_epoch
from callcue.learning.base import LearningBase
from callcue.learning.models import (
    DatasetVersion,
    LearningError,
    _label_from_correction,
)
from callcue.privacy.vault import Sealed


def _sealed(text: str, call_id: str | None) -> Any:
    """A call's words are sealed under its key (erased with it); corpus examples stay plain."""
    return Sealed(call_id, text) if call_id else text

class IntentDatasets(LearningBase):
    """Accepted and corrected hints become labelled examples; a build freezes them as a version."""

    # ---------------------------------------------------------------- intent datasets

    async def confirmed_examples(self, since: Any = None) -> list[dict[str, Any]]:
        """(text, intent) pairs agents confirmed: accepted -> the hint's intent, corrected -> the
        correction. Latest verdict per hint; hints without text or label are skipped."""
        await self.init()
        sql = ("SELECT hint_id, call_id, text, intent, feedback, correction FROM hint_facts"
               " WHERE feedback IN ('accepted', 'corrected') AND text IS NOT NULL")  # fmt: skip
        params: list[Any] = []
        if (s := to_epoch(since)) is not None:
            sql += " AND feedback_at >= ?"
            params.append(s)
        out = []
        for r in await self.db.fetchall(sql + " ORDER BY feedback_seq", params):
            label = r["intent"] if r["feedback"] == "accepted" else _label_from_correction(r["correction"])
            text = (r["text"] or "").strip()
            if label and text:
                out.append({"text": text, "intent": label, "source": r["feedback"], "hint_id": r["hint_id"],
                            "call_id": r["call_id"]})  # fmt: skip
        sql = "SELECT text, intent, source, call_id FROM intent_added_examples"
        params = []
        if (s := to_epoch(since)) is not None:
            sql += " WHERE added_at >= ?"
            params.append(s)
        for r in await self.db.fetchall(sql + " ORDER BY id", params):
            out.append({"text": r["text"], "intent": r["intent"], "source": r["source"], "hint_id": None,
                        "call_id": r["call_id"]})  # fmt: skip
        return out

    async def add_intent_examples(self, examples: list[dict[str, Any]], *, actor: str) -> DatasetVersion | None:
        """Labelled examples from outside hint feedback (a topic made into an intent), kept for
        every later build, then a new dataset version with them, proposed for review."""
        await self.init()
        now = float(self.clock())
        rows = [(_sealed(str(e["text"]).strip(), e.get("call_id")), str(e["intent"]), str(e.get("source") or "added"), e.get("call_id"), actor, now)
                for e in examples if str(e.get("text") or "").strip()]  # fmt: skip
        if not rows:
            raise LearningError("no examples to add")
        async with self.db.transaction():
            await self.db.executemany(
                "INSERT INTO intent_added_examples (text, intent, source, call_id, added_by, added_at) VALUES (?, ?, ?, ?, ?, ?)",
                rows)
            await self.audit.append("intent_examples_added", actor=actor, payload={
                "dataset": "intents", "n_examples": len(rows), "intents": sorted({r[1] for r in rows}),
                "sources": sorted({r[2] for r in rows})})  # fmt: skip
        return await self.build_intent_dataset(actor=actor)

    async def build_intent_dataset(self, *, actor: str = "system") -> DatasetVersion | None:
        """Snapshot all confirmed examples as a new dataset version (None if nothing changed).
        When the same text was confirmed with different labels, the latest verdict wins."""
        examples = await self.confirmed_examples()
        by_text: dict[str, dict[str, Any]] = {}
        for ex in examples:
            by_text[ex["text"].casefold()] = ex
        final = sorted(by_text.values(), key=lambda e: (e["intent"], e["text"]))
        digest = hashlib.sha256(canonical_json([[e["text"], e["intent"]] for e in final]).encode()).hexdigest()
        async with self.db.transaction():
            parent = await self.db.fetchone("SELECT version, digest FROM intent_datasets ORDER BY version DESC LIMIT 1")
            if parent is not None and parent["digest"] == digest:
                return None
            if not final:
                return None
            row = await self.db.fetchone(
                """INSERT INTO intent_datasets (parent_version, created_at, created_by, n_examples, digest)
                   VALUES (?, ?, ?, ?, ?) RETURNING version, created_at""",
                (parent["version"] if parent else None, float(self.clock()), actor, len(final), digest),
            )  # fmt: skip
            assert row is not None
            ver = int(row["version"])
            await self.db.executemany(
                "INSERT INTO intent_examples (dataset_version, text, intent, source, hint_id, call_id) VALUES (?, ?, ?, ?, ?, ?)",
                [(ver, _sealed(e["text"], e["call_id"]), e["intent"], e["source"], e["hint_id"], e["call_id"]) for e in final],
            )
            counts: dict[str, int] = {}
            for e in final:
                counts[e["intent"]] = counts.get(e["intent"], 0) + 1
            await self.audit.append("dataset_version_created", actor=actor, payload={
                "dataset": "intents", "version": ver, "parent_version": parent["version"] if parent else None,
                "n_examples": len(final), "per_intent": counts, "digest": digest})  # fmt: skip
        return DatasetVersion(ver, parent["version"] if parent else None, float(row["created_at"]), len(final), digest,
                              "proposed", actor)  # fmt: skip

    async def dataset_examples(self, version: int | None = None) -> list[dict[str, str]]:
        """Examples of one dataset version (latest when None) as {"text", "intent", "source"}."""
        await self.init()
        if version is None:
            version = await self.db.fetchval("SELECT MAX(version) FROM intent_datasets")
            if version is None:
                return []
        rows = await self.db.fetchall(
            "SELECT text, intent, source FROM intent_examples WHERE dataset_version = ? ORDER BY intent, text",
            (int(version),),
        )
        return rows

    async def dataset_versions(self) -> list[DatasetVersion]:
        await self.init()
        rows = await self.db.fetchall("SELECT * FROM intent_datasets ORDER BY version")
        return [DatasetVersion.from_row(r) for r in rows]

    async def dataset_version(self, version: int) -> DatasetVersion:
        await self.init()
        row = await self.db.fetchone("SELECT * FROM intent_datasets WHERE version = ?", (int(version),))
        if row is None:
            raise LearningError(f"no intent dataset version {version}")
        return DatasetVersion.from_row(row)

    async def active_dataset(self) -> DatasetVersion | None:
        """The version the intent detector should train on (None: config examples only)."""
        await self.init()
        row = await self.db.fetchone("SELECT * FROM intent_datasets WHERE status = 'active' ORDER BY version DESC")
        return DatasetVersion.from_row(row) if row else None

    async def compare_datasets(self, version: int, against: int | None = None) -> dict[str, Any]:
        """What a reviewer needs before promoting: examples added, removed and relabelled
        relative to `against` (default: the active version, else nothing)."""
        v = await self.dataset_version(version)
        base = (await self.dataset_version(against)) if against is not None else await self.active_dataset()
        new = {e["text"].casefold(): e for e in await self.dataset_examples(v.version)}
        old = {e["text"].casefold(): e for e in await self.dataset_examples(base.version)} if base else {}
        per_intent: dict[str, int] = {}
        for e in new.values():
            per_intent[e["intent"]] = per_intent.get(e["intent"], 0) + 1
        return {
            "version": v.version, "against": base.version if base else None,
            "added": [{"text": new[k]["text"], "intent": new[k]["intent"]} for k in sorted(new.keys() - old.keys())],
            "removed": [{"text": old[k]["text"], "intent": old[k]["intent"]} for k in sorted(old.keys() - new.keys())],
            "relabelled": [{"text": new[k]["text"], "from": old[k]["intent"], "to": new[k]["intent"]}
                           for k in sorted(new.keys() & old.keys()) if new[k]["intent"] != old[k]["intent"]],
            "per_intent": per_intent,
        }  # fmt: skip

    async def promote_dataset(self, version: int, *, actor: str = "system") -> DatasetVersion:
        """proposed|retired -> active; the previously active version is retired and recorded as
        the rollback target. Retraining on it is the intent detector's job (see docs/playbooks.md)."""
        async with self.db.transaction():
            v = await self.dataset_version(version)
            if v.status == "active":
                raise LearningError(f"intent dataset version {version} is already active")
            current = await self.active_dataset()
            if current is not None:
                await self.db.execute("UPDATE intent_datasets SET status = 'retired' WHERE version = ?", (current.version,))
            await self.db.execute("UPDATE intent_datasets SET status = 'active', replaced_version = ? WHERE version = ?",
                                  (current.version if current else None, v.version))  # fmt: skip
            await self.audit.append("model_version_promoted", actor=actor, payload={
                "dataset": "intents", "change": "promoted", "version": v.version,
                "previous_active": current.version if current else None, "n_examples": v.n_examples,
                "digest": v.digest})  # fmt: skip
        if self.on_dataset_change is not None:
            await self.on_dataset_change()
        return await self.dataset_version(version)

    async def rollback_dataset(self, *, actor: str = "system") -> DatasetVersion | None:
        """Retire the active version and reactivate the one it replaced (None: back to the
        config's own examples)."""
        async with self.db.transaction():
            current = await self.active_dataset()
            if current is None:
                raise LearningError("nothing to roll back: no intent dataset version is active")
            await self.db.execute("UPDATE intent_datasets SET status = 'retired' WHERE version = ?", (current.version,))
            restored = current.replaced_version
            if restored is not None:
                await self.db.execute("UPDATE intent_datasets SET status = 'active' WHERE version = ?", (restored,))
            await self.audit.append("model_version_promoted", actor=actor, payload={
                "dataset": "intents", "change": "rolled_back", "version": restored,
                "rolled_back": current.version})  # fmt: skip
        if self.on_dataset_change is not None:
            await self.on_dataset_change()
        return await self.dataset_version(restored) if restored is not None else None

