"""A fake runtime for the batcher's unit tests (``tests/service/engine/batching``), and a
``DynamicBatcher`` over it: no model, no ONNX Runtime, runs held back with events, never with
sleeps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from service.engine.batching.batcher import DynamicBatcher
from service.engine.batching.formation import BatchPolicy

FEATURES = 3
"""The width F of the sequences ``seq`` builds (the fake runs any width)."""


class FakeRunner:
    """A ``BatchRunner`` that returns each sequence's ``sum``, ``length`` and ``first`` value
    (its first element: an identity the tests give it); records every batch's lengths
    (``batches``) and the first value of every sequence run (``ran``).

    ``gated``: every run waits for ``gate`` to be set (the test holds batches in flight);
    ``started`` is released as each run begins. A batch holding a sequence whose first value is
    negative fails (``RuntimeError``), after it is recorded.
    """

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.ran: list[float] = []
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.started = threading.Semaphore(0)

    # The signature of ``BatchRunner`` (service.engine.batching.batcher), which every runtime
    # repeats, as implementations of a Protocol do.
    def run_batch(
        self,
        sequences: Sequence[np.ndarray],
        initial_states: Sequence[Mapping[str, np.ndarray] | None],
        output_names: Iterable[str],
    ) -> list[dict[str, np.ndarray]]:
        self.started.release()
        assert self.gate.wait(10), "test never released the gate"
        self.batches.append([len(s) for s in sequences])
        self.ran.extend(float(s[0, 0]) for s in sequences)
        if any(s[0, 0] < 0 for s in sequences):
            raise RuntimeError("poisoned batch")
        return [
            {"sum": np.array(s.sum()), "length": np.array(len(s)), "first": np.array(s[0, 0])}
            for s in sequences
        ]


def seq(length: int, value: float = 1.0) -> np.ndarray:
    """A ``(length, FEATURES)`` float32 sequence holding ``value`` everywhere."""
    return np.full((length, FEATURES), value, dtype=np.float32)


def make_batcher(
    runner: FakeRunner,
    *,
    size: int = 64,
    tokens: int = 100_000,
    efficiency: float = 0.0,
    wait_s: float = 10.0,
    queue: int = 1000,
    slots: int = 1,
) -> DynamicBatcher:
    """A started batcher over ``runner``: batches of at most ``size`` sequences and ``tokens``
    padded steps, padding ``efficiency`` target, ``wait_s`` max wait, ``queue`` waiting
    sequences at most, ``slots`` batches at once (one executor thread each)."""
    batcher = DynamicBatcher(
        runner,
        ThreadPoolExecutor(slots),
        BatchPolicy(size, tokens, efficiency),
        max_batch_wait_s=wait_s,
        max_queue=queue,
        concurrent_batches=slots,
    )
    batcher.start()
    return batcher


def submit(
    batcher: DynamicBatcher, *sequences: np.ndarray, deadline_s: float = 60.0
) -> list[asyncio.Future[dict[str, np.ndarray]]]:
    """One request of ``sequences`` (no initial states, asking for ``sum``), due in
    ``deadline_s``; a future per sequence."""
    return batcher.submit(
        list(sequences), [None] * len(sequences), frozenset({"sum"}), time.monotonic() + deadline_s
    )


async def started(runner: FakeRunner) -> None:
    """Wait until the runner has begun a run (it signals from its thread)."""
    assert await asyncio.to_thread(runner.started.acquire, True, 10)


async def held_batcher(
    first: np.ndarray | None = None, **limits: Any
) -> tuple[FakeRunner, DynamicBatcher, list[asyncio.Future[dict[str, np.ndarray]]]]:
    """A batcher (``make_batcher(runner, **limits)``) over a gated ``FakeRunner``, whose first
    request (the sequence ``first``; by default ``seq(1)``) has begun to run and holds its slot
    until ``runner.gate`` is set; what is submitted next waits. Returns the runner, the batcher
    and the first request's futures."""
    runner = FakeRunner(gated=True)
    batcher = make_batcher(runner, **limits)
    futures = submit(batcher, seq(1) if first is None else first)
    await started(runner)
    return runner, batcher, futures
