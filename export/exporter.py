"""Export an ``LSTMClassifier`` (a model object or a checkpoint file) into a model repository:
build the graph, verify it, stamp the metadata, write it. A model that fails verification is
never written."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

from contract.names import CONFIG_FILENAME, validate_model_name, validate_version
from contract.precision import FP32
from contract.sessions import create_session
from export import repository
from export.accuracy import DATASET, accuracy_on, matching_test_set
from export.graph import OPSET, build_onnx_model
from export.metadata import attach_metadata, build_metadata, state_dict_sha256
from export.precision import make_variant
from export.verify import VerificationError, VerificationReport, VerifySettings, verify_onnx
from export.verify_variant import verify_variant
from models.architectures import LSTMClassifier
from models.checkpoint import file_sha256, load_checkpoint


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and measured."""

    name: str
    version: int
    model_path: Path
    config_path: Path
    report: VerificationReport
    """The fp32 graph against torch."""
    metadata: dict[str, str]
    variant_report: VerificationReport | None = None
    """The int8 or fp16 variant against the fp32 graph; None for an fp32 export."""


def export_model(
    model: LSTMClassifier,
    repository_dir: str | Path,
    name: str,
    version: int | None = None,
    *,
    source_sha256: str | None = None,
    verify: VerifySettings | None = None,
    max_batch_size: int = repository.DEFAULT_MAX_BATCH_SIZE,
    opset: int = OPSET,
    precision: str = FP32,
) -> ExportResult:
    """Export ``model`` as ``<repository_dir>/<name>/<version>/model.onnx`` + ``config.pbtxt``.

    Args:
        model: any ``LSTMClassifier`` (trained here or imported); it is copied to the CPU in
            eval mode, the caller's object is left as it was.
        version: a positive integer; None: one above the highest version already there.
        source_sha256: hash recorded as ``source_checkpoint_sha256``; None: the hash of the
            model's state_dict (``metadata.state_dict_sha256``).
        verify: how to check the graph (provider, tolerance, lengths); default CPU, 1e-5.
        precision: ``fp32``, or the ``int8``/``fp16`` variant (``export.precision``) of the
            verified fp32 graph, itself checked against it (``export.verify_variant``).

    Raises:
        VerificationError: a check failed (its ``report`` says which); nothing is written.
        ProviderUnavailableError: the verification provider cannot run here.
        ValueError: a bad name or version.
    """
    validate_model_name(name)
    version = repository.next_version(repository_dir, name) if version is None else version
    validate_version(version)
    verify = verify or VerifySettings()
    reference = copy.deepcopy(model).cpu().eval()
    proto = build_onnx_model(reference, opset=opset)
    report = verify_onnx(proto, reference, verify)
    report.raise_if_failed()
    parity, variant_report = report.parity(), None
    accuracy: dict[str, object] = {}
    if precision == FP32:
        data = matching_test_set(reference.config)
        if data is not None:
            session, _ = create_session(proto.SerializeToString(), "cpu", 0)
            measured = accuracy_on(session, data)
            accuracy = {"dataset": DATASET, "sequences": measured.total, FP32: measured.value}
    else:
        variant = make_variant(proto, precision)
        checked = verify_variant(variant, proto, reference, precision, verify)
        if not checked.report.passed:
            raise VerificationError(checked.report)
        variant_report = checked.report
        parity = {**checked.report.parity(), "fp32_vs_torch": parity}
        if checked.accuracy is not None and checked.fp32_accuracy is not None:
            accuracy = {
                "dataset": DATASET,
                "sequences": checked.accuracy.total,
                FP32: checked.fp32_accuracy.value,
                precision: checked.accuracy.value,
            }
        proto = variant
    metadata = build_metadata(
        reference.config,
        name=name,
        version=version,
        source_sha256=source_sha256 or state_dict_sha256(reference),
        max_length_verified=verify.max_length,
        parity_json=json.dumps(parity, sort_keys=True),
        precision=precision,
        accuracy_json=json.dumps(accuracy, sort_keys=True),
    )
    attach_metadata(proto, metadata)
    config_text = repository.triton_config(name, reference.config, max_batch_size=max_batch_size)
    path = repository.write_model(
        repository_dir, name, version, proto.SerializeToString(), config_text
    )
    return ExportResult(
        name, version, path, path.parent.parent / CONFIG_FILENAME, report, metadata, variant_report
    )


def export_checkpoint(
    checkpoint: str | Path,
    repository_dir: str | Path,
    name: str,
    version: int | None = None,
    *,
    verify: VerifySettings | None = None,
    max_batch_size: int = repository.DEFAULT_MAX_BATCH_SIZE,
    opset: int = OPSET,
    precision: str = FP32,
) -> ExportResult:
    """``export_model`` of the model in a ``models.checkpoint`` file, recording the file's
    SHA-256 as ``source_checkpoint_sha256``."""
    digest = file_sha256(checkpoint)
    model, _record = load_checkpoint(checkpoint)
    return export_model(
        model,
        repository_dir,
        name,
        version,
        source_sha256=digest,
        verify=verify,
        max_batch_size=max_batch_size,
        opset=opset,
        precision=precision,
    )
