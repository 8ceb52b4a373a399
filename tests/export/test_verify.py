"""The verifier: it passes faithful exports and reports, by name, the checks a broken one fails."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from contract.names import LOGITS
from contract.providers import ProviderUnavailableError
from export.verify import VerificationError, VerifySettings, verify_onnx
from models.architectures import LSTMClassifier


def _tampered(proto: onnx.ModelProto, name: str, change: float) -> onnx.ModelProto:
    """A copy of ``proto`` with ``change`` added to one element of initializer ``name``."""
    broken = onnx.ModelProto()
    broken.CopyFrom(proto)
    for index, tensor in enumerate(broken.graph.initializer):
        if tensor.name == name:
            array = numpy_helper.to_array(tensor).copy()
            array.flat[0] += change
            broken.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, name))
            return broken
    raise KeyError(name)


def _without_lengths(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose LSTM nodes ignore ``lengths`` (what a plain torch.onnx.export gives)."""
    broken = onnx.ModelProto()
    broken.CopyFrom(proto)
    for node in broken.graph.node:
        if node.op_type == "LSTM":
            node.input[4] = ""
    return broken


def test_a_faithful_export_passes_every_check(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto, fast_verify: VerifySettings
) -> None:
    report = verify_onnx(onnx_model, torch_model, fast_verify)
    assert report.passed, report.format()
    names = [check.name for check in report.checks]
    expected = [
        "contract_io",
        "ort_vs_torch",
        "initial_states_vs_torch",
        "zeros_past_length",
        "padding_invariance",
    ]
    if not torch_model.config.bidirectional:
        expected.append("chunked_equals_whole")
    assert names == expected
    assert report.check("zeros_past_length").max_abs_error == 0.0
    # A tiny model barely rounds: the limit stays at the tolerance, and errors far below it.
    ort_vs_torch = report.check("ort_vs_torch")
    assert ort_vs_torch.limit is not None and ort_vs_torch.limit < 2e-5
    assert ort_vs_torch.max_abs_error is not None and ort_vs_torch.max_abs_error < 1e-6
    assert report.provider == "CPUExecutionProvider"


@pytest.mark.parametrize("architecture", ["stacked"])
def test_parity_record_holds_the_measured_errors(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto, fast_verify: VerifySettings
) -> None:
    report = verify_onnx(onnx_model, torch_model, fast_verify)
    parity = json.loads(report.parity_json())
    assert parity["provider"] == "CPUExecutionProvider"
    assert parity["tolerance"] == 1e-5
    assert parity["max_length"] == fast_verify.max_length
    assert parity["passed"] is True
    assert parity["max_abs_error"]["ort_vs_torch"] == report.check("ort_vs_torch").max_abs_error
    assert set(parity["max_abs_error"]) == {c.name for c in report.checks} - {"contract_io"}
    assert set(parity["torch_float32_error"]) == {"ort_vs_torch", "initial_states_vs_torch"}


def test_a_tampered_weight_fails_the_comparison_with_torch(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto, fast_verify: VerifySettings
) -> None:
    # Per direction, layer 1's backward chain: it is fed by the backward chain alone.
    broken = _tampered(onnx_model, "W_1_bw" if torch_model.config.per_direction else "W_1", 0.05)
    report = verify_onnx(broken, torch_model, fast_verify)
    assert not report.passed
    assert not report.check("ort_vs_torch").passed
    assert not report.check("initial_states_vs_torch").passed
    # A wrong weight is still applied the same way to every sequence.
    assert report.check("padding_invariance").passed
    assert "FAIL ort_vs_torch" in report.format()
    with pytest.raises(VerificationError, match="ort_vs_torch") as raised:
        report.raise_if_failed()
    assert raised.value.report is report


@pytest.mark.parametrize("architecture", ["stacked"])
def test_a_tampered_head_bias_fails(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto, fast_verify: VerifySettings
) -> None:
    report = verify_onnx(_tampered(onnx_model, "head_bias", 1e-3), torch_model, fast_verify)
    assert not report.check("ort_vs_torch").passed


def test_lstm_nodes_that_ignore_lengths_fail_padding_checks(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto, fast_verify: VerifySettings
) -> None:
    report = verify_onnx(_without_lengths(onnx_model), torch_model, fast_verify)
    failed = {check.name for check in report.checks if not check.passed}
    assert {"ort_vs_torch", "zeros_past_length", "padding_invariance"} <= failed


@pytest.mark.parametrize("architecture", ["stacked"])
def test_wrong_io_names_fail_the_contract_check_before_anything_runs(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto, fast_verify: VerifySettings
) -> None:
    broken = onnx.ModelProto()
    broken.CopyFrom(onnx_model)
    broken.graph.output[0].name = "scores"
    for node in broken.graph.node:
        for index, name in enumerate(node.output):
            if name == LOGITS:
                node.output[index] = "scores"
        for index, name in enumerate(node.input):
            if name == LOGITS:
                node.input[index] = "scores"
    report = verify_onnx(broken, torch_model, fast_verify)
    assert [c.name for c in report.checks] == ["contract_io"]
    assert not report.passed and "scores" in report.checks[0].detail


@pytest.mark.parametrize("architecture", ["stacked"])
def test_noise_factor_zero_holds_torch_checks_to_the_tolerance(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto
) -> None:
    settings = VerifySettings(max_length=24, num_batches=1, tolerance=3e-6, noise_factor=0)
    report = verify_onnx(onnx_model, torch_model, settings)
    assert report.check("ort_vs_torch").limit == 3e-6


def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="provider"):
        VerifySettings(provider="tpu")
    with pytest.raises(ValueError, match="tolerance"):
        VerifySettings(tolerance=-1.0)
    assert VerifySettings(provider="cuda").resolved_tolerance == 1e-4
    assert VerifySettings().resolved_tolerance == 1e-5


@pytest.mark.parametrize("architecture", ["stacked"])
def test_cuda_either_runs_on_cuda_or_says_it_cannot(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto, fast_verify: VerifySettings
) -> None:
    # Never a silent fallback to the CPU: that would record CPU numbers as CUDA parity.
    try:
        report = verify_onnx(onnx_model, torch_model, replace(fast_verify, provider="cuda"))
    except ProviderUnavailableError as error:
        assert "CUDAExecutionProvider" in str(error)
    else:
        assert report.provider == "CUDAExecutionProvider"


@pytest.mark.parametrize("architecture", ["stacked"])
def test_report_names_the_worst_output(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto, fast_verify: VerifySettings
) -> None:
    report = verify_onnx(_tampered(onnx_model, "head_bias", 1e-2), torch_model, fast_verify)
    assert report.check("ort_vs_torch").detail == "worst: logits"
    error = report.check("ort_vs_torch").max_abs_error
    assert error is not None
    np.testing.assert_allclose(error, 1e-2, rtol=1e-3)
