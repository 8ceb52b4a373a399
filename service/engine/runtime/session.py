"""One ONNX Runtime session per model version, and the padding/splitting around its runs.

Shapes: ``B`` batch, ``T`` longest length in the batch, ``F`` input features, ``C`` classes,
``D`` per-step output width, ``dirs`` directions, ``H_n`` hidden width of layer ``n``.
The graph's names and shapes, and which axis of each output is the batch, are the contract's
(``contract``, ``docs/model-contract.md``); the session is ``contract.sessions.create_session``'s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from contract.names import INPUTS, LENGTHS
from contract.providers import CUDA, ProviderPreference
from contract.sessions import create_session, read_spec
from contract.spec import batch_axis, is_per_step
from padding import pad_sequences


class ModelRuntime:
    """An ORT session for one model version; ``run_batch`` pads, runs and splits.

    ``run_batch`` is called from executor threads (ORT releases the GIL while it runs, so runs
    overlap); nothing in it touches the event loop.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        version: str,
        preference: ProviderPreference,
        intra_op_threads: int,
        cuda_device_id: int = 0,
        cpu_mem_arena: bool = True,
    ) -> None:
        # ``provider``: the ORT name of the provider the session runs on (CUDA may not load).
        self.session, self.provider = create_session(
            path, preference, intra_op_threads, cuda_device_id, cpu_mem_arena
        )
        self.spec = read_spec(name, version, self.session)
        self.path = path

    @property
    def on_gpu(self) -> bool:
        return self.provider == CUDA

    # The signature of ``BatchRunner`` (service.engine.batching.batcher), which the benchmark's
    # ``NullRuntime`` and the tests' fake runtimes repeat, as implementations of a Protocol do.
    def run_batch(
        self,
        sequences: Sequence[np.ndarray],
        initial_states: Sequence[Mapping[str, np.ndarray] | None],
        output_names: Iterable[str],
    ) -> list[dict[str, np.ndarray]]:
        """Run ``sequences`` (each ``(L_b, F)``) as one padded batch.

        ``initial_states[b]`` maps state input names to ``(dirs, H_n)`` arrays, or is None for
        zeros. Returns per sequence a dict: ``logits``/``probs`` ``(C,)``, ``outputs``
        ``(L_b, D)``, ``final_*`` ``(dirs, H_n)`` — only the outputs named.
        """
        batch = len(sequences)
        padded, lengths = pad_sequences(sequences)
        feeds: dict[str, np.ndarray] = {INPUTS: padded, LENGTHS: lengths}
        if any(state is not None for state in initial_states):
            for state_input in self.spec.state_inputs:
                stacked = np.zeros((state_input.directions, batch, state_input.width), np.float32)
                for row, state in enumerate(initial_states):
                    if state is not None and state_input.name in state:
                        stacked[:, row] = state[state_input.name]
                feeds[state_input.name] = stacked
        names = [n for n in self.spec.output_names if n in set(output_names)]
        if not names:  # ORT would return every output for an empty list
            return [{} for _ in range(batch)]
        results = self.session.run(names, feeds)
        per_sequence: list[dict[str, np.ndarray]] = [{} for _ in range(batch)]
        for out_name, array in zip(names, results, strict=True):
            axis = batch_axis(out_name)
            if array.shape[axis] != batch:
                raise RuntimeError(
                    f"output {out_name} has batch {array.shape[axis]} (axis {axis}), "
                    f"expected {batch}"
                )
            for row in range(batch):
                if is_per_step(out_name):
                    per_sequence[row][out_name] = array[row, : lengths[row]]
                elif axis == 1:
                    per_sequence[row][out_name] = np.ascontiguousarray(array[:, row])
                else:
                    per_sequence[row][out_name] = array[row]
        return per_sequence

    def warmup(self, batch_sizes: Sequence[int], lengths: Sequence[int]) -> float:
        """Run the grid of batch sizes x lengths once (allocations, kernels); seconds taken."""
        started = time.perf_counter()
        rng = np.random.default_rng(0)
        for batch in batch_sizes:
            for length in lengths:
                sequences = [
                    rng.standard_normal((length, self.spec.input_size), dtype=np.float32)
                    for _ in range(batch)
                ]
                self.run_batch(sequences, [None] * batch, self.spec.output_names)
        return time.perf_counter() - started
