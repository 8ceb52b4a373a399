"""The export commands' command line: ``python -m export`` itself, and what every command shares.

Three commands write into a model repository, each in its own module and each built on this
one (none imports another command):

* ``python -m export CHECKPOINT --name NAME``: one ``models.checkpoint`` file (``main`` here);
* ``python -m export.defaults``: trains (when missing) and exports the built-in models;
* ``python -m export.from_tf CKPT --name NAME``: a TensorFlow 1.x checkpoint
  (``tf1_checkpoint``).

Shared: the repository and verification flags (``add_repository_arguments``,
``add_verify_arguments`` and ``verify_settings``), the up-to-date check (``up_to_date``) and the
report with its exit status (``run_export``). Torch, onnx and onnxruntime are imported only once
the arguments are known good, so ``--help`` stays fast.

``python -m export`` re-run on the same checkpoint writes nothing: when the version it would
compare with (the latest, or ``--version``'s) was exported from a file with the same SHA-256, it
says so and stops; ``--force`` exports anyway.

Exit status of every command: 0 exported and verified, or already up to date; 1 verification
failed (nothing written); 2 bad arguments, unreadable checkpoint or unavailable provider.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from export.exporter import ExportResult
    from export.verify import VerifySettings

DEFAULT_REPOSITORY = Path("model_repository")
DEFAULT_MAX_BATCH_SIZE = 256


# -- shared by every export command ------------------------------------------------------------
# The add_argument blocks here and in the parsers of models.train, loadtest and bench are alike in
# shape only: each defines one flag with its own meaning, and what the export commands share is
# written once, here.
def add_repository_arguments(parser: argparse.ArgumentParser, *, name_required: bool) -> None:
    """Where an export goes: ``--name``, ``--version``, ``--repository``, ``--max-batch-size``.

    ``name_required=False`` for a command that can stop before exporting (it then checks the
    name itself)."""
    parser.add_argument(
        "--name",
        required=name_required,
        help="model name in the repository" + ("" if name_required else " (required to export)"),
    )
    parser.add_argument(
        "--version",
        type=int,
        help="positive integer version (default: one above the highest already there)",
    )
    add_repository_argument(parser)
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help="max_batch_size written to config.pbtxt (default: %(default)s)",
    )


def add_repository_argument(parser: argparse.ArgumentParser) -> None:
    """``--repository``: the model repository folder."""
    parser.add_argument(
        "--repository",
        type=Path,
        default=DEFAULT_REPOSITORY,
        help="model repository folder (default: ./%(default)s)",
    )


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """The verification flags; ``verify_settings`` reads them back."""
    group = parser.add_argument_group("verification")
    group.add_argument(
        "--provider",
        choices=("cpu", "cuda"),
        default="cpu",
        help="ONNX Runtime execution provider that runs the checks (default: %(default)s)",
    )
    group.add_argument(
        "--tolerance",
        type=float,
        help="max abs error allowed vs torch and between runs (default: 1e-5 on cpu, "
        "1e-4 on cuda, which runs FP32 with TF32 off, as the service does)",
    )
    group.add_argument(
        "--noise-factor",
        type=float,
        default=16.0,
        help="the checks against torch also allow this many times torch's own float32 error "
        "(torch float32 vs float64 on the same batches), which trained LSTMs grow along long "
        "sequences; 0: the tolerance alone (default: %(default)s)",
    )
    group.add_argument(
        "--max-length",
        type=int,
        default=200,
        metavar="T",
        help="longest sequence verified; recorded as max_length_verified (default: %(default)s)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the random test batches")


def verify_settings(args: argparse.Namespace) -> VerifySettings:
    """``VerifySettings`` from the flags of ``add_verify_arguments``."""
    from export.verify import VerifySettings

    return VerifySettings(
        provider=args.provider,
        tolerance=args.tolerance,
        noise_factor=args.noise_factor,
        max_length=args.max_length,
        seed=args.seed,
    )


def up_to_date(checkpoint: Path, repository: Path, name: str, version: int | None) -> str | None:
    """Why exporting ``checkpoint`` would only repeat an export that is there (None: it would
    not). Compares the file's SHA-256 with the source hash recorded in ``version`` of ``name``
    or, with no version asked for, in the latest one."""
    from export.repository import exported_sha256, model_versions
    from models.checkpoint import file_sha256

    try:
        if version is None:
            versions = model_versions(repository, name)
            if not versions:
                return None
            version = versions[-1]
        recorded = exported_sha256(repository, name, version)
        if recorded is None:
            return None
        digest = file_sha256(checkpoint)
    except (ValueError, OSError):  # a bad name or an unreadable file: the export reports it
        return None
    if recorded != digest:
        return None
    return (
        f"up to date: {repository / name / str(version)} was exported from a checkpoint with "
        f"the same sha256 as {checkpoint} ({digest[:16]}…); nothing written "
        "(--force exports it again)"
    )


def run_export(export: Callable[[], ExportResult], what: str) -> int:
    """Run an export and print its report; the exit status of the export commands (0, 1, 2)."""
    from contract.providers import ProviderUnavailableError
    from export.verify import VerificationError

    try:
        result = export()
    except VerificationError as error:
        print(error.report.format())
        print(f"error: {what} failed verification; nothing was written")
        return 1
    except (ValueError, OSError, ProviderUnavailableError) as error:
        print(f"error: {error}")
        return 2
    print(result.report.format())
    print(describe(result))
    return 0


def describe(result: ExportResult) -> str:
    """What an export wrote, for people."""
    meta = result.metadata
    return (
        f"wrote {result.model_path} and {result.config_path}\n"
        f"  {meta['architecture']} {meta['layer_sizes']}, {meta['input_size']} features, "
        f"{meta['num_classes']} classes, source sha256 {meta['source_checkpoint_sha256'][:16]}…"
    )


# -- python -m export --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export an LSTM classifier checkpoint (models.checkpoint) to ONNX with "
        "sequence_lens, verify it with ONNX Runtime against torch, and write it into a "
        "Triton-layout model repository as <repository>/<name>/<version>/model.onnx plus "
        "<repository>/<name>/config.pbtxt. Nothing is written when a check fails.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint file (.pt) to export")
    add_repository_arguments(parser, name_required=True)
    parser.add_argument(
        "--force",
        action="store_true",
        help="export even when the latest version (or --version) was exported from a "
        "checkpoint with the same SHA-256; without it such a run writes nothing",
    )
    add_verify_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m export``: export and verify one checkpoint; the exit status."""
    args = build_parser().parse_args(argv)
    # Heavy imports (torch, onnx, onnxruntime) only once the arguments are known good.
    from export.exporter import export_checkpoint

    if not args.force:
        same = up_to_date(args.checkpoint, args.repository, args.name, args.version)
        if same is not None:
            print(same)
            return 0
    print(
        f"exporting {args.checkpoint} as {args.name!r} "
        f"(version {args.version or 'next'}) into {args.repository}"
    )
    return run_export(
        lambda: export_checkpoint(
            args.checkpoint,
            args.repository,
            args.name,
            args.version,
            verify=verify_settings(args),
            max_batch_size=args.max_batch_size,
        ),
        what=str(args.checkpoint),
    )
