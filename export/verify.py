"""Check an exported graph with ONNX Runtime against torch and against the contract's invariants.

Every export runs ``verify_onnx``; the measured errors go into the model's metadata (``parity``)
and a failed check stops the export. The checks, each over several random batches whose lengths
are unsorted, include 1 and ``max_length``, and whose padding holds garbage (``±pad_value``):

* ``contract_io``: the session lists exactly the contract's inputs, overridable states, outputs.
* ``ort_vs_torch``: every output (logits, probs, outputs, final states) vs ``LSTMClassifier``.
* ``initial_states_vs_torch``: the same with non-zero initial states fed to both.

  Both allow ``tolerance + noise_factor * e32``, where ``e32`` is torch's own float32 error (torch
  float32 vs torch float64 on the same batches). Why: a trained LSTM amplifies rounding along
  time, so two correct float32 implementations drift apart on long sequences (measured on the
  default models at T = 200: torch float32 itself is off by up to ~3e-4, far above 1e-5), while
  an export bug (gate order, direction, lengths, weights) shows errors of ~1e-1. On short
  sequences and untrained weights ``e32`` is ~1e-7 and the limit is ``tolerance``.
* ``zeros_past_length``: ``outputs[b, t]`` for ``t >= lengths[b]`` is exactly 0.
* ``padding_invariance``: each sequence run alone (``T = L``) equals its row in the batch.
* ``chunked_equals_whole`` (unidirectional only): run ``x[:s]``, then ``x[s:L]`` from the first
  chunk's final states; the joined outputs and final states equal one run over ``x[:L]``.

The other checks compare ONNX Runtime with itself and allow ``tolerance`` alone. Both sides
(torch and ONNX Runtime, under the graph's output names) and the random feeds come from
``export.reference``.

Shapes: ``B`` batch, ``T`` padded time, ``F`` input features, ``H_n`` width of layer ``n``,
``dirs`` 1 or 2, ``D = dirs * H_last``, ``C`` classes.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from contract.names import (
    BATCH_DIM,
    INPUTS,
    LENGTHS,
    OUTPUTS,
    TIME_DIM,
    final_c,
    final_h,
    initial_c,
    initial_h,
    output_names,
)
from contract.sessions import create_session
from contract.spec import batch_axis, is_per_step
from export.reference import (
    Arrays,
    fill_padding,
    onnx_outputs,
    random_initial_states,
    random_padded_batch,
    torch_outputs,
)
from models.architectures import LSTMClassifier
from padding import pad_sequences

DEFAULT_TOLERANCE = {"cpu": 1e-5, "cuda": 1e-4}
"""Max abs error allowed, per provider (``cpu`` or ``cuda``). CUDA gets more room: its kernels may
change with the batch size, so even ORT-vs-ORT checks (padding invariance) need not be exact
there (3.8e-5 measured on an H100: the docs/benchmarks.md's "Performance on a GPU",
``bench/results/gpu-2026-11-26-export-cuda.txt``). The session is the service's
(``contract.sessions.create_session``): on CUDA exact FP32 (TF32 off), so the verifier checks
what is served."""


class VerificationError(RuntimeError):
    """An exported graph failed its checks; ``report`` says which and by how much."""

    def __init__(self, report: VerificationReport) -> None:
        failed = ", ".join(check.name for check in report.checks if not check.passed)
        super().__init__(f"ONNX verification failed ({failed}):\n{report.format()}")
        self.report = report


@dataclass(frozen=True)
class VerifySettings:
    """How an export is checked."""

    provider: str = "cpu"
    """``cpu`` or ``cuda`` (ONNX Runtime's CPU or CUDA execution provider)."""
    tolerance: float | None = None
    """Max abs error allowed; None: ``DEFAULT_TOLERANCE[provider]``."""
    max_length: int = 200
    """Longest sequence checked (``T`` of each batch); recorded as ``max_length_verified``."""
    batch_size: int = 8
    num_batches: int = 3
    noise_factor: float = 16.0
    """Torch-vs-ORT checks allow ``tolerance + noise_factor * (torch float32 vs float64 error)``;
    0 gives a plain absolute tolerance. 16 leaves room over what was measured on the trained
    defaults: ORT's float32 error up to ~11x torch's own (the two round differently)."""
    pad_value: float = 1e3
    """Magnitude of the garbage written past each length."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.provider not in DEFAULT_TOLERANCE:
            raise ValueError(
                f"provider must be one of {sorted(DEFAULT_TOLERANCE)}, got {self.provider!r}"
            )
        if self.max_length < 2 or self.batch_size < 2 or self.num_batches < 1:
            raise ValueError("max_length and batch_size must be >= 2, num_batches >= 1")
        if self.tolerance is not None and not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if not self.noise_factor >= 0:
            raise ValueError(f"noise_factor must be >= 0, got {self.noise_factor}")

    @property
    def resolved_tolerance(self) -> float:
        return DEFAULT_TOLERANCE[self.provider] if self.tolerance is None else self.tolerance


@dataclass(frozen=True)
class CheckResult:
    """One check: the largest abs error it measured (None when it measures nothing) and the limit
    it was held to."""

    name: str
    passed: bool
    max_abs_error: float | None
    limit: float | None
    torch_float32_error: float | None = None
    """For the checks against torch: torch float32 vs float64 on the same batches."""
    detail: str = ""


@dataclass(frozen=True)
class VerificationReport:
    """All checks of one export."""

    checks: tuple[CheckResult, ...]
    provider: str
    """The ONNX Runtime provider that ran the graph, e.g. ``CPUExecutionProvider``."""
    tolerance: float
    noise_factor: float
    max_length: int
    against: str = "torch"
    """What the graph was checked against: torch, or for a precision variant the fp32 graph
    (``export.verify_variant``), whose checks each have their own limit."""

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def check(self, name: str) -> CheckResult:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def parity(self) -> dict[str, Any]:
        """What goes into the ``parity`` metadata entry (JSON)."""
        return {
            "against": self.against,
            "provider": self.provider,
            "tolerance": self.tolerance,
            "noise_factor": self.noise_factor,
            "max_length": self.max_length,
            "passed": self.passed,
            "max_abs_error": {
                check.name: check.max_abs_error
                for check in self.checks
                if check.max_abs_error is not None
            },
            "limit": {check.name: check.limit for check in self.checks if check.limit is not None},
            "torch_float32_error": {
                check.name: check.torch_float32_error
                for check in self.checks
                if check.torch_float32_error is not None
            },
        }

    def parity_json(self) -> str:
        return json.dumps(self.parity(), sort_keys=True)

    def format(self) -> str:
        """A human-readable table, one line per check."""
        if self.against == "torch":
            title = (
                f"verification on {self.provider}, sequences up to {self.max_length} steps, "
                f"tolerance {self.tolerance:g} (+ {self.noise_factor:g} x torch's own float32 "
                "error for the checks against torch):"
            )
        else:
            title = f"verification against {self.against} on {self.provider}, limits per check:"
        lines = [title]
        for check in self.checks:
            error = "-" if check.max_abs_error is None else f"{check.max_abs_error:.2e}"
            limit = "-" if check.limit is None else f"{check.limit:.2e}"
            status = "ok  " if check.passed else "FAIL"
            line = f"  {status} {check.name:<24} max abs error {error:>8}  limit {limit:>8}"
            notes = []
            if check.torch_float32_error is not None:
                notes.append(f"torch float32 error {check.torch_float32_error:.2e}")
            if check.detail:
                notes.append(check.detail)
            lines.append(line + ("  (" + "; ".join(notes) + ")" if notes else ""))
        lines.append("  => " + ("all checks passed" if self.passed else "VERIFICATION FAILED"))
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise VerificationError(self)


def verify_onnx(
    onnx_model: onnx.ModelProto | bytes,
    torch_model: LSTMClassifier,
    settings: VerifySettings | None = None,
) -> VerificationReport:
    """Run every check of ``onnx_model`` against ``torch_model`` (which it must be an export of).

    Never raises for a failed check (see ``VerificationReport.raise_if_failed``); raises
    ``ProviderUnavailableError`` when the provider cannot run.
    """
    settings = settings or VerifySettings()
    config = torch_model.config
    tolerance = settings.resolved_tolerance
    data = onnx_model.SerializeToString() if isinstance(onnx_model, onnx.ModelProto) else onnx_model
    # intra_op_threads 0: ORT's default (a thread per core); a CUDA that cannot run raises.
    session, provider = create_session(data, settings.provider, intra_op_threads=0)
    runner = Runner(session, config.layer_sizes)
    references = _TorchReferences(torch_model)
    rng = np.random.default_rng(settings.seed)
    batches = [random_batch(torch_model, settings, rng) for _ in range(settings.num_batches)]

    def report(checks: list[CheckResult]) -> VerificationReport:
        return VerificationReport(
            tuple(checks), provider, tolerance, settings.noise_factor, settings.max_length
        )

    checks = [check_contract_io(session, torch_model)]
    if not checks[0].passed:
        return report(checks)  # running a graph with the wrong I/O would only add noise

    for name, with_states in (("ort_vs_torch", False), ("initial_states_vs_torch", True)):
        worst = Worst()
        floor = 0.0
        for batch in batches:
            size = len(batch.lengths)
            states = random_initial_states(config, size, rng, scale=0.5) if with_states else None
            actual = runner(batch.inputs, batch.lengths, states)
            expected, exact = references(batch, states)
            worst.add(*_max_error(actual, expected))
            floor = max(floor, _max_error(expected, exact)[0])
        limit = tolerance + settings.noise_factor * floor
        checks.append(worst.result(name, limit, torch_float32_error=floor))

    def measured(name: str, limit: float, measure: Callable[[Batch], tuple[float, str]]) -> None:
        worst = Worst()
        for batch in batches:
            worst.add(*measure(batch))
        checks.append(worst.result(name, limit))

    measured("zeros_past_length", 0.0, lambda b: past_length(runner, b))
    measured("padding_invariance", tolerance, lambda b: padding_invariance(runner, b))
    if not config.bidirectional:
        measured(
            "chunked_equals_whole",
            tolerance,
            lambda b: chunked(runner, b, settings.pad_value, rng),
        )
    return report(checks)


class Worst:
    """The largest error seen and where (NaN counts as the largest)."""

    def __init__(self) -> None:
        self.error, self.where = 0.0, ""

    def add(self, error: float, where: str) -> None:
        if not error <= self.error:  # true for NaN too
            self.error, self.where = error, where

    def result(
        self, name: str, limit: float, torch_float32_error: float | None = None
    ) -> CheckResult:
        passed = math.isfinite(self.error) and self.error <= limit
        detail = f"worst: {self.where}" if self.where else ""
        return CheckResult(
            name,
            passed,
            max_abs_error=self.error,
            limit=limit,
            torch_float32_error=torch_float32_error,
            detail=detail,
        )


# -- inputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    inputs: np.ndarray  # (B, T, F), garbage past each length
    lengths: np.ndarray  # (B,) int32, unsorted, holds 1 and T


def random_batch(
    model: LSTMClassifier, settings: VerifySettings, rng: np.random.Generator
) -> Batch:
    size, time = settings.batch_size, settings.max_length
    lengths = rng.integers(1, time + 1, size=size).astype(np.int32)
    shortest, longest = rng.choice(size, size=2, replace=False)
    lengths[shortest], lengths[longest] = 1, time
    return Batch(*random_padded_batch(lengths, model.config.input_size, rng, settings.pad_value))


# -- running -----------------------------------------------------------------------------------
class Runner:
    """Runs the session and returns every output by name."""

    def __init__(self, session: ort.InferenceSession, layer_sizes: tuple[int, ...]) -> None:
        self.session = session
        self.num_layers = len(layer_sizes)
        self.names = output_names(self.num_layers)

    def __call__(
        self,
        inputs: np.ndarray,
        lengths: np.ndarray,
        states: Mapping[str, np.ndarray] | None = None,
    ) -> Arrays:
        return onnx_outputs(self.session, inputs, lengths, states, self.names)

    def final_states(self, result: Arrays) -> Arrays:
        """The final states of ``result`` renamed as initial-state feeds (for chunking)."""
        feeds = {}
        for n in range(self.num_layers):
            feeds[initial_c(n)] = result[final_c(n)]
            feeds[initial_h(n)] = result[final_h(n)]
        return feeds


class _TorchReferences:
    """``LSTMClassifier`` on the CPU in float32 (the reference) and float64 (to measure the
    float32 reference's own rounding error)."""

    def __init__(self, model: LSTMClassifier) -> None:
        self.float32 = copy.deepcopy(model).cpu().float().eval()
        self.float64 = copy.deepcopy(model).cpu().double().eval()

    def __call__(self, batch: Batch, states: Arrays | None) -> tuple[Arrays, Arrays]:
        return (
            torch_outputs(self.float32, batch.inputs, batch.lengths, states),
            torch_outputs(self.float64, batch.inputs, batch.lengths, states),
        )


def _max_error(actual: Arrays, expected: Arrays) -> tuple[float, str]:
    """Largest abs difference over the outputs both hold, and which output gave it."""
    worst = Worst()
    for name, value in expected.items():
        if actual[name].shape != value.shape:
            return math.inf, f"{name} shape {actual[name].shape} != {value.shape}"
        diff = np.abs(actual[name].astype(np.float64) - value.astype(np.float64))
        worst.add(float(np.max(diff, initial=0.0)), name)
    return worst.error, worst.where


# -- the checks --------------------------------------------------------------------------------
def check_contract_io(session: ort.InferenceSession, model: LSTMClassifier) -> CheckResult:
    config = model.config
    dirs, layers = config.num_directions, config.layer_sizes
    problems = []
    inputs = {i.name: i for i in session.get_inputs()}
    if list(inputs) != [INPUTS, LENGTHS]:
        problems.append(f"inputs {list(inputs)}")
    else:
        if inputs[LENGTHS].type != "tensor(int32)":
            problems.append(f"lengths is {inputs[LENGTHS].type}")
        expected = [BATCH_DIM, TIME_DIM, config.input_size]
        if inputs[INPUTS].shape != expected:
            problems.append(f"inputs shape {inputs[INPUTS].shape}")
    expected_states = {}
    for n, hidden in enumerate(layers):
        for name in (initial_h(n), initial_c(n)):
            expected_states[name] = [dirs, BATCH_DIM, hidden]
    states = {i.name: i.shape for i in session.get_overridable_initializers()}
    if states != expected_states:
        problems.append(f"overridable states {states}")
    outputs = [o.name for o in session.get_outputs()]
    if outputs != output_names(len(layers)):
        problems.append(f"outputs {outputs}")
    return CheckResult(
        "contract_io", not problems, max_abs_error=None, limit=None, detail="; ".join(problems)
    )


def past_length(runner: Runner, batch: Batch) -> tuple[float, str]:
    outputs = runner(batch.inputs, batch.lengths)[OUTPUTS]  # (B, T, D)
    steps = np.arange(outputs.shape[1])
    padded = steps[None, :] >= batch.lengths[:, None]  # (B, T)
    return float(np.max(np.abs(outputs[padded]), initial=0.0)), OUTPUTS


def _row(result: Arrays, row: int, length: int) -> Arrays:
    """Sequence ``row``'s results (batch axis kept, length 1), outputs cut to ``length``."""
    picked = {}
    for name, value in result.items():
        kept = np.take(value, [row], axis=batch_axis(name))  # final_*: (dirs, 1, H_n)
        picked[name] = kept[:, :length] if is_per_step(name) else kept
    return picked


def _only(arrays: Arrays, names: Sequence[str] | None) -> Arrays:
    """``arrays`` restricted to ``names`` (all of them for None)."""
    return dict(arrays) if names is None else {name: arrays[name] for name in names}


def padding_invariance(
    runner: Runner, batch: Batch, compared: Sequence[str] | None = None
) -> tuple[float, str]:
    """Each sequence alone against its row of the batch, over the outputs ``compared`` (all
    for None)."""
    together = runner(batch.inputs, batch.lengths)
    worst = Worst()
    for row, length in enumerate(batch.lengths):
        alone = runner(batch.inputs[row : row + 1, :length], batch.lengths[row : row + 1])
        error, name = _max_error(alone, _only(_row(together, row, int(length)), compared))
        worst.add(error, f"{name} of a length-{length} sequence")
    return worst.error, worst.where


def chunked(
    runner: Runner,
    batch: Batch,
    pad_value: float,
    rng: np.random.Generator,
    compared: Sequence[str] | None = None,
) -> tuple[float, str]:
    """Split each sequence of length >= 2 at a random step ``s`` in ``[1, L - 1]`` (a chunk of
    length 0 is outside the contract) and run the two chunks one after the other; the joined
    results against the whole run's, over the outputs ``compared`` (all for None)."""
    keep = batch.lengths >= 2
    inputs, lengths = batch.inputs[keep], batch.lengths[keep]
    if not len(lengths):
        return 0.0, ""
    splits = np.array([rng.integers(1, length) for length in lengths], dtype=np.int32)
    cuts = list(zip(inputs, lengths, splits, strict=True))
    first, _ = pad_sequences([x[:split] for x, _, split in cuts])
    second, _ = pad_sequences([x[split:length] for x, length, split in cuts])
    fill_padding(first, splits, pad_value, rng)
    fill_padding(second, lengths - splits, pad_value, rng)

    whole = runner(inputs, lengths)
    head = runner(first, splits)
    tail = runner(second, lengths - splits, runner.final_states(head))
    worst = Worst()
    for row, (length, split) in enumerate(zip(lengths, splits, strict=True)):
        joined = _row(tail, row, int(length - split))
        joined[OUTPUTS] = np.concatenate(
            [head[OUTPUTS][row : row + 1, :split], joined[OUTPUTS]], axis=1
        )
        error, name = _max_error(joined, _only(_row(whole, row, int(length)), compared))
        worst.add(error, f"{name} of a length-{length} sequence split at {split}")
    return worst.error, worst.where
