"""The dynamic batcher: one per model version, merging sequences from many requests into runs.

Sequences enter only after validation, each as a ``WorkItem`` that owns its future. A single
supervised task forms batches (``formation.select_batch``) and hands each to the runtime in an
executor thread, so the event loop never waits on ORT. Rules:

* when no batch is running and work is waiting, dispatch at once (no wait when idle);
* while batches run, the oldest waiting sequence may wait up to ``max_batch_wait_s`` for a
  fuller batch, unless the batch is already full;
* items whose future is done (client gone, request timed out) are dropped before a run, and
  items past their deadline are failed with 504 instead of run;
* ``max_queue`` counts only live waiting items: an item stops counting the moment its future is
  done (a future's done-callback), not when the forming task next looks at the queue, which
  it does not while every batch slot is busy;
* a failing batch fails only its own items; if the forming task itself dies, the batcher
  becomes unhealthy, fails what waits with 503 and readiness reports it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.engine.batching.formation import BatchPolicy, select_batch
from service.errors import BatchFailed, DeadlineExceeded, Overloaded, Unavailable

log = logging.getLogger(__name__)

SequenceResult = dict[str, np.ndarray]


class BatchRunner(Protocol):
    """What the batcher needs of a runtime (``ModelRuntime`` is one; tests use fakes)."""

    def run_batch(
        self,
        sequences: Sequence[np.ndarray],
        initial_states: Sequence[Mapping[str, np.ndarray] | None],
        output_names: Iterable[str],
    ) -> list[SequenceResult]: ...


@dataclass(eq=False)
class WorkItem:
    """One validated sequence ``(L, F)`` waiting to run, with the future of its result."""

    sequence: np.ndarray
    initial_state: Mapping[str, np.ndarray] | None
    output_names: frozenset[str]
    deadline: float  # time.monotonic() seconds
    future: asyncio.Future[SequenceResult]
    enqueued_at: float = field(default_factory=time.monotonic)
    waiting: bool = True
    """Counted in the batcher's live queue: not yet taken into a batch, its future not done."""

    @property
    def length(self) -> int:
        return len(self.sequence)


@dataclass
class BatchStats:
    """Figures of one dispatched batch, for metrics."""

    size: int
    real_steps: int
    padded_steps: int
    queue_wait_s: list[float]
    compute_s: float = 0.0
    failed: bool = False


class BatcherObserver(Protocol):
    """Receives the batcher's figures (the metrics module implements it)."""

    def batch_done(self, stats: BatchStats) -> None: ...

    def queue_depth(self, depth: int) -> None: ...

    def batcher_failed(self) -> None: ...


class _NullObserver:
    def batch_done(self, stats: BatchStats) -> None:
        pass

    def queue_depth(self, depth: int) -> None:
        pass

    def batcher_failed(self) -> None:
        pass


class DynamicBatcher:
    """Length-aware dynamic batching in front of one ``BatchRunner``."""

    def __init__(
        self,
        runner: BatchRunner,
        executor: Executor,
        policy: BatchPolicy,
        *,
        max_batch_wait_s: float,
        max_queue: int,
        concurrent_batches: int,
        max_batch_run_s: float | None = None,
        retry_after_s: int = 1,
        observer: BatcherObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "model",
    ) -> None:
        self.runner = runner
        self.policy = policy
        self.name = name
        self._executor = executor
        self._max_wait = max_batch_wait_s
        self._max_queue = max_queue
        self._slots = concurrent_batches
        self._max_run = max_batch_run_s
        self._retry_after = {"Retry-After": str(retry_after_s)}
        self._observer = observer or _NullObserver()
        self._clock = clock
        self._pending: list[WorkItem] = []  # arrival order; may still hold done items
        self._waiting = 0  # items of _pending whose ``waiting`` is set: what max_queue counts
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failure: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._form_batches())
        self._task.add_done_callback(self._supervise)

    @property
    def healthy(self) -> bool:
        return self._task is not None and not self._task.done() and self.failure is None

    @property
    def queue_depth(self) -> int:
        """Sequences waiting to run (those whose request has gone are not counted)."""
        return self._waiting

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def close(self, drain_timeout_s: float) -> None:
        """Stop accepting; let waiting and running work finish (up to the timeout); stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), drain_timeout_s)
            except TimeoutError:
                log.warning("batcher %s: drain timed out with %d waiting", self.name, self._waiting)
                self._task.cancel()
        self._fail_pending(Unavailable("the server is shutting down", self._retry_after))

    def _supervise(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.failure = error
            self._observer.batcher_failed()
            log.critical("batcher %s died: %r; the model is now unavailable", self.name, error)
            self._fail_pending(Unavailable(f"model {self.name} is unavailable", self._retry_after))

    # -- submitting -----------------------------------------------------------------------------
    def check_admission(self, sequences: int = 1) -> None:
        """Raise 503 (closing, unhealthy) or 429 (queue full) unless ``sequences`` would fit.

        Called before a request's body is even read, so that shedding load costs little CPU
        (measured under 4x overload: rejections were most of the server's work), and again at
        submission, which decides.
        """
        if self._closing:
            raise Unavailable("the server is shutting down", self._retry_after)
        if not self.healthy:
            raise Unavailable(f"model {self.name} is unavailable", self._retry_after)
        if self._waiting + sequences > self._max_queue:
            raise Overloaded(
                f"model {self.name} has {self._waiting} sequences waiting (limit "
                f"{self._max_queue}); retry later",
                self._retry_after,
            )

    def submit(
        self,
        sequences: Sequence[np.ndarray],
        initial_states: Sequence[Mapping[str, np.ndarray] | None],
        output_names: frozenset[str],
        deadline: float,
    ) -> list[asyncio.Future[SequenceResult]]:
        """Queue a request's validated sequences, all or none; returns one future per sequence."""
        if len(sequences) != len(initial_states):
            raise ValueError(f"{len(sequences)} sequences but {len(initial_states)} states")
        self.check_admission(len(sequences))
        loop = asyncio.get_running_loop()
        now = self._clock()
        futures = []
        for sequence, state in zip(sequences, initial_states, strict=True):
            future: asyncio.Future[SequenceResult] = loop.create_future()
            item = WorkItem(sequence, state, output_names, deadline, future, now)
            future.add_done_callback(functools.partial(self._item_done, item))
            self._pending.append(item)
            futures.append(future)
        self._waiting += len(futures)
        self._observer.queue_depth(self._waiting)
        self._wakeup.set()
        return futures

    def _leave_queue(self, item: WorkItem) -> None:
        """``item`` no longer counts as waiting (idempotent)."""
        if item.waiting:
            item.waiting = False
            self._waiting -= 1

    def _item_done(self, item: WorkItem, _: asyncio.Future[SequenceResult]) -> None:
        # A future done while still queued: cancelled by its request (client gone, deadline,
        # another sequence of the request failed) or failed here. Its place frees at once.
        if item.waiting:
            self._leave_queue(item)
            self._observer.queue_depth(self._waiting)

    # -- forming batches ------------------------------------------------------------------------
    def _drop_dead_items(self) -> None:
        now = self._clock()
        alive = []
        for item in self._pending:
            if item.future.done():
                self._leave_queue(item)  # its done-callback may not have run yet
                continue  # cancelled by its request (client gone or timed out)
            if now >= item.deadline:
                self._leave_queue(item)
                item.future.set_exception(
                    DeadlineExceeded("the request deadline passed in the queue")
                )
                continue
            alive.append(item)
        self._pending = alive

    async def _wait_for_wakeup(self, timeout: float | None) -> None:
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            pass

    async def _form_batches(self) -> None:
        while True:
            self._drop_dead_items()
            if not self._pending:
                self._observer.queue_depth(self._waiting)
                if self._closing and not self._in_flight:
                    return
                await self._wait_for_wakeup(None)
                continue
            if len(self._in_flight) >= self._slots:
                await self._wait_for_wakeup(None)  # a finishing batch wakes us
                continue
            oldest = 0  # _pending keeps arrival order
            selection = select_batch([item.length for item in self._pending], oldest, self.policy)
            waited = self._clock() - self._pending[oldest].enqueued_at
            idle = not self._in_flight
            if not (selection.full or idle or self._closing or waited >= self._max_wait):
                await self._wait_for_wakeup(self._max_wait - waited)
                continue
            chosen = set(selection.indices)
            batch = [self._pending[k] for k in selection.indices]
            self._pending = [item for k, item in enumerate(self._pending) if k not in chosen]
            for item in batch:
                self._leave_queue(item)
            self._observer.queue_depth(self._waiting)
            stats = BatchStats(
                size=len(batch),
                real_steps=selection.real_steps,
                padded_steps=selection.padded_steps,
                queue_wait_s=[self._clock() - item.enqueued_at for item in batch],
            )
            task = asyncio.get_running_loop().create_task(self._run(batch, stats))
            self._in_flight.add(task)
            task.add_done_callback(self._batch_finished)

    def _batch_finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wakeup.set()

    async def _run(self, batch: list[WorkItem], stats: BatchStats) -> None:
        loop = asyncio.get_running_loop()
        wanted = frozenset().union(*(item.output_names for item in batch))

        def run_timed() -> list[SequenceResult]:
            # Timed in the worker thread: the runtime's own time, not the wait for the loop.
            started = time.perf_counter()
            try:
                return self.runner.run_batch(
                    [item.sequence for item in batch],
                    [item.initial_state for item in batch],
                    wanted,
                )
            finally:
                stats.compute_s = time.perf_counter() - started

        run = loop.run_in_executor(self._executor, run_timed)
        done, _ = await asyncio.wait({run}, timeout=self._max_run)
        if not done:  # the runtime hung: a thread cannot be stopped, so the model goes down
            stats.failed = True
            self._declare_hung(batch)
            self._observer.batch_done(stats)
            return
        try:
            results = run.result()
            if len(results) != len(batch):
                raise RuntimeError(f"runtime returned {len(results)} results for {len(batch)}")
        except Exception:  # contained: only this batch's requests fail
            stats.failed = True
            log.exception("batcher %s: a batch of %d failed", self.name, len(batch))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(BatchFailed("inference failed for this batch"))
        else:
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
        finally:
            self._observer.batch_done(stats)

    def _declare_hung(self, batch: list[WorkItem]) -> None:
        """A batch outlived ``max_batch_run_s``: fail it and everything waiting, and mark the
        batcher dead, so readiness and liveness say so and the process gets restarted."""
        self.failure = RuntimeError(f"a batch ran longer than {self._max_run:g} s: runtime hung")
        self._observer.batcher_failed()
        log.critical("batcher %s: %s; the model is now unavailable", self.name, self.failure)
        for item in batch:
            if not item.future.done():
                item.future.set_exception(BatchFailed("inference did not finish"))
        self._fail_pending(Unavailable(f"model {self.name} is unavailable", self._retry_after))
        if self._task is not None:
            self._task.cancel()

    def _fail_pending(self, error: Exception) -> None:
        for item in self._pending:
            self._leave_queue(item)
            if not item.future.done():
                item.future.set_exception(error)
        self._pending = []
        self._observer.queue_depth(self._waiting)
