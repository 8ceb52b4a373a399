"""Export an ``LSTMClassifier`` (a model object or a checkpoint file) into a model repository:
build the graph, verify it, stamp the metadata, write it. A model that fails verification is
never written."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from contract.names import CONFIG_FILENAME, validate_model_name, validate_version
from export import repository
from export.graph import OPSET, build_onnx_model
from export.metadata import attach_metadata, build_metadata, state_dict_sha256
from export.verify import VerificationReport, VerifySettings, verify_onnx
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
    metadata: dict[str, str]


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
) -> ExportResult:
    """Export ``model`` as ``<repository_dir>/<name>/<version>/model.onnx`` + ``config.pbtxt``.

    Args:
        model: any ``LSTMClassifier`` (trained here or imported); it is copied to the CPU in
            eval mode, the caller's object is left as it was.
        version: a positive integer; None: one above the highest version already there.
        source_sha256: hash recorded as ``source_checkpoint_sha256``; None: the hash of the
            model's state_dict (``metadata.state_dict_sha256``).
        verify: how to check the graph (provider, tolerance, lengths); default CPU, 1e-5.

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
    metadata = build_metadata(
        reference.config,
        name=name,
        version=version,
        source_sha256=source_sha256 or state_dict_sha256(reference),
        max_length_verified=verify.max_length,
        parity_json=report.parity_json(),
    )
    attach_metadata(proto, metadata)
    config_text = repository.triton_config(name, reference.config, max_batch_size=max_batch_size)
    path = repository.write_model(
        repository_dir, name, version, proto.SerializeToString(), config_text
    )
    return ExportResult(name, version, path, path.parent.parent / CONFIG_FILENAME, report, metadata)


def export_checkpoint(
    checkpoint: str | Path,
    repository_dir: str | Path,
    name: str,
    version: int | None = None,
    *,
    verify: VerifySettings | None = None,
    max_batch_size: int = repository.DEFAULT_MAX_BATCH_SIZE,
    opset: int = OPSET,
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
    )
