"""The export commands' command line: ``python -m export`` itself, and what every command shares.

Three commands write into a model repository, each in its own module and each built on this
one (none imports another command):

* ``python -m export CHECKPOINT --name NAME``: one ``models.checkpoint`` file (``main`` here),
  or ``python -m export --torch-module MODULE:NAME --state-dict FILE --name NAME``: the user's
  own ``nn.Module`` of ``nn.LSTM`` layers and a linear head, with its state_dict
  (``export.from_torch``);
* ``python -m export.defaults``: trains (when missing) and exports the built-in models;
* ``python -m export.from_tf CKPT --name NAME``: a TensorFlow 1.x checkpoint
  (``tf1_checkpoint``).

Shared: the repository and verification flags (``add_repository_arguments``,
``add_verify_arguments`` and ``verify_settings``), the up-to-date check (``up_to_date``) and the
report with its exit status (``run_export``). Torch, onnx and onnxruntime are imported only once
the arguments are known good, so ``--help`` stays fast.

``python -m export`` re-run on the same checkpoint (or state_dict file) writes nothing: when the
version it would compare with (the latest, or ``--version``'s) was exported from a file with the
same SHA-256, it says so and stops; ``--force`` exports anyway.

Exit status of every command: 0 exported and verified, or already up to date; 1 verification
failed (nothing written); 2 bad arguments, unreadable checkpoint or unavailable provider (and
for ``--torch-module``: a module that cannot be imported, mapped, loaded, or whose forward is not
the exported graph).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.precision import PRECISIONS  # stdlib only: --help stays fast

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
    add_precision_argument(parser)


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision``: the graph written, fp32 or a variant of it made and checked here."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=PRECISIONS[0],
        help="fp32 (default); int8: ONNX Runtime's dynamic quantization, for the CPU; fp16: the "
        "LSTMs in float16, for the GPU. A variant is made from the verified fp32 graph and "
        "checked against it (probabilities, test accuracy, padding invariance); name it apart, "
        "e.g. --name bilstm_int8",
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
    if result.variant_report is not None:
        print(result.variant_report.format())
    print(describe(result))
    return 0


def describe(result: ExportResult) -> str:
    """What an export wrote, for people."""
    meta = result.metadata
    accuracy = json.loads(meta["accuracy"])
    measured = ", ".join(
        f"{precision} {accuracy[precision]:.2%}"
        for precision in PRECISIONS
        if precision in accuracy
    )
    return (
        f"wrote {result.model_path} and {result.config_path}\n"
        f"  {meta['precision']} {meta['architecture']} {meta['layer_sizes']}, "
        f"{meta['input_size']} features, {meta['num_classes']} classes, source sha256 "
        f"{meta['source_checkpoint_sha256'][:16]}…"
        + (f"\n  test accuracy on {accuracy['dataset']}: {measured}" if measured else "")
    )


# -- python -m export --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export an LSTM classifier checkpoint (models.checkpoint), or your own torch "
        "module of nn.LSTM layers and a linear head with its state_dict (--torch-module), to "
        "ONNX with sequence_lens, verify it with ONNX Runtime against torch, and write it into a "
        "Triton-layout model repository as <repository>/<name>/<version>/model.onnx plus "
        "<repository>/<name>/config.pbtxt. Nothing is written when a check fails.",
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        nargs="?",
        help="checkpoint file (.pt) to export (or --torch-module and --state-dict instead)",
    )
    add_repository_arguments(parser, name_required=True)
    parser.add_argument(
        "--force",
        action="store_true",
        help="export even when the latest version (or --version) was exported from a "
        "checkpoint (or state_dict file) with the same SHA-256; without it such a run writes "
        "nothing (with --torch-module only the state_dict is compared: after changing the "
        "labels, --torch-kwargs or the module's code, use --force)",
    )
    add_torch_module_arguments(parser)
    add_verify_arguments(parser)
    return parser


def add_torch_module_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``--torch-module`` (``export.from_torch``); ``source_and_labels`` checks
    them."""
    group = parser.add_argument_group(
        "your own torch module (instead of a checkpoint)",
        "nn.LSTM layers (any num_layers, bidirectional, batch_first; not proj_size) then one "
        "nn.Linear head reading the top layer's final hidden state (concat(forward, backward) "
        "when bidirectional); identity and dropout are skipped, anything else is refused by "
        "name. Its own forward is run on random sequences and must give the exported graph's "
        "logits or probs.",
    )
    group.add_argument(
        "--torch-module",
        metavar="MODULE:NAME",
        help="import path of an nn.Module class or of a function that returns one (e.g. "
        "mypkg.models:build); it is imported and called, which runs its code. MODULE is found "
        "as `python -m` finds it: from the current directory, then PYTHONPATH and the installed "
        "packages",
    )
    group.add_argument(
        "--state-dict",
        type=Path,
        metavar="FILE",
        help="its weights, as torch.save(model.state_dict(), FILE) writes them (read with "
        "weights_only=True; keys and shapes must be exactly the module's)",
    )
    group.add_argument(
        "--torch-kwargs",
        type=_json_object,
        metavar="JSON",
        help="keyword arguments of the class or function, a JSON object (e.g. '{\"hidden\": 64}')",
    )
    labels = group.add_mutually_exclusive_group()
    labels.add_argument(
        "--labels",
        type=lambda text: tuple(label.strip() for label in text.split(",")),
        metavar="A,B,C",
        help="class names in the head's order, comma-separated (default: 0 ... C-1)",
    )
    labels.add_argument("--labels-file", type=Path, metavar="FILE", help="class names, one a line")


def source_and_labels(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[Path, tuple[str, ...]]:
    """The file an export of ``args`` comes from (the checkpoint or the state_dict) and, for
    ``--torch-module``, the labels (empty: the default); exits 2 through ``parser.error`` for
    flags that do not go together."""
    torch_flags = [
        flag
        for flag, value in (
            ("--state-dict", args.state_dict),
            ("--torch-kwargs", args.torch_kwargs),
            ("--labels", args.labels),
            ("--labels-file", args.labels_file),
        )
        if value is not None
    ]
    if args.torch_module is None:
        if args.checkpoint is None:
            parser.error("give a checkpoint file, or --torch-module and --state-dict")
        if torch_flags:
            parser.error(f"{', '.join(torch_flags)}: only with --torch-module")
        return args.checkpoint, ()
    if args.checkpoint is not None:
        parser.error("give a checkpoint file or --torch-module, not both")
    if args.state_dict is None:
        parser.error("--torch-module needs --state-dict FILE (its weights)")
    if args.labels_file is None:
        return args.state_dict, args.labels or ()
    try:
        lines = args.labels_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        parser.error(f"--labels-file: {error}")
    return args.state_dict, tuple(line.strip() for line in lines if line.strip())


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m export``: export and verify one checkpoint or torch module; the exit
    status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    source, labels = source_and_labels(parser, args)
    if not args.force:
        same = up_to_date(source, args.repository, args.name, args.version)
        if same is not None:
            print(same)
            return 0
    if args.torch_module is not None:
        return export_torch_module(args, labels)
    # Heavy imports (torch, onnx, onnxruntime) only once the arguments are known good.
    from export.exporter import export_checkpoint

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
            precision=args.precision,
        ),
        what=str(args.checkpoint),
    )


def export_torch_module(args: argparse.Namespace, labels: tuple[str, ...]) -> int:
    """``--torch-module``: import, check against its own forward, export; the exit status."""
    from export.exporter import export_model
    from export.from_torch import import_torch_model

    print(f"importing {args.torch_module} with the weights of {args.state_dict}")
    try:
        settings = verify_settings(args)
        imported = import_torch_model(
            args.torch_module,
            args.state_dict,
            kwargs=args.torch_kwargs,
            labels=labels,
            settings=settings,
        )
    except ValueError as error:  # TorchImportError, or a bad verification flag
        print(f"error: {error}")
        return 2
    config = imported.model.config
    print(
        f"imported {args.torch_module}: {config.architecture} {list(config.layer_sizes)}, "
        f"{config.input_size} features, {config.num_classes} classes; {imported.check.format()}"
    )
    for path in imported.layout.softmax:  # not an error: the graph answers probs too
        print(f"note: {path} (nn.Softmax) is not part of the graph, which returns logits and probs")
    print(f"exporting as {args.name!r} (version {args.version or 'next'}) into {args.repository}")
    return run_export(
        lambda: export_model(
            imported.model,
            args.repository,
            args.name,
            args.version,
            source_sha256=imported.source_sha256,
            verify=settings,
            max_batch_size=args.max_batch_size,
            precision=args.precision,
        ),
        what="the exported model",
    )
