"""Check a precision variant (``export.precision``) against the fp32 graph it was made from.

The variant's own invariants are those of every export (``export.verify``): the contract's
inputs and outputs, exactly zero past each length, each sequence alone equal to its row of a
batch, and chunked equal to whole for a unidirectional model. Against fp32 it is held to
``probs`` within a stated error and to the test accuracy. Every limit is in ``VARIANT_LIMITS``,
chosen over what was measured on the default models and random ones
(docs/models-and-export.md, "Precision").

* ``vs_fp32``: max abs error of ``probs`` against the fp32 graph, over the JapaneseVowels test set
  when the model is of its shape, else over the random batches. Only ``probs``: int8 moves the
  cell states by ~1 on long random inputs while the classes do not move.
* ``accuracy_vs_fp32`` (models of the data set's shape): the variant's test accuracy may be at
  most ``accuracy_drop`` below fp32's.
* ``padding_invariance`` and ``chunked_equals_whole``: ``probs`` of each sequence alone against
  its row of a batch, and of two chunks against the whole, over the same sequences as
  ``vs_fp32``. int8 quantizes each run's input with one scale over the whole batch, so a
  sequence's answer moves a little with its batch.
* ``zeros_past_length``: exactly zero, on the random batches.

int8's batches are zero-padded, as the service pads them: its input scale covers the padding, so
garbage there would change every row's result (garbage padding is what the fp32 checks use).

Shapes: ``B`` batch, ``T`` time, ``F`` features, ``C`` classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx

from contract.names import PROBS
from contract.precision import FP16, INT8
from contract.sessions import create_session
from export.accuracy import BATCH, Accuracy, accuracy_on, matching_test_set
from export.precision import VERIFIED_ON
from export.reference import onnx_outputs
from export.verify import (
    Batch,
    CheckResult,
    Runner,
    VerificationReport,
    VerifySettings,
    Worst,
    check_contract_io,
    chunked,
    padding_invariance,
    past_length,
    random_batch,
)
from models.architectures import LSTMClassifier
from models.data import SequenceDataset
from padding import pad_sequences


@dataclass(frozen=True)
class VariantLimits:
    """What a variant is held to."""

    probs_vs_fp32: float
    """Max abs error of ``probs`` against the fp32 graph."""
    invariance: float
    """Padding invariance and chunked == whole, every output."""
    accuracy_drop: float = 0.005
    """Test accuracy at most this far below fp32's (0.5 points)."""
    pad_value: float = 1e3


VARIANT_LIMITS = {
    # Measured on the defaults (docs/models-and-export.md, "Precision"): int8 probs vs fp32 up
    # to 0.10, alone vs batched 0.048, chunked 0.060; fp16 on the CPU provider 1.2e-3, 0, 0.
    INT8: VariantLimits(probs_vs_fp32=0.2, invariance=0.1, pad_value=0.0),
    FP16: VariantLimits(probs_vs_fp32=2e-3, invariance=1e-3),
}


@dataclass(frozen=True)
class VariantReport:
    """The variant's checks, and the test accuracies (None for a model not of the data set's
    shape)."""

    report: VerificationReport
    accuracy: Accuracy | None
    fp32_accuracy: Accuracy | None


def verify_variant(
    variant: onnx.ModelProto,
    fp32: onnx.ModelProto,
    torch_model: LSTMClassifier,
    precision: str,
    settings: VerifySettings | None = None,
) -> VariantReport:
    """Check ``variant`` (the ``precision`` variant of the verified ``fp32`` export of
    ``torch_model``) on the provider it runs on (``VERIFIED_ON``; ``settings.provider`` when
    it is one of them). Never raises for a failed check; ``ProviderUnavailableError`` when the
    provider cannot run here."""
    limits = VARIANT_LIMITS[precision]
    settings = settings or VerifySettings()
    runs = VERIFIED_ON[precision]
    provider = settings.provider if settings.provider in runs else runs[0]
    settings = dataclasses.replace(settings, provider=provider, pad_value=limits.pad_value)
    session, runs_on = create_session(variant.SerializeToString(), provider, intra_op_threads=0)
    reference, _ = create_session(fp32.SerializeToString(), provider, intra_op_threads=0)
    config = torch_model.config
    runner = Runner(session, config.layer_sizes)
    rng = np.random.default_rng(settings.seed)
    batches = [random_batch(torch_model, settings, rng) for _ in range(settings.num_batches)]
    checks = [check_contract_io(session, torch_model)]
    data = matching_test_set(config)
    accuracy = fp32_accuracy = None
    if checks[0].passed:
        # What a variant is compared on: the test set, as served (zero-padded batches), when
        # the model is of its shape; else the random batches.
        realistic = batches if data is None else list(_test_batches(data))
        worst = Worst()
        for batch in realistic:
            ours = onnx_outputs(session, batch.inputs, batch.lengths, None, [PROBS])[PROBS]
            theirs = onnx_outputs(reference, batch.inputs, batch.lengths, None, [PROBS])[PROBS]
            worst.add(float(np.max(np.abs(ours - theirs))), PROBS)
        checks.append(worst.result("vs_fp32", limits.probs_vs_fp32))
        if data is not None:
            accuracy, fp32_accuracy = accuracy_on(session, data), accuracy_on(reference, data)
            checks.append(_accuracy_check(precision, accuracy, fp32_accuracy, limits))
        measures = [
            ("zeros_past_length", 0.0, batches, lambda b: past_length(runner, b)),
            (
                "padding_invariance",
                limits.invariance,
                realistic,
                lambda b: padding_invariance(runner, b, [PROBS]),
            ),
        ]
        if not config.bidirectional:
            measures.append(
                (
                    "chunked_equals_whole",
                    limits.invariance,
                    realistic,
                    lambda b: chunked(runner, b, settings.pad_value, rng, [PROBS]),
                )
            )
        for name, limit, over, measure in measures:
            worst = Worst()
            for batch in over:
                worst.add(*measure(batch))
            checks.append(worst.result(name, limit))
    report = VerificationReport(
        tuple(checks),
        runs_on,
        limits.probs_vs_fp32,
        0.0,
        settings.max_length,
        against=f"the fp32 graph ({precision} variant)",
    )
    return VariantReport(report, accuracy, fp32_accuracy)


def _test_batches(data: SequenceDataset) -> Iterator[Batch]:
    """``data`` in zero-padded batches of ``accuracy.BATCH``, in arrival order."""
    for start in range(0, len(data), BATCH):
        yield Batch(*pad_sequences(data.sequences[start : start + BATCH]))


def _accuracy_check(
    precision: str, accuracy: Accuracy, fp32: Accuracy, limits: VariantLimits
) -> CheckResult:
    drop = fp32.value - accuracy.value
    return CheckResult(
        "accuracy_vs_fp32",
        drop <= limits.accuracy_drop,
        max_abs_error=max(drop, 0.0),
        limit=limits.accuracy_drop,
        detail=f"{precision} {accuracy.correct}/{accuracy.total}, fp32 {fp32.correct}/{fp32.total}",
    )
