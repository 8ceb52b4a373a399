"""A property of the dynamic batcher (``service.engine.batching.batcher``, hypothesis, with the fake
runtime): whatever the arrival order, lengths, batch limits and cancellations, every request
gets exactly its own results, cancelled sequences never run, and nothing runs twice."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.fake_runtime import FakeRunner, make_batcher

requests_strategy = st.lists(
    st.lists(st.integers(1, 60), min_size=1, max_size=6),  # lengths of one request's sequences
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(
    requests=requests_strategy,
    cancel=st.sets(st.integers(0, 24)),
    max_batch=st.integers(1, 16),
    tokens=st.integers(60, 400),
    efficiency=st.sampled_from([0.0, 0.5, 0.9]),
    slots=st.integers(1, 3),
    yields=st.lists(st.integers(0, 3), min_size=25, max_size=25),
)
def test_every_request_gets_exactly_its_own_results(
    requests: list[list[int]],
    cancel: set[int],
    max_batch: int,
    tokens: int,
    efficiency: float,
    slots: int,
    yields: list[int],
) -> None:
    async def scenario() -> None:
        runner = FakeRunner()  # returns each sequence's first value: its id here
        batcher = make_batcher(
            runner,
            size=max_batch,
            tokens=tokens,
            efficiency=efficiency,
            wait_s=0.001,
            queue=10_000,
            slots=slots,
        )
        submitted = []
        next_id = 0
        for k, lengths in enumerate(requests):
            sequences = []
            for length in lengths:
                sequences.append(np.full((length, 2), float(next_id), dtype=np.float32))
                next_id += 1
            ids = [float(s[0, 0]) for s in sequences]
            futures = batcher.submit(
                sequences, [None] * len(sequences), frozenset({"first"}), time.monotonic() + 60
            )
            if k in cancel:
                for future in futures:
                    future.cancel()
            submitted.append((ids, lengths, futures, k in cancel))
            for _ in range(yields[k]):  # vary how arrivals interleave with batch formation
                await asyncio.sleep(0)
        for ids, lengths, futures, cancelled in submitted:
            if cancelled:
                continue
            results = await asyncio.wait_for(asyncio.gather(*futures), 10)
            assert [float(r["first"]) for r in results] == ids
            assert [int(r["length"]) for r in results] == lengths
        await batcher.close(drain_timeout_s=10)
        cancelled_ids = {i for ids, _, _, c in submitted if c for i in ids}
        assert not cancelled_ids & set(runner.ran)
        assert len(runner.ran) == len(set(runner.ran))  # nothing ran twice

    asyncio.run(scenario())
