"""A model version's batcher with streams: ``DynamicBatcher``'s submission, plus chunks of
streams whose LSTM state the engine holds between them (``service.engine.streams``).

A chunk takes its stream's turn, runs through the same batcher as every other sequence (so the
chunks of many streams batch together, length-aware), and leaves its final states as the
stream's state; the client gets only the outputs it asked for. Shapes: a chunk ``(L, F)``; the
state per state input ``(dirs, H_n)``, ``dirs`` = 1 (only unidirectional models stream).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from contract.spec import ModelSpec
from service.engine.batching.batcher import DynamicBatcher, SequenceResult
from service.engine.streams import StreamStore
from service.errors import BatchFailed, InvalidInput, ServiceError
from service.streaming import StreamChunk, check_streamable

log = logging.getLogger(__name__)


class StreamingBatcher:
    """``batcher`` for ``spec``, with the chunks of streams kept in ``store``."""

    def __init__(
        self,
        batcher: DynamicBatcher,
        spec: ModelSpec,
        store: StreamStore,
        refusal: str | None = None,
    ) -> None:
        self.batcher = batcher
        self.refusal = refusal
        """Why this process cannot take streams (None: it can)."""
        self.spec = spec
        self.store = store
        self._state_outputs = {s.output: s.name for s in spec.state_inputs}
        self._chunks: set[asyncio.Task[None]] = set()

    # -- what a Scheduler is, as DynamicBatcher's -------------------------------------------------
    @property
    def failure(self) -> BaseException | None:
        return self.batcher.failure

    @property
    def healthy(self) -> bool:
        return self.batcher.healthy

    @property
    def queue_depth(self) -> int:
        return self.batcher.queue_depth

    def check_admission(self, sequences: int = 1) -> None:
        self.batcher.check_admission(sequences)

    async def close(self, drain_timeout_s: float) -> None:
        await self.batcher.close(drain_timeout_s)

    def submit(
        self,
        sequences: Sequence[np.ndarray],
        initial_states: Sequence[Mapping[str, np.ndarray] | None],
        output_names: frozenset[str],
        deadline: float,
        stream: StreamChunk | None = None,
    ) -> list[asyncio.Future[SequenceResult]]:
        if stream is None:
            return self.batcher.submit(sequences, initial_states, output_names, deadline)
        if self.refusal is not None:
            raise InvalidInput(self.refusal)
        directions = {s.directions for s in self.spec.state_inputs}
        has_states = any(s is not None for s in initial_states)
        check_streamable(stream, self.spec.name, len(sequences), directions, has_states)
        self.batcher.check_admission(1)
        future: asyncio.Future[SequenceResult] = asyncio.get_running_loop().create_future()
        chunk = asyncio.ensure_future(
            self._run_chunk(sequences[0], initial_states[0], output_names, deadline, stream, future)
        )
        self._chunks.add(chunk)
        chunk.add_done_callback(self._chunks.discard)
        # The request gone (its client left, its deadline passed): a chunk still waiting for its
        # stream's turn or for its batch is dropped, and the stream's state stays as it was.
        future.add_done_callback(lambda f: chunk.cancel() if f.cancelled() else None)
        return [future]

    async def _run_chunk(
        self,
        sequence: np.ndarray,
        initial_state: Mapping[str, np.ndarray] | None,
        output_names: frozenset[str],
        deadline: float,
        chunk: StreamChunk,
        future: asyncio.Future[SequenceResult],
    ) -> None:
        key = (self.spec.name, self.spec.version, chunk.sequence_id)
        try:
            async with self.store.chunk(key, chunk.start, chunk.end, initial_state) as stream:
                wanted = output_names | set(self._state_outputs)
                (result,) = self.batcher.submit([sequence], [stream.state], wanted, deadline)
                try:
                    outputs = await result
                finally:
                    result.cancel()  # cancelled meanwhile: its sequence need not run
                stream.state = {
                    name: np.array(outputs[output]) for output, name in self._state_outputs.items()
                }
        except ServiceError as error:
            if not future.done():
                future.set_exception(error)
            return
        except asyncio.CancelledError:
            return  # nobody waits for this chunk any more
        except Exception:
            log.exception("a stream's chunk failed")
            if not future.done():
                future.set_exception(BatchFailed("inference failed for this chunk"))
            return
        if not future.done():
            future.set_result({k: v for k, v in outputs.items() if k in output_names})
