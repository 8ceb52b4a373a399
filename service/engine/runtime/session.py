"""One ONNX Runtime session per model version, and the padding/splitting around its runs.

Shapes: ``B`` batch, ``T`` longest length in the batch, ``F`` input features, ``C`` classes,
``D`` per-step output width, ``dirs`` directions, ``H_n`` hidden width of layer ``n``.
The graph's names and shapes, and which axis of each output is the batch, are the contract's
(``contract``, ``docs/model-contract.md``); the session is ``contract.sessions.create_session``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from contract.model_config import ModelConfig
from contract.names import CONFIG_FILENAME
from contract.precision import SERVED_ON, PrecisionError, precision_of
from contract.providers import CUDA, ProviderPreference, device_name
from contract.sessions import create_session, read_spec
from contract.spec import OutputSpec
from padding import pad_sequences

log = logging.getLogger(__name__)

_INPUT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}
"""The dtype a sequence input takes (requests arrive as float32; ``contract.signature``)."""


def sequence_result(array: np.ndarray, output: OutputSpec, row: int, length: int) -> np.ndarray:
    """Row ``row`` of a batch's ``output`` ``array``: its batch axis gone, its time axis (if
    any) cut to ``length``; contiguous, as the hand-off sends it."""
    index: list[slice | int] = [slice(None)] * array.ndim
    index[output.batch_axis] = row
    if output.time_axis is not None:
        index[output.time_axis] = slice(0, length)
    picked = np.asarray(array[tuple(index)])  # a 0-d array, not a numpy scalar, for [B] outputs
    return picked if picked.flags.c_contiguous else np.ascontiguousarray(picked)


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
        precision = precision_of(self.session.get_modelmeta().custom_metadata_map)
        served_on = SERVED_ON[precision]
        if self.provider == CUDA and "cuda" not in served_on:
            # int8: its kernels are CPU-only, so a session of its own on the CPU beats a CUDA
            # one that copies to the CPU and back at every quantized node.
            log.info("%s/%s is %s: serving it on the CPU provider", name, version, precision)
            self.session, self.provider = create_session(
                path, "cpu", intra_op_threads, cpu_mem_arena=cpu_mem_arena
            )
        elif self.provider != CUDA and "cpu" not in served_on:
            raise PrecisionError(
                f"{name}/{version} is the {precision} variant, served on CUDA only: on "
                f"{self.provider} it is no faster than fp32 and less exact. Serve it where "
                "CUDA loads (--provider cuda), or serve its fp32 or int8 variant here"
            )
        config_path = path.parent.parent / CONFIG_FILENAME  # <repo>/<name>/config.pbtxt
        config = ModelConfig.read(config_path) if config_path.is_file() else None
        self.spec = read_spec(name, version, self.session, config, config_path.parent)
        self.path = path
        sequence_type = next(
            i.type for i in self.session.get_inputs() if i.name == self.spec.sequence_input
        )
        self._input_dtype = _INPUT_DTYPES[sequence_type]
        self._lengths_dtype = np.int64 if self.spec.lengths_datatype == "INT64" else np.int32
        self._outputs = {o.name: o for o in self.spec.outputs}
        self.device = device_name(self.provider, cuda_device_id)
        """``cuda:N`` or ``cpu``: where the batches run (the metrics' ``device`` label)."""

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
        """Run ``sequences`` (each ``(L_b, F)``) as one padded batch, laid out as the model
        takes it (``(B, T, F)``, or ``(T, B, F)`` time-major), with their lengths if it takes
        them.

        ``initial_states[b]`` maps state input names to ``(dirs, H_n)`` arrays, or is None for
        zeros. Returns per sequence a dict of the outputs named, each without its batch axis
        and with its time axis cut to ``L_b`` (``sequence_result``): for the contract's graphs
        ``logits``/``probs`` ``(C,)``, ``outputs`` ``(L_b, D)``, ``final_*`` ``(dirs, H_n)``.
        """
        batch = len(sequences)
        spec = self.spec
        padded, lengths = pad_sequences(sequences)
        if spec.padding_sensitive and lengths.min() != lengths.max():
            # The batcher forms exact-length batches for such a model; padding would change
            # its answers, so a mixed batch is a bug to stop at, not a run to make.
            raise RuntimeError(f"{spec.name}: a batch of mixed lengths for a model without lengths")
        if spec.time_major:
            padded = padded.transpose(1, 0, 2)  # (T, B, F): a view, ORT copies it in
        if self._input_dtype != np.float32:
            padded = padded.astype(self._input_dtype)
        feeds: dict[str, np.ndarray] = {spec.sequence_input: padded}
        if spec.lengths_input is not None:
            feeds[spec.lengths_input] = lengths.astype(self._lengths_dtype, copy=False)
        if any(state is not None for state in initial_states):
            for state_input in spec.state_inputs:
                stacked = np.zeros((state_input.directions, batch, state_input.width), np.float32)
                for row, state in enumerate(initial_states):
                    if state is not None and state_input.name in state:
                        stacked[:, row] = state[state_input.name]
                feeds[state_input.name] = stacked
        wanted = set(output_names)
        names = [n for n in spec.output_names if n in wanted]
        if not names:  # ORT would return every output for an empty list
            return [{} for _ in range(batch)]
        results = self.session.run(names, feeds)
        per_sequence: list[dict[str, np.ndarray]] = [{} for _ in range(batch)]
        for out_name, array in zip(names, results, strict=True):
            output = self._outputs[out_name]
            if array.shape[output.batch_axis] != batch:
                raise RuntimeError(
                    f"output {out_name} has batch {array.shape[output.batch_axis]} (axis "
                    f"{output.batch_axis}), expected {batch}"
                )
            if array.dtype.kind == "f" and array.dtype != np.float32:
                array = array.astype(np.float32)
            for row in range(batch):
                per_sequence[row][out_name] = sequence_result(array, output, row, lengths[row])
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
