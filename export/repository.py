"""The model repository: ``<repo>/<name>/<version>/model.onnx`` and ``<repo>/<name>/config.pbtxt``
(Triton's layout and configuration format), written so that a running server never reads a
half-written file or a version directory without its model.

Everything is first written under a name that no server loads (a dot-prefixed temporary: the
contract's names start with a letter or digit and versions are integers), then renamed into
place; a rename within one file system is atomic.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from contract.names import (
    CONFIG_FILENAME,
    INPUTS,
    LENGTHS,
    LOGITS,
    MODEL_FILENAME,
    OUTPUTS,
    PROBS,
    validate_model_name,
    validate_version,
)
from models.architectures import LSTMClassifierConfig

DEFAULT_MAX_BATCH_SIZE = 256
DEFAULT_MAX_QUEUE_DELAY_US = 2000


def triton_config(
    name: str,
    config: LSTMClassifierConfig,
    *,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
) -> str:
    """Triton's ``config.pbtxt`` (text protobuf of ``inference.ModelConfig``) for a model.

    With ``max_batch_size > 0`` Triton's ``dims`` leave out the batch dimension: ``inputs``
    ``(B, T, F)`` is ``[-1, F]``, and the per-sequence scalar ``lengths`` ``(B,)`` is ``[1]``
    reshaped to ``[]``. Only batch-first tensors can be listed, so the states (``(dirs, B, H_n)``)
    are left out: Triton feeds the zero initial states and does not return the final ones.
    """
    validate_model_name(name)
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")

    def tensor(name: str, data_type: str, dims: list[int], scalar: bool = False) -> str:
        reshape = "\n    reshape: { shape: [ ] }" if scalar else ""
        return (
            f'  {{\n    name: "{name}"\n    data_type: {data_type}\n'
            f"    dims: [ {', '.join(str(d) for d in dims)} ]{reshape}\n  }}"
        )

    inputs = [
        tensor(INPUTS, "TYPE_FP32", [-1, config.input_size]),
        tensor(LENGTHS, "TYPE_INT32", [1], scalar=True),
    ]
    outputs = [
        tensor(LOGITS, "TYPE_FP32", [config.num_classes]),
        tensor(PROBS, "TYPE_FP32", [config.num_classes]),
        tensor(OUTPUTS, "TYPE_FP32", [-1, config.output_size]),
    ]
    return (
        "# Written by export/ (lstm-serving/onnx-v1). Triton model configuration.\n"
        "# The states initial_*/final_* are (dirs, B, H): not batch-first, so not listed.\n"
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
        "input [\n" + ",\n".join(inputs) + "\n]\n"
        "output [\n" + ",\n".join(outputs) + "\n]\n"
        "dynamic_batching {\n"
        f"  max_queue_delay_microseconds: {max_queue_delay_us}\n"
        "}\n"
    )


def model_versions(repository: str | Path, name: str) -> list[int]:
    """The versions of ``name`` that hold a ``model.onnx``, ascending."""
    model_dir = Path(repository) / validate_model_name(name)
    if not model_dir.is_dir():
        return []
    return sorted(
        int(entry.name)
        for entry in model_dir.iterdir()
        if entry.name.isdigit() and int(entry.name) > 0 and (entry / MODEL_FILENAME).is_file()
    )


def next_version(repository: str | Path, name: str) -> int:
    """One above the highest version of ``name`` (1 for a new model)."""
    versions = model_versions(repository, name)
    return versions[-1] + 1 if versions else 1


def exported_sha256(repository: str | Path, name: str, version: int) -> str | None:
    """The ``source_checkpoint_sha256`` recorded in ``name``/``version`` (None: no complete
    export there: no ``model.onnx``, no ``config.pbtxt``, or a file that does not parse)."""
    from export.metadata import read_metadata  # onnx: only when a model is there to read

    path = model_path(repository, name, version)
    if not path.is_file() or not (path.parent.parent / CONFIG_FILENAME).is_file():
        return None
    try:
        return read_metadata(path).get("source_checkpoint_sha256")
    except Exception:  # an unreadable file is exported again, not a reason to stop
        return None


def model_path(repository: str | Path, name: str, version: int) -> Path:
    """Where version ``version`` of ``name`` lives: ``<repo>/<name>/<version>/model.onnx``."""
    validate_model_name(name)
    validate_version(version)
    return Path(repository) / name / str(version) / MODEL_FILENAME


def write_model(
    repository: str | Path, name: str, version: int, model_bytes: bytes, config_text: str
) -> Path:
    """Put ``model.onnx`` of ``name``/``version`` and the model's ``config.pbtxt`` in place.

    A new model directory appears whole (config and version together); a new version appears
    with its model inside; an existing ``model.onnx`` or ``config.pbtxt`` is replaced atomically.
    Returns the path of ``model.onnx``.
    """
    target = model_path(repository, name, version)
    version_dir, model_dir, repo = target.parent, target.parent.parent, target.parent.parent.parent
    repo.mkdir(parents=True, exist_ok=True)
    if not model_dir.exists():
        staging = _staging_dir(repo, name)
        try:
            (staging / str(version)).mkdir()
            _write_file(staging / str(version) / MODEL_FILENAME, model_bytes)
            _write_file(staging / CONFIG_FILENAME, config_text.encode())
            if _rename_if_absent(staging, model_dir):
                return target
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        # Another writer created the model directory meanwhile: go on as for an existing one.
    placed = False
    if not version_dir.exists():
        staging = _staging_dir(model_dir, str(version))
        try:
            _write_file(staging / MODEL_FILENAME, model_bytes)
            placed = _rename_if_absent(staging, version_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not placed:
        atomic_write(target, model_bytes)
    atomic_write(model_dir / CONFIG_FILENAME, config_text.encode())
    return target


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` in one step: a reader sees the old file or the new one."""
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile makes 0600; servers may run as others
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _staging_dir(parent: Path, name: str) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    staging.chmod(0o755)  # mkdtemp makes 0700; a server may run as another user
    return staging


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _rename_if_absent(source: Path, target: Path) -> bool:
    """Rename directory ``source`` to ``target`` unless ``target`` exists (then False)."""
    if target.exists():
        return False
    try:
        os.rename(source, target)
    except OSError:
        if target.exists():  # lost a race: someone else's rename won
            return False
        raise
    return True
