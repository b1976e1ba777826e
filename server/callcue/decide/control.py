"""What humans may do to a decision at any time: approve, reject, cancel, roll back, pause
(the kill switch), resume, override, and the agent's feedback on a hint; and the automatic
pause an anomaly throws."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from callcue.decide.actions.base import ActionSpec, NotUndoable
from callcue.decide.actions.kinds import parse_action
from callcue.decide.actions.record import TERMINAL, ActionRecord
from callcue.decide.anomalies import Anomaly, AnomalyMonitor
from callcue.decide.lifecycle import Lifecycle
from callcue.decide.playbooks import Playbook, PlaybookSet
from callcue.decide.records import ActionBook
from callcue.decide.state import FEEDBACK_ACTIONS, HUMAN_PLAYBOOK, InvalidTransition, UnknownAction, template_values
from callcue.decide.switches import Switches
from callcue.events import new_id

log = logging.getLogger(__name__)


class HumanControl:
    def __init__(self, playbooks: PlaybookSet, switches: Switches, book: ActionBook, lifecycle: Lifecycle,
                 anomalies: AnomalyMonitor) -> None:  # fmt: skip
        self.playbooks = playbooks
        self.switches = switches
        self.book = book
        self.lifecycle = lifecycle
        self.trail = lifecycle.trail
        self.dispatcher = lifecycle.dispatcher
        self.anomalies = anomalies
        self._busy: set[str] = set()  # action ids with an undo in flight

    def playbook(self, playbook_id: str) -> Playbook:
        """The loaded playbook; UnknownAction (-> 404 in the API) if there is none."""
        try:
            return self.playbooks.get(playbook_id)
        except KeyError:
            raise UnknownAction(f"unknown playbook {playbook_id!r}") from None

    async def on_anomaly(self, a: Anomaly) -> None:
        pb = self.playbooks.get(a.playbook_id)
        await self.trail("anomaly", playbook_id=pb.id, playbook_version=pb.version, payload=a.to_dict())
        await self.dispatcher.publish_to_supervisors({"type": "anomaly", **a.to_dict()})
        if a.auto_pause and pb.id not in self.switches.paused:
            await self.pause(pb.id, "system:anomaly", reason=f"{a.metric} {a.value:.2f} > {a.bound}")

    # ------------------------------------------------------------------ human control
    async def approve(self, action_id: str, user: str, note: str = "") -> list[ActionRecord]:
        """Approves the whole firing the action belongs to: its actions were proposed together."""
        recs = self.book.pending_group(action_id, "pending_approval")
        self.lifecycle.cancel_timer(recs[0].firing_id)
        await self.lifecycle.transition_many(recs, "approved", user, note=note)
        for r in recs:
            if r.state == "approved":  # not cancelled meanwhile
                await self.lifecycle.transition(r, "dispatched", user)
                await self.lifecycle.execute(r)
        return recs

    async def reject(self, action_id: str, user: str, reason: str = "") -> list[ActionRecord]:
        recs = self.book.pending_group(action_id, "pending_approval")
        self.lifecycle.cancel_timer(recs[0].firing_id)
        await self.lifecycle.transition_many(recs, "rejected", user, reason=reason)
        return recs

    async def cancel(self, action_id: str, user: str, reason: str = "") -> ActionRecord:
        rec = self.book.get(action_id)
        if rec.state in ("pending_approval", "suggested", "proposed", "approved"):
            await self.lifecycle.transition(rec, "cancelled", user, reason=reason)
            if not [r for r in self.book.firing(rec.firing_id) if r.state == "pending_approval"]:
                self.lifecycle.cancel_timer(rec.firing_id)
        elif rec.state == "dispatched":
            await self.lifecycle.transition(rec, "cancelled", user, reason=reason, in_flight=True)
            await self.lifecycle.stop_inflight(rec)
        else:
            hint = " (use rollback)" if rec.state == "succeeded" else ""
            raise InvalidTransition(f"action {action_id} is {rec.state}; cannot cancel{hint}")
        return rec

    async def rollback(self, action_id: str, user: str, reason: str = "") -> ActionRecord:
        rec = self.book.get(action_id)
        if rec.state != "succeeded":
            raise InvalidTransition(f"action {action_id} is {rec.state}; only a succeeded action can be rolled back")
        if not rec.undoable:
            raise InvalidTransition(f"action {action_id} ({rec.kind}) has no undo")
        with self._undoing(rec):
            try:
                undo = await self.dispatcher.undo(rec)
            except NotUndoable as e:
                raise InvalidTransition(str(e)) from None
            except Exception as e:
                await self.trail("rollback_failed", rec=rec, actor=user, payload={"error": f"{type(e).__name__}: {e}"})
                raise
            await self.lifecycle.transition(rec, "rolled_back", user, reason=reason, undo=undo)
        return rec

    @contextlib.contextmanager
    def _undoing(self, rec: ActionRecord) -> Iterator[None]:
        """One compensating call per action: a second rollback/override while the undo POST
        is in flight is refused instead of voiding the refund twice."""
        if rec.action_id in self._busy:
            raise InvalidTransition(f"action {rec.action_id} is already being rolled back or overridden")
        self._busy.add(rec.action_id)
        try:
            yield
        finally:
            self._busy.discard(rec.action_id)

    async def pause(self, playbook_id: str, user: str, call_id: str | None = None, reason: str = "") -> int:
        """Kill switch: no new firings from now on, and pending or in-flight work of the
        playbook (in that scope) is cancelled. Returns how many actions were cancelled."""
        pb = self.playbook(playbook_id)
        self.switches.set_paused(pb.id, True, call_id)
        n = await self._cancel_open_work(pb.id, user, reason, call_id)
        await self.trail("paused", call_id=call_id, playbook_id=pb.id, playbook_version=pb.version, actor=user,
                          payload={"scope": "call" if call_id else "global", "reason": reason, "cancelled": n})  # fmt: skip
        await self.dispatcher.publish_to_supervisors({"type": "playbook_paused", "playbook_id": pb.id,
                                                      "call_id": call_id, "by": user, "reason": reason})  # fmt: skip
        return n

    async def mirror_pause(self, playbook_id: str, user: str, paused: bool, reason: str = "") -> int:
        """Another cluster node threw (or released) the kill switch and audited it: apply it
        here too, cancelling this node's pending and in-flight work of the playbook (each
        cancellation audited by this node, which holds those actions)."""
        pb = self.playbook(playbook_id)
        self.switches.set_paused(pb.id, paused)
        if not paused:
            self.anomalies.reset(pb.id)
            return 0
        return await self._cancel_open_work(pb.id, user, reason)

    async def _cancel_open_work(self, playbook_id: str, user: str, reason: str, call_id: str | None = None) -> int:
        """Cancel the playbook's pending and in-flight actions (in that scope); how many."""
        n = 0
        for rec in self.book.select(playbook_id=playbook_id, call_id=call_id):
            if rec.state in ("pending_approval", "suggested", "proposed", "approved", "dispatched"):
                with contextlib.suppress(InvalidTransition):  # finished while we were cancelling others
                    await self.cancel(rec.action_id, user, reason=f"playbook paused: {reason}".rstrip(": "))
                    n += 1
        return n

    async def resume(self, playbook_id: str, user: str, call_id: str | None = None) -> None:
        pb = self.playbook(playbook_id)
        self.switches.set_paused(pb.id, False, call_id)
        if call_id is None:
            self.anomalies.reset(pb.id)
        await self.trail("resumed", call_id=call_id, playbook_id=pb.id, playbook_version=pb.version, actor=user,
                          payload={"scope": "call" if call_id else "global"})  # fmt: skip
        await self.dispatcher.publish_to_supervisors({"type": "playbook_resumed", "playbook_id": pb.id,
                                                      "call_id": call_id, "by": user})  # fmt: skip

    async def override(
        self, user: str, replacement: dict[str, Any] | ActionSpec | None, *, action_id: str | None = None,
        call_id: str | None = None, reason: str = "",
    ) -> ActionRecord | None:  # fmt: skip
        """Replace a decision with the supervisor's own. The original is stopped (or undone if
        it ran and can be undone); `replacement` (an action spec, or None for a plain veto)
        then runs at once on the supervisor's authority."""
        if (action_id is None) == (call_id is None):
            raise ValueError("override needs exactly one of action_id or call_id")
        spec = None if replacement is None else (
            parse_action(replacement) if isinstance(replacement, dict) else replacement)  # fmt: skip
        orig = self.book.get(action_id) if action_id else None
        undone: dict[str, Any] | None = None
        if orig is not None:
            if orig.state in TERMINAL and orig.state != "succeeded" and orig.state != "failed":
                raise InvalidTransition(f"action {orig.action_id} is {orig.state}; nothing to override")
            if orig.state == "pending_approval":
                others = [
                    r for r in self.book.firing(orig.firing_id) if r.state == "pending_approval" and r is not orig
                ]
                if not others:
                    self.lifecycle.cancel_timer(orig.firing_id)
            was_in_flight = orig.state == "dispatched"
            with self._undoing(orig):
                if orig.state == "succeeded" and orig.undoable:
                    undone = await self.dispatcher.undo(orig)
                await self.lifecycle.transition(orig, "overridden", user, reason=reason, undone=undone)
            if was_in_flight:
                await self.lifecycle.stop_inflight(orig)
            for a in self.anomalies.record_override(orig.playbook_id):
                await self.on_anomaly(a)
        cid = orig.call_id if orig else call_id
        assert cid is not None
        st = self.switches.calls.get(cid)
        new: ActionRecord | None = None
        if spec is not None:
            new = ActionRecord(action_id=new_id("act"), call_id=cid,
                               agent_id=orig.agent_id if orig else (st.info.agent_id if st else None),
                               playbook_id=orig.playbook_id if orig else HUMAN_PLAYBOOK,
                               playbook_version=orig.playbook_version if orig else 0, autonomy="human", spec=spec,
                               values=dict(orig.values) if orig else template_values({}, {"call_id": cid}),
                               signal_ids=list(orig.signal_ids) if orig else [], firing_id=new_id("fire"), actor=user)  # fmt: skip
            self.book.add([new])
        await self.trail("override", call_id=cid, agent_id=orig.agent_id if orig else None,
                          playbook_id=orig.playbook_id if orig else HUMAN_PLAYBOOK,
                          playbook_version=orig.playbook_version if orig else None,
                          action_id=orig.action_id if orig else None, actor=user,
                          payload={"reason": reason, "replaced_by": new.action_id if new else None,
                                   "replacement": new.to_dict()["spec"] if new else None, "undone": undone})  # fmt: skip
        if new is not None:
            await self.trail(
                "action_proposed", rec=new, actor=user, payload={"kind": new.kind, "override_of": action_id}
            )
            await self.lifecycle.transition(new, "dispatched", user)
            await self.lifecycle.execute(new)
        return new

    async def feedback(
        self,
        hint_id: str,
        user: str,
        action: str,
        reason: str = "",
        correction: Any = None,
        *,
        call_id: str | None = None,
        agent_id: str | None = None,
    ) -> list[ActionRecord]:
        """The agent's verdict on a hint. Accepting a suggestion runs the actions it offered;
        dismissing or correcting it drops them. Feedback on hints that no playbook raised is
        still audited (it measures the fallback hints too) and returns []."""
        if action not in FEEDBACK_ACTIONS:
            raise ValueError(f"feedback action must be one of {', '.join(FEEDBACK_ACTIONS)}, got {action!r}")
        if not isinstance(hint_id, str) or not hint_id:
            raise ValueError("feedback needs a hint_id")
        # A dismissal should carry a reason and a correction its content, but the agent's choice
        # is acted on regardless; the gap is recorded so the KPI review can chase it.
        missing = (action == "dismissed" and not str(reason or "").strip()) or (
            action == "corrected" and correction in (None, ""))  # fmt: skip
        recs = self.book.by_hint(hint_id)
        hint_rec = next((r for r in recs if r.hint_id == hint_id), None)
        # a fallback hint has no record here: the caller names its call (from the stored row)
        await self.trail("feedback", call_id=hint_rec.call_id if hint_rec else call_id,
                          agent_id=hint_rec.agent_id if hint_rec else agent_id,
                          playbook_id=hint_rec.playbook_id if hint_rec else None,
                          playbook_version=hint_rec.playbook_version if hint_rec else None,
                          action_id=hint_rec.action_id if hint_rec else None, actor=user,
                          payload={"hint_id": hint_id, "action": action, "reason": reason or "", "correction": correction,
                                   **({"detail_missing": True} if missing else {})})  # fmt: skip
        if hint_rec is None:
            return []
        for a in self.anomalies.record_feedback(hint_rec.playbook_id, action):  # type: ignore[arg-type]
            await self.on_anomaly(a)
        changed = [r for r in recs if r.state == "suggested"]
        if action == "accepted":
            await self.lifecycle.transition_many(changed, "approved", user, via="agent_accept", hint_id=hint_id)
            for r in changed:
                if r.state == "approved":
                    await self.lifecycle.transition(r, "dispatched", user)
                    await self.lifecycle.execute(r)
        else:
            await self.lifecycle.transition_many(changed, "dismissed", user, reason=reason, correction=correction)
        return changed
