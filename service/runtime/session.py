"""One ONNX Runtime session per model version, and the padding/splitting around its runs.

Shapes: ``B`` batch, ``T`` longest length in the batch, ``F`` input features, ``C`` classes,
``D`` per-step output width, ``dirs`` directions, ``H_n`` hidden width of layer ``n``.
The graph's names and shapes are those of ``docs/model-contract.md``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from padding import pad_sequences
from service.runtime.providers import (
    CUDA,
    CUDA_OPTIONS,
    ProviderPreference,
    candidate_providers,
    quiet_ort_logs,
)

log = logging.getLogger(__name__)

INPUTS, LENGTHS = "inputs", "lengths"


@dataclass(frozen=True)
class StateInput:
    """An optional initial-state input ``initial_{c|h}_{n}`` of shape ``(dirs, B, H_n)``."""

    name: str
    output: str  # the matching final-state output, e.g. final_c_0
    directions: int
    width: int


@dataclass(frozen=True)
class ModelSpec:
    """What the service knows of a served model, read from the ONNX file."""

    name: str
    version: str
    input_size: int
    num_classes: int
    labels: list[str]
    state_inputs: list[StateInput]
    output_names: list[str]
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    """Shapes of the required inputs, -1 where dynamic."""
    output_shapes: dict[str, list[int]] = field(default_factory=dict)
    """Shapes of the outputs, -1 where dynamic."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The model's ``metadata_props``: JSON objects and lists decoded (``parity``,
    ``layer_sizes``, ``labels``), every other value the string stored."""

    @property
    def layers(self) -> int:
        return len(self.state_inputs) // 2


class ContractError(ValueError):
    """The ONNX file does not follow the model contract."""


def _int_dim(dim: object, what: str) -> int:
    if not isinstance(dim, int):
        raise ContractError(f"{what} must be a fixed size, got {dim!r}")
    return dim


def _shape(dims: Sequence[object]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in dims]


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """ONNX ``metadata_props`` are strings; those holding a JSON object or list become that
    object or list, so that a client reads ``parity`` as an object, not JSON in a string.
    Scalars stay strings (``"version": "1"`` is a name, not a number)."""
    decoded: dict[str, Any] = {}
    for key, text in props.items():
        value: Any = text
        if text.lstrip().startswith(("{", "[")):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None  # not JSON after all: kept as the string it is
            if isinstance(parsed, dict | list):
                value = parsed
        decoded[key] = value
    return decoded


def read_spec(name: str, version: str, session: ort.InferenceSession) -> ModelSpec:
    """Check a session against the contract and describe it."""
    inputs = {i.name: i for i in session.get_inputs()}
    if set(inputs) != {INPUTS, LENGTHS}:
        raise ContractError(
            f"graph inputs must be exactly 'inputs' and 'lengths' (states are optional "
            f"initializers), got {sorted(inputs)}"
        )
    x_shape = inputs[INPUTS].shape
    if len(x_shape) != 3 or inputs[INPUTS].type != "tensor(float)":
        raise ContractError(
            f"'inputs' must be float32 [B, T, F], got {inputs[INPUTS].type} {x_shape}"
        )
    if inputs[LENGTHS].type != "tensor(int32)":
        raise ContractError(f"'lengths' must be int32, got {inputs[LENGTHS].type}")
    input_size = _int_dim(x_shape[2], "the feature size F of 'inputs'")
    outputs = {o.name: o for o in session.get_outputs()}
    if "logits" not in outputs or "probs" not in outputs:
        raise ContractError(
            f"graph outputs must include 'logits' and 'probs', got {sorted(outputs)}"
        )
    num_classes = _int_dim(outputs["probs"].shape[1], "the class count C of 'probs'")
    states = []
    for init in session.get_overridable_initializers():
        if not init.name.startswith(("initial_c_", "initial_h_")):
            continue
        final = "final_" + init.name.removeprefix("initial_")
        if final not in outputs or len(init.shape) != 3:
            raise ContractError(f"state input {init.name} has no matching output {final}")
        states.append(
            StateInput(
                init.name,
                final,
                _int_dim(init.shape[0], init.name),
                _int_dim(init.shape[2], init.name),
            )
        )
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    labels = [str(label) for label in json.loads(metadata.get("labels", "[]"))]
    if len(labels) != num_classes:
        labels = [str(k) for k in range(num_classes)]
    return ModelSpec(
        name=name,
        version=version,
        input_size=input_size,
        num_classes=num_classes,
        labels=labels,
        state_inputs=sorted(states, key=lambda s: s.name),
        output_names=list(outputs),
        input_shapes={name: _shape(i.shape) for name, i in inputs.items()},
        output_shapes={name: _shape(o.shape) for name, o in outputs.items()},
        metadata=decode_metadata(metadata),
    )


def session_options(intra_op_threads: int, cpu_mem_arena: bool = True) -> ort.SessionOptions:
    """The service's session options (benchmarks use them too, to measure the same thing).

    ``cpu_mem_arena``: ORT's CPU arena keeps its high-water mark for reuse (faster; memory
    stays up after a burst), or every run allocates and frees (``Settings.ort_cpu_mem_arena``).
    """
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = cpu_mem_arena
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle ORT threads must not spin: they would steal the cores that the event loop needs
    # to accept and decode the next requests while a batch runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


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
        options = session_options(intra_op_threads, cpu_mem_arena)
        providers = candidate_providers(preference)
        if providers[0] == CUDA:
            options.intra_op_num_threads = 1  # the GPU does the work; CPU ops are shape glue
        with quiet_ort_logs():
            self.session = ort.InferenceSession(
                str(path),
                options,
                providers=[
                    (CUDA, {**CUDA_OPTIONS, "device_id": str(cuda_device_id)}) if p == CUDA else p
                    for p in providers
                ],
            )
        self.provider = self.session.get_providers()[0]
        if preference == "cuda" and self.provider != CUDA:
            raise RuntimeError(
                f"{name}/{version}: CUDA was asked for but the session runs on {self.provider}"
            )
        if CUDA in providers and self.provider != CUDA:
            log.warning("CUDA provider did not load for %s/%s; running on the CPU", name, version)
        self.spec = read_spec(name, version, self.session)
        self.path = path

    @property
    def on_gpu(self) -> bool:
        return self.provider == CUDA

    # The signature of ``BatchRunner`` (service.batching.batcher), which the benchmark's
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
            batch_axis = 1 if out_name.startswith("final_") else 0
            if array.shape[batch_axis] != batch:
                raise RuntimeError(
                    f"output {out_name} has batch {array.shape[batch_axis]} (axis {batch_axis}), "
                    f"expected {batch}"
                )
            for row in range(batch):
                if out_name == "outputs":
                    per_sequence[row][out_name] = array[row, : lengths[row]]
                elif batch_axis == 1:
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
