"""The one ONNX Runtime session factory, and a session's description checked against the contract.

Everything that runs a model opens it here (the service's ``ModelRuntime``, the exporter's
verifier, the benchmarks, the load tester's reference), so the session options, the provider
choice and its fallback, and the CUDA options (TF32 off) are the same everywhere, and a figure
measured outside the service is one of what the service runs.

Shapes: ``B`` batch, ``T`` padded time, ``F`` input features, ``C`` classes, ``dirs``
directions, ``H_n`` hidden width of layer ``n`` (``docs/model-contract.md``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import cast, get_args

import onnxruntime as ort

from contract.names import INPUTS, LENGTHS, LOGITS, PROBS
from contract.providers import (
    CUDA,
    CUDA_OPTIONS,
    ORT_LOG_SEVERITY,
    ProviderPreference,
    ProviderUnavailableError,
    candidate_providers,
    quiet_ort_logs,
)
from contract.spec import ContractError, ModelSpec, StateInput, decode_metadata

log = logging.getLogger(__name__)


def session_options(intra_op_threads: int, cpu_mem_arena: bool = True) -> ort.SessionOptions:
    """The session options of every session (``create_session``).

    ``intra_op_threads`` 0: ORT's default, one thread per physical core. ``cpu_mem_arena``:
    ORT's CPU arena keeps its high-water mark for reuse (faster; memory stays up after a burst),
    or every run allocates and frees (``Settings.ort_cpu_mem_arena``).
    """
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = cpu_mem_arena
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    # Overridable initializers (the initial states) make ORT warn on every load; that is the
    # contract's design, not something to act on.
    options.log_severity_level = ORT_LOG_SEVERITY
    # Idle ORT threads must not spin: they would steal the cores that the event loop needs
    # to accept and decode the next requests while a batch runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def create_session(
    model: Path | str | bytes,
    provider: ProviderPreference | str,
    intra_op_threads: int,
    cuda_device_id: int = 0,
    cpu_mem_arena: bool = True,
    *,
    tf32: bool = False,
) -> tuple[ort.InferenceSession, str]:
    """A session on ``model`` (a file, or the serialized model) and the provider it runs on.

    ``provider``: ``cpu``; ``cuda``, which must load (``ProviderUnavailableError`` where CUDA
    cannot load here or ORT fell back to the CPU: a silent fallback would report CPU figures as
    CUDA ones); or ``auto``, CUDA where it loads, else the CPU with a warning. On CUDA the
    session gets one intra-op thread (the GPU does the work; the CPU ops are shape glue) and
    exact FP32 GEMMs, unless ``tf32`` (ORT's CUDA default: only for measuring what it costs in
    accuracy and buys in speed). Returns the session and its provider's ORT name
    (``CPUExecutionProvider``, ``CUDAExecutionProvider``).
    """
    if provider not in get_args(ProviderPreference):
        raise ValueError(
            f"provider must be one of {list(get_args(ProviderPreference))}, got {provider!r}"
        )
    preference = cast(ProviderPreference, provider)  # checked just above
    candidates = candidate_providers(preference)
    on_cuda = candidates[0] == CUDA
    options = session_options(1 if on_cuda else intra_op_threads, cpu_mem_arena)
    cuda_options = {**CUDA_OPTIONS, "device_id": str(cuda_device_id)}
    if tf32:
        cuda_options["use_tf32"] = "1"
    source = model if isinstance(model, bytes) else str(model)
    what = "the model" if isinstance(model, bytes) else str(model)
    with quiet_ort_logs():  # a CUDA that does not load is reported below, once
        session = ort.InferenceSession(
            source,
            options,
            providers=[(CUDA, cuda_options) if p == CUDA else p for p in candidates],
        )
    runs_on = session.get_providers()[0]
    if preference == "cuda" and runs_on != CUDA:
        raise ProviderUnavailableError(
            f"{what}: {CUDA} was asked for but the session runs on {runs_on}; is a GPU with a "
            "matching CUDA/cuDNN present?"
        )
    if on_cuda and runs_on != CUDA:
        log.warning("CUDA provider did not load for %s; running on the CPU", what)
    return session, runs_on


def _int_dim(dim: object, what: str) -> int:
    if not isinstance(dim, int):
        raise ContractError(f"{what} must be a fixed size, got {dim!r}")
    return dim


def _shape(dims: Sequence[object]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in dims]


def read_spec(name: str, version: str, session: ort.InferenceSession) -> ModelSpec:
    """Check a session against the contract and describe it (``ContractError`` naming what
    breaks it): inputs exactly ``inputs`` float32 ``(B, T, F)`` and ``lengths`` int32 ``(B,)``,
    outputs with ``logits`` and ``probs`` ``(B, C)``, each overridable ``initial_{c|h}_{n}``
    ``(dirs, B, H_n)`` with its ``final_{c|h}_{n}``."""
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
    if LOGITS not in outputs or PROBS not in outputs:
        raise ContractError(
            f"graph outputs must include 'logits' and 'probs', got {sorted(outputs)}"
        )
    num_classes = _int_dim(outputs[PROBS].shape[1], "the class count C of 'probs'")
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
