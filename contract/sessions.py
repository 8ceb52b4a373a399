"""The one ONNX Runtime session factory, and a session's description checked against the contract.

Everything that runs a model opens it here (the service's ``ModelRuntime``, the exporter's
verifier, the benchmarks, the load tester's reference), so the session options, the provider
choice and its fallback, and the CUDA options (TF32 off) are the same everywhere, and a figure
measured outside the service is one of what the service runs.

Shapes: ``B`` batch, ``T`` padded time, ``F`` input features, ``C`` classes, ``dirs``
directions, ``H_n`` hidden width of layer ``n`` (``docs/model-contract.md``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import cast, get_args

import numpy as np
import onnxruntime as ort

from contract.model_config import ModelConfig
from contract.providers import (
    CUDA,
    CUDA_OPTIONS,
    ORT_LOG_SEVERITY,
    ProviderPreference,
    ProviderUnavailableError,
    candidate_providers,
    quiet_ort_logs,
)
from contract.signature import Hints, Signature, infer_signature
from contract.spec import ContractError, ModelSpec, OutputSpec, StateInput, decode_metadata

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
        try:
            session = ort.InferenceSession(
                source,
                options,
                providers=[(CUDA, cuda_options) if p == CUDA else p for p in candidates],
            )
        except Exception as error:  # ORT's exceptions share no base class but Exception
            hint = load_failure_hint(str(error))
            if hint is None:
                raise
            raise ContractError(f"{what}: {hint}") from None
    runs_on = session.get_providers()[0]
    if preference == "cuda" and runs_on != CUDA:
        raise ProviderUnavailableError(
            f"{what}: {CUDA} was asked for but the session runs on {runs_on}; is a GPU with a "
            "matching CUDA/cuDNN present?"
        )
    if on_cuda and runs_on != CUDA:
        log.warning("CUDA provider did not load for %s; running on the CPU", what)
    return session, runs_on


_IR_VERSION = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")
_OPSET = re.compile(
    r"Opset (\d+) is under development.*support for domain (\S+) is till opset (\d+)"
)


def load_failure_hint(message: str) -> str | None:
    """What to do about an ONNX Runtime load failure that a model from another exporter meets,
    or None for any other failure: a newer IR version (onnx 1.19+ saves IR 14 by default) or an
    opset newer than this ONNX Runtime knows."""
    ir = _IR_VERSION.search(message)
    if ir:
        found, most = ir.groups()
        return (
            f"the file has ONNX IR version {found}; ONNX Runtime {ort.__version__} reads at most "
            f'{most}. Re-save it at IR {most} (python -c "import onnx, sys; m = onnx.load(sys.argv'
            f'[1]); m.ir_version = {most}; onnx.save(m, sys.argv[1])" model.onnx: safe unless '
            f"it uses types new in IR {found}), or save it with an older onnx package"
        )
    opset = _OPSET.search(message.replace("\n", " "))
    if opset:
        found, domain, most = opset.groups()
        return (
            f"the graph uses opset {found} of {domain}; ONNX Runtime {ort.__version__} supports "
            f"at most {most}: export it again with opset_version={most} or lower"
        )
    return None


def _int_dim(dim: object, what: str) -> int:
    if not isinstance(dim, int):
        raise ContractError(f"{what} must be a fixed size, got {dim!r}")
    return dim


def read_spec(
    name: str,
    version: str,
    session: ort.InferenceSession,
    config: ModelConfig | None = None,
    config_dir: Path | None = None,
) -> ModelSpec:
    """Describe a session for serving (``ContractError`` naming what cannot be served).

    The roles of the inputs and the class outputs: ``contract.signature.infer_signature``, from
    ``config`` (a ``config.pbtxt``, whose ``label_filename`` is read from ``config_dir``) and the
    metadata, else from dtypes and ranks. The axes of every output: ``probe_outputs``. The
    states: each overridable ``initial_{c|h}_{n}`` ``(dirs, B, H_n)`` with its
    ``final_{c|h}_{n}`` (the contract's; a model exported elsewhere has none). How each role
    was decided is logged.
    """
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    hints = Hints.of(config, metadata, config_dir)
    signature = infer_signature(session.get_inputs(), session.get_outputs(), hints)
    outputs = probe_outputs(session, signature)
    by_name = {o.name: o for o in outputs}
    num_classes = 0
    for class_output in (signature.probs_output, signature.logits_output):
        if class_output is None:
            continue
        output = by_name[class_output]
        if len(output.shape) != 2 or output.time_axis is not None or output.batch_axis != 0:
            raise ContractError(
                f"the class output {class_output!r} must be [B, C]; it is {output.shape}"
            )
        if num_classes and output.shape[1] != num_classes:
            raise ContractError(
                f"the class outputs disagree on C: {num_classes} and {output.shape[1]}"
            )
        num_classes = output.shape[1]
    labels = hints.labels or []
    if num_classes and len(labels) != num_classes:
        if labels:
            log.warning("%s: %d labels for %d classes; the classes are numbered instead",
                        name, len(labels), num_classes)  # fmt: skip
        labels = [str(k) for k in range(num_classes)]
    if not num_classes:
        labels = []
    states = _state_inputs(session, by_name)
    spec = ModelSpec(
        name=name,
        version=version,
        input_size=signature.input_size,
        labels=labels,
        state_inputs=states,
        outputs=outputs,
        sequence_input=signature.sequence_input,
        lengths_input=signature.lengths_input,
        lengths_datatype=signature.lengths_datatype,
        time_major=signature.time_major,
        probs_output=signature.probs_output,
        logits_output=signature.logits_output,
        max_batch_size=hints.max_batch_size,
        metadata=decode_metadata(metadata),
    )
    log.info(
        "%s/%s: %s%s",
        name,
        version,
        "; ".join(signature.reasons),
        "; padding-sensitive (no lengths input): batched by exact length"
        if spec.padding_sensitive
        else "",
    )
    return spec


def _state_inputs(
    session: ort.InferenceSession, outputs: dict[str, OutputSpec]
) -> list[StateInput]:
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
    return sorted(states, key=lambda s: s.name)


PROBE_RUNS = ((2, 5), (3, 7))
"""The (batch, steps) of the two runs that find each output's axes: the axis that is 2 then 3
is the batch, 5 then 7 the time, one that keeps its size is fixed."""

_V2_DATATYPES = {
    "float32": "FP32",
    "float16": "FP32",
    "float64": "FP32",
    "int64": "INT64",
    "int32": "INT32",
    "bool": "BOOL",
}
"""What each output dtype is answered as: every float as FP32 (ORT's float16/float64 results are
cast; FP32 is what clients of this service read), integers and booleans as they are."""


def probe_outputs(session: ort.InferenceSession, signature: Signature) -> list[OutputSpec]:
    """Every output with its batch and time axes, found by running the model twice on full-length
    sequences (``PROBE_RUNS``): names of symbolic dims are a convention of the exporter and
    cannot be trusted across exporters. ``ContractError`` for an output the service cannot split
    into sequences: one with no batch axis, or an axis that follows neither the batch nor the
    time."""
    rng = np.random.default_rng(0)
    numpy_type = {"tensor(float)": np.float32, "tensor(float16)": np.float16}.get(
        signature.sequence_type, np.float64
    )
    shapes: list[list[tuple[int, ...]]] = []
    names = [o.name for o in session.get_outputs()]
    for batch, steps in PROBE_RUNS:
        layout = (steps, batch) if signature.time_major else (batch, steps)
        feeds = {
            signature.sequence_input: rng.standard_normal((*layout, signature.input_size)).astype(
                numpy_type
            )
        }
        if signature.lengths_input is not None:
            dtype = np.int64 if signature.lengths_datatype == "INT64" else np.int32
            feeds[signature.lengths_input] = np.full(batch, steps, dtype)
        try:
            results = session.run(names, feeds)
        except Exception as error:  # ORT's own exceptions: the model cannot run such a batch
            raise ContractError(
                f"the model failed on a batch of {batch} sequences of {steps} steps, "
                f"{signature.sequence_input!r} {list(feeds[signature.sequence_input].shape)}: "
                f"{error}"
            ) from None
        shapes.append([np.shape(r) for r in results])
        dtypes = [np.asarray(r).dtype for r in results]
    outputs = []
    for k, name in enumerate(names):
        first, second = shapes[0][k], shapes[1][k]
        if len(first) != len(second):
            raise ContractError(f"output {name!r} changes rank with the batch: {first}, {second}")
        batch_axes, time_axes, shape = [], [], []
        for axis, sizes in enumerate(zip(first, second, strict=True)):
            if sizes == (PROBE_RUNS[0][0], PROBE_RUNS[1][0]):
                batch_axes.append(axis)
            elif sizes == (PROBE_RUNS[0][1], PROBE_RUNS[1][1]):
                time_axes.append(axis)
            elif sizes[0] != sizes[1]:
                raise ContractError(
                    f"output {name!r} axis {axis} is {sizes[0]} then {sizes[1]} for batches of "
                    f"{PROBE_RUNS[0]} then {PROBE_RUNS[1]} (batch, steps): it follows neither "
                    "the batch nor the time, so the service cannot split it into sequences"
                )
            shape.append(-1 if sizes[0] != sizes[1] else sizes[0])
        if len(batch_axes) != 1 or len(time_axes) > 1:
            raise ContractError(
                f"output {name!r} has shape {first} for a batch of {PROBE_RUNS[0][0]} sequences "
                f"of {PROBE_RUNS[0][1]} steps: the service needs exactly one batch axis and at "
                "most one time axis to split it into sequences"
            )
        datatype = _V2_DATATYPES.get(dtypes[k].name)
        if datatype is None:
            raise ContractError(f"output {name!r} is {dtypes[k]}, which the service cannot answer")
        outputs.append(
            OutputSpec(name, datatype, shape, batch_axes[0], time_axes[0] if time_axes else None)
        )
    return outputs
