"""One queue in front of the Whisper model: finals first, oldest partials next, batched.

Why a queue of its own: with one decode per channel thread, eight calls are sixteen channels
that each pay a whole encoder pass for every partial, in whatever order the threads happen to
win the model. CTranslate2 decodes a batch of equal-length windows in one pass for less than
the sum (tiny.en int8, one thread, 10 s windows on this box: 92 ms for one, 144 ms for two,
259 ms for four), so when channels are waiting at the same moment they are decoded together.
Nothing waits *for* a batch: a lone request runs at once; batches only form from a queue that
exists anyway, which is exactly when the saving is needed.

The order is the schedule the pipeline cannot make from inside one channel: a final (it
commits words, and the channel's next segment waits behind it) goes before any partial; among
partials, a channel a hint may hang on (a signal was just raised on it: its next words make or
confirm the hint) goes first; then the channel that has gone longest without one, so under
overload every other channel's partials get later together instead of some starving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from callcue import metrics

#: a runner decodes one batch: the jobs' payloads in, one result per job out (same order)
BatchRunner = Callable[[Sequence[Any]], Sequence[Any]]


@dataclass(slots=True, eq=False)  # identity: payloads are arrays
class DecodeJob:
    kind: str  # "final" | "partial": finals always go first
    shape: tuple[int, ...]  # only jobs of one kind and shape share a batch (one tensor)
    payload: Any
    waiting_since: float  # when the channel's oldest undecoded audio arrived
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)
    priority: int = 0  # higher first among jobs of one kind: a channel a hint may hang on

    def order(self) -> tuple[int, int, float]:
        return (0 if self.kind == "final" else 1, -self.priority, self.waiting_since)


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    jobs: int = 0
    largest: int = 0
    stale: int = 0  # jobs answered None because they waited past their kind's limit
    by_size: dict[int, int] = field(default_factory=dict)

    def count(self, size: int) -> None:
        self.batches += 1
        self.jobs += size
        self.largest = max(self.largest, size)
        self.by_size[size] = self.by_size.get(size, 0) + 1


class DecodeQueue:
    """Worker threads that take the most urgent job and every queued job it can share a batch with."""

    def __init__(self, runners: dict[str, BatchRunner], workers: int = 1, max_batch: int | dict[str, int] = 4,
                 name: str = "whisper-decode", stale_after: dict[str, float] | None = None) -> None:  # fmt: skip
        """`stale_after`: per kind, how long a job may wait before it is answered None instead
        of decoded. For partials: the audio it holds is that old already, and the channel's
        next request will hold newer audio, so decoding it would spend a core on old news."""
        self.stale_after = dict(stale_after or {})
        limits = max_batch if isinstance(max_batch, dict) else {kind: max_batch for kind in runners}
        if workers < 1 or min(limits.values(), default=1) < 1:
            raise ValueError("workers and max_batch must be at least 1")
        self._runners = runners
        self.max_batch = limits
        self._cv = threading.Condition()
        self._jobs: list[DecodeJob] = []
        self._closed = False
        self.stats = BatchStats()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def run(self, kind: str, shape: tuple[int, ...], payload: Any, waiting_since: float | None = None,
            priority: int = 0) -> Any:  # fmt: skip
        """Queue one decode and block the calling (executor) thread until it is done."""
        if kind not in self._runners:
            raise ValueError(f"no runner for {kind!r}")
        job = DecodeJob(kind, shape, payload, time.monotonic() if waiting_since is None else waiting_since,
                        priority=priority)  # fmt: skip
        with self._cv:
            if self._closed:
                raise RuntimeError("decode queue is closed")
            self._jobs.append(job)
            self._cv.notify()
        return job.future.result()

    def pending(self) -> int:
        with self._cv:
            return len(self._jobs)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            left, self._jobs = self._jobs, []
            self._cv.notify_all()
        for job in left:
            job.future.set_exception(RuntimeError("decode queue closed"))

    def _take(self) -> list[DecodeJob] | None:
        with self._cv:
            while not self._jobs and not self._closed:
                self._cv.wait()
            if not self._jobs:
                return None
            now = time.monotonic()
            stale = [j for j in self._jobs if now - j.queued_at > self.stale_after.get(j.kind, float("inf"))]
            if stale:
                gone = {id(j) for j in stale}
                self._jobs = [j for j in self._jobs if id(j) not in gone]
                self.stats.stale += len(stale)
                for j in stale:
                    j.future.set_result(None)
                if not self._jobs:
                    return []
            self._jobs.sort(key=DecodeJob.order)
            first = self._jobs[0]
            batch = [j for j in self._jobs if j.kind == first.kind and j.shape == first.shape]
            batch = batch[: self.max_batch.get(first.kind, 1)]
            taken = {id(j) for j in batch}
            self._jobs = [j for j in self._jobs if id(j) not in taken]
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue
            try:
                results = self._runners[batch[0].kind]([j.payload for j in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"runner returned {len(results)} results for {len(batch)} jobs")
            except BaseException as e:  # every waiting channel hears of it; the worker goes on
                for j in batch:
                    j.future.set_exception(e)
                continue
            with self._cv:
                self.stats.count(len(batch))
            metrics.ASR_BATCH.labels(batch[0].kind).observe(len(batch))
            for j, r in zip(batch, results):
                j.future.set_result(r)
