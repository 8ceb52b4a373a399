"""The int8 and fp16 variants (``export.precision``) and their checks against the fp32 graph
(``export.verify_variant``), on the tiny random-weight models of every architecture and on a model
of JapaneseVowels' shape, whose test accuracy is measured.

Shapes: ``B`` batch, ``T`` time, ``F`` features, ``H`` hidden width, ``C`` classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from contract.names import INPUTS, LENGTHS, METADATA_KEYS, PROBS
from contract.precision import FP16, INT8
from contract.sessions import create_session
from export.accuracy import accuracy_on, matching_test_set
from export.cli import main as export_main
from export.exporter import export_model
from export.metadata import read_metadata
from export.precision import lstm_to_fp16, make_variant, quantize_int8
from export.verify import VerificationError, VerifySettings
from export.verify_variant import verify_variant
from models.architectures import LSTMClassifier, LSTMClassifierConfig
from models.checkpoint import save_checkpoint


def test_int8_replaces_each_lstm_and_keeps_the_contracts_boundary(
    onnx_model: onnx.ModelProto,
) -> None:
    variant = quantize_int8(onnx_model)
    ops = {node.op_type for node in variant.graph.node}
    assert "LSTM" not in ops and "DynamicQuantizeLSTM" in ops
    assert variant.ir_version == onnx_model.ir_version  # what ONNX Runtime 1.31 reads
    boundary = [(v.name, v.type.tensor_type.elem_type) for v in variant.graph.input]
    assert boundary == [(v.name, v.type.tensor_type.elem_type) for v in onnx_model.graph.input]
    assert [o.name for o in variant.graph.output] == [o.name for o in onnx_model.graph.output]


def test_fp16_runs_the_lstms_in_float16_and_the_rest_in_float32(
    onnx_model: onnx.ModelProto,
) -> None:
    variant = lstm_to_fp16(onnx_model)
    initializers = {t.name: t for t in variant.graph.initializer}
    lstms = [node for node in variant.graph.node if node.op_type == "LSTM"]
    assert lstms
    for node in lstms:
        for weight in node.input[1:4]:
            assert initializers[weight].data_type == TensorProto.FLOAT16
    assert initializers["head_weight"].data_type == TensorProto.FLOAT  # the head stays fp32
    for value in [*variant.graph.input, *variant.graph.output]:
        assert value.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.INT32)
    for name in ("initial_h_0", "initial_c_0"):  # overridable: float32 like their graph input
        assert numpy_helper.to_array(initializers[name]).dtype == np.float32


@pytest.mark.parametrize("precision", [INT8, FP16])
def test_each_variant_passes_its_checks(
    torch_model: LSTMClassifier,
    onnx_model: onnx.ModelProto,
    fast_verify: VerifySettings,
    precision: str,
) -> None:
    checked = verify_variant(
        make_variant(onnx_model, precision), onnx_model, torch_model, precision, fast_verify
    )
    report = checked.report
    assert report.passed, report.format()
    names = [check.name for check in report.checks]
    expected = ["contract_io", "vs_fp32", "zeros_past_length", "padding_invariance"]
    if not torch_model.config.bidirectional:
        expected.append("chunked_equals_whole")
    assert names == expected
    assert report.check("zeros_past_length").max_abs_error == 0.0
    assert checked.accuracy is None  # F = 5: not JapaneseVowels' shape
    assert report.against == f"the fp32 graph ({precision} variant)"


@pytest.mark.parametrize("architecture", ["stacked"])
def test_a_variant_that_moves_the_answers_fails(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto, fast_verify: VerifySettings
) -> None:
    broken = lstm_to_fp16(onnx_model)
    for tensor in broken.graph.initializer:
        if tensor.name.startswith("R_"):  # the recurrent weights of the wrong sign
            array = numpy_helper.to_array(tensor)
            tensor.CopyFrom(numpy_helper.from_array(-array, tensor.name))
    report = verify_variant(broken, onnx_model, torch_model, FP16, fast_verify).report
    assert not report.passed and not report.check("vs_fp32").passed


def vowels_shaped(seed: int = 0) -> LSTMClassifier:
    """A random model of JapaneseVowels' shape (12 features, 9 classes): its test accuracy is
    measured (near chance: it is untrained)."""
    torch.manual_seed(seed)
    labels = tuple(str(k) for k in range(1, 10))
    return LSTMClassifier(LSTMClassifierConfig(12, (16,), 9, labels=labels)).eval()


def test_the_variants_accuracy_is_measured_next_to_fp32s(tmp_path: Path) -> None:
    settings = VerifySettings(max_length=24, batch_size=6, num_batches=2)
    result = export_model(vowels_shaped(), tmp_path, "m_int8", verify=settings, precision=INT8)
    metadata = read_metadata(result.model_path)
    assert tuple(metadata) == METADATA_KEYS and metadata["precision"] == INT8
    accuracy = json.loads(metadata["accuracy"])
    assert accuracy["dataset"] == "JapaneseVowels test" and accuracy["sequences"] == 370
    assert result.variant_report is not None
    check = result.variant_report.check("accuracy_vs_fp32")
    assert check.passed and check.max_abs_error == max(accuracy["fp32"] - accuracy["int8"], 0.0)
    parity = json.loads(metadata["parity"])
    assert parity["against"] == "the fp32 graph (int8 variant)"
    assert parity["fp32_vs_torch"] == result.report.parity()
    # The file is the variant, and answers as the report says.
    session, _ = create_session(result.model_path, "cpu", 1)
    x = np.random.default_rng(0).standard_normal((2, 7, 12)).astype(np.float32)
    (probs,) = session.run([PROBS], {INPUTS: x, LENGTHS: np.array([7, 4], np.int32)})
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_an_fp32_export_records_its_own_accuracy(tmp_path: Path) -> None:
    settings = VerifySettings(max_length=24, batch_size=6, num_batches=2)
    result = export_model(vowels_shaped(), tmp_path, "m", verify=settings)
    accuracy = json.loads(result.metadata["accuracy"])
    assert set(accuracy) == {"dataset", "sequences", "fp32"}
    # The figure is the written file's on the test set, not the torch model's.
    data = matching_test_set(vowels_shaped().config)
    assert data is not None
    session, _ = create_session(result.model_path, "cpu", 1)
    assert accuracy["fp32"] == accuracy_on(session, data).value
    assert result.metadata["precision"] == "fp32" and result.variant_report is None


def test_a_failed_variant_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_model
) -> None:  # type: ignore[no-untyped-def]
    from export import exporter
    from export import verify_variant as checks

    monkeypatch.setitem(
        checks.VARIANT_LIMITS, INT8, checks.VariantLimits(probs_vs_fp32=0.0, invariance=0.0)
    )
    settings = VerifySettings(max_length=24, batch_size=6, num_batches=2)
    with pytest.raises(VerificationError, match="vs_fp32"):
        exporter.export_model(
            make_model(False, (8,)), tmp_path, "m", verify=settings, precision=INT8
        )
    assert not (tmp_path / "m").exists()


def test_the_command_line_writes_a_variant(tmp_path: Path, make_model, capsys) -> None:  # type: ignore[no-untyped-def]
    checkpoint = tmp_path / "m.pt"
    save_checkpoint(checkpoint, make_model(False, (8,)), {})
    repo = tmp_path / "repo"
    argv = [str(checkpoint), "--name", "m_int8", "--repository", str(repo), "--precision", "int8"]
    assert export_main([*argv, "--max-length", "24"]) == 0
    out = capsys.readouterr().out
    assert (
        "verification against the fp32 graph (int8 variant)" in out and "int8 stacked_lstm" in out
    )
    assert read_metadata(repo / "m_int8" / "1" / "model.onnx")["precision"] == "int8"
