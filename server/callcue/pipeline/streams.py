"""Where a call's decisions enter and leave: its own stream.

A signal is decided inside the call's stream already. A supervisor's command or an approval
deadline is *entered* into the stream (`enter`): it waits its turn behind the transcripts
queued before it, so a call's decisions never interleave. What a decision produces (audit
intents, hints, events) is *emitted* (`emit`) down the rest of the call's pipeline to the
Sink, so the urgency stage sees a playbook's hint as it sees a phrase rule's, and every hint
leaves in one order: its `hint_shown` entry, then the hint. Outside a live call here (an
ended call's rollback, a global pause) the step runs at once and its output goes straight
to the Sink: the Sink is the only way out either way.

It also holds each live call's platform sessions that take something back (AudioHook's
pause/resume and transcripts), so the composition root can hand the decision layer a way
to reach them before any call exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from callcue.events import AuditIntent, CallEvent, Transcript
from callcue.platforms.base import SpeaksBack, TakesControl, TypesBack

log = logging.getLogger(__name__)

Emit = Callable[[object], Awaitable[None]]

#: inside a call's stream (its understanding task): the call id and the rest of its pipeline
_CURRENT: contextvars.ContextVar[tuple[str, Emit] | None] = contextvars.ContextVar("callcue_call_stream", default=None)


class Writer(Protocol):
    async def write(self, item: object) -> None: ...
    def iter_entries(self, page: int = 1000, **filters: Any) -> Any: ...


class StreamInput(Protocol):
    async def enter(self, step: Callable[[], Awaitable[Any]]) -> Any: ...
    def pause_recording(self, paused: bool) -> None: ...
    def speaker_attached(self) -> None: ...


def in_stream(call_id: str, tail: Emit) -> None:
    """Called once by a call's understanding task: from now on this task is that stream."""
    _CURRENT.set((call_id, tail))


@contextlib.contextmanager
def deciding(call_id: str, tail: Emit) -> Iterator[None]:
    """Within the block, this task decides for the call (the decide stage wraps each signal
    in it, however the item reached the pipeline)."""
    token = _CURRENT.set((call_id, tail))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def outside_streams() -> contextvars.Context:
    """A context for a task that must not count as part of the stream that created it."""
    ctx = contextvars.copy_context()
    ctx.run(_CURRENT.set, None)
    return ctx


class CallStreams:
    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._inputs: dict[str, StreamInput] = {}
        #: per call, the platform sessions that can be asked to stop and restart sending audio
        #: (AudioHook `pause`/`resume`) or take finals back
        self.remotes: dict[str, list[TakesControl]] = {}
        #: per call, the session that carries audio back to the caller (the virtual agent's voice)
        self.speakers: dict[str, SpeaksBack] = {}
        #: per call, the session that carries text back (a chat on the native protocol)
        self.typists: dict[str, TypesBack] = {}
        #: per call, how to send what a session queued without waiting for the peer's next frame
        self.flushers: dict[str, Callable[[], Awaitable[None]]] = {}

    # ---------------------------------------------------------------- live calls
    def opened(self, call_id: str, stream: StreamInput) -> None:
        self._inputs[call_id] = stream

    def closed(self, call_id: str, stream: StreamInput) -> None:
        if self._inputs.get(call_id) is stream:
            del self._inputs[call_id]

    def pause_recording(self, call_id: str, paused: bool) -> bool:
        """Pause or resume the call's recording here (the secure payment hand-off, the agent)."""
        stream = self._inputs.get(call_id)
        if stream is None:
            return False
        stream.pause_recording(paused)
        return True

    # ---------------------------------------------------------------- in and out
    async def enter(self, call_id: str, step: Callable[[], Awaitable[Any]]) -> Any:
        """Run a decision step in the call's stream, and return what it returned."""
        stream = self._inputs.get(call_id)
        if stream is None or _CURRENT.get() is not None:
            # not live here, or already inside a stream (a pause thrown by an anomaly while
            # deciding another call: waiting for that call's turn could wait for ours)
            return await step()
        return await stream.enter(step)

    async def emit(self, call_id: str | None, item: object) -> None:
        here = _CURRENT.get()
        if here is not None and call_id == here[0]:
            await here[1](item)
        else:
            await self._writer.write(item)

    # ---------------------------------------------------------------- the decision engine's ports
    async def hint(self, h: Any) -> None:
        await self.emit(h.call_id, h)

    async def to_call(self, call_id: str, event: dict[str, Any]) -> None:
        await self.emit(call_id, CallEvent(call_id, event))

    async def to_supervisors(self, event: dict[str, Any]) -> None:
        call_id = event.get("call_id")
        cid = call_id if isinstance(call_id, str) else None
        await self.emit(cid, CallEvent(cid, event, "supervisors"))

    async def append(self, kind: str, *, call_id: str | None = None, **fields: Any) -> None:
        """The engine's audit port: an intent down the stream, written by the Sink."""
        await self.emit(call_id, AuditIntent(call_id, kind, {"call_id": call_id, **fields}))

    def iter_entries(self, page: int = 1000, **filters: Any) -> Any:
        return self._writer.iter_entries(page, **filters)

    # ---------------------------------------------------------------- platform sessions
    def attach_remote(self, call_id: str, remote: TakesControl) -> None:
        self.remotes.setdefault(call_id, []).append(remote)

    def attach_outlet(self, call_id: str, speaker: SpeaksBack | None, typist: TypesBack | None,
                      flush: Callable[[], Awaitable[None]]) -> None:  # fmt: skip
        """A session that can carry the virtual agent's voice or text back to the customer."""
        if speaker is not None:
            self.speakers[call_id] = speaker
        if typist is not None:
            self.typists[call_id] = typist
        self.flushers[call_id] = flush
        stream = self._inputs.get(call_id)
        if stream is not None:
            stream.speaker_attached()

    def detach_outlet(self, call_id: str) -> None:
        self.speakers.pop(call_id, None)
        self.typists.pop(call_id, None)
        self.flushers.pop(call_id, None)

    def speaker(self, call_id: str) -> SpeaksBack | None:
        return self.speakers.get(call_id)

    def typist(self, call_id: str) -> TypesBack | None:
        return self.typists.get(call_id)

    async def flush(self, call_id: str) -> None:
        f = self.flushers.get(call_id)
        if f is not None:
            await f()

    def detach_remote(self, call_id: str, remote: TakesControl) -> None:
        held = self.remotes.get(call_id, [])
        if remote in held:
            held.remove(remote)
        if not held:
            self.remotes.pop(call_id, None)

    def on_final(self, t: Transcript) -> None:
        """A final transcript (masked) to the call's platform sessions that take them back."""
        for r in self.remotes.get(t.call_id, []):
            r.transcript(t)

    def remote(self, call_id: str, control: str) -> int:
        """Ask the call's platform sessions to `pause` or `resume` sending audio; how many were."""
        held = self.remotes.get(call_id, [])
        for r in held:
            r.pause() if control == "pause" else r.resume()
        return len(held)


async def run_step(step: Callable[[], Awaitable[Any]], done: asyncio.Future[Any]) -> None:
    """A step entered into a stream, run by the stream's task; its caller awaits `done`."""
    try:
        result = await step()
    except BaseException as e:
        if not done.done():
            done.set_exception(e)
        if isinstance(e, asyncio.CancelledError):
            raise
    else:
        if not done.done():
            done.set_result(result)
