"""Train (if needed) and export the built-in models: ``python -m export.defaults``.

* ``bilstm``: bidirectional LSTM, layers [128, 128]
* ``lstm``: stacked unidirectional LSTM, layers [128, 256]

and of each its int8 variant (``bilstm_int8``, ``lstm_int8``: ``export.precision``;
``--precisions`` adds ``fp16`` for a GPU). Both are trained on JapaneseVowels (``models.data``)
with a fixed seed; checkpoints go to ``<checkpoints>/<name>.pt`` and are reused when present.
Idempotent: a model whose repository version already holds an export of the same checkpoint
(same SHA-256) is left alone unless ``--force``. This is what the README's serve command runs
on a fresh machine.

Exit status: 0 every model exported and verified, or up to date; 1 one or more failed
verification (the others are still exported); 2 bad arguments, an unusable checkpoint or an
unavailable provider (stops at once). The flags shared with the other export commands, the
up-to-date check and the report come from ``export.cli``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from contract.precision import FP32, INT8, PRECISIONS, variant_name
from export.cli import (
    add_repository_argument,
    add_verify_arguments,
    run_export,
    up_to_date,
    verify_settings,
)

DEFAULT_CHECKPOINTS = Path("artifacts/checkpoints")
DEFAULT_PRECISIONS = (FP32, INT8)
"""What every machine serves: fp16 only loads where CUDA does, so it is asked for."""
DEFAULT_VERSION = 1


@dataclass(frozen=True)
class DefaultModel:
    """One built-in model: its repository name, architecture and training length."""

    # Plain fields, alike in shape only to other records (tf1_checkpoint's TensorEntry).
    name: str
    bidirectional: bool
    layer_sizes: tuple[int, ...]
    epochs: int
    seed: int = 0


DEFAULT_MODELS = (
    DefaultModel("bilstm", bidirectional=True, layer_sizes=(128, 128), epochs=60),
    # Test accuracy stops improving after ~40 epochs (95%); more only costs time.
    DefaultModel("lstm", bidirectional=False, layer_sizes=(128, 256), epochs=40),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.defaults",
        description="Train (when the checkpoint is missing) and export the built-in models "
        + ", ".join(f"{m.name!r}" for m in DEFAULT_MODELS)
        + " into the model repository. Skips a model whose repository version was already "
        "exported from the same checkpoint.",
    )
    add_repository_argument(parser)
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=DEFAULT_CHECKPOINTS,
        help="folder of the <name>.pt checkpoints, read or written (default: ./%(default)s)",
    )
    parser.add_argument(
        "--version",
        type=int,
        default=DEFAULT_VERSION,
        help="repository version to write (default: %(default)s)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[m.name for m in DEFAULT_MODELS],
        metavar="NAME",
        help="handle only these models (default: all)",
    )
    parser.add_argument(
        "--force", action="store_true", help="export again even when the repository is up to date"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="folder with JapaneseVowels_{TRAIN,TEST}.ts (default: aeon's)"
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        default=list(DEFAULT_PRECISIONS),
        metavar="PRECISION",
        help="the variants written of each model, each under its own name (bilstm, "
        "bilstm_int8, bilstm_fp16); default: %(default)s (fp16 is served on CUDA only)",
    )
    add_verify_arguments(parser)
    return parser


def ensure_checkpoint(spec: DefaultModel, path: Path, data_dir: Path | None) -> None:
    """Train ``spec`` on JapaneseVowels and save it to ``path`` unless ``path`` exists."""
    from models.architectures import LSTMClassifierConfig
    from models.checkpoint import save_checkpoint
    from models.data import load_japanese_vowels
    from models.train import TrainSettings, train

    if path.is_file():
        print(f"[{spec.name}] checkpoint {path} exists: not training")
        return
    train_set = load_japanese_vowels("train", data_dir)
    test_set = load_japanese_vowels("test", data_dir)
    config = LSTMClassifierConfig(
        input_size=train_set.num_features,
        layer_sizes=spec.layer_sizes,
        num_classes=len(train_set.labels),
        bidirectional=spec.bidirectional,
        labels=train_set.labels,
    )
    print(
        f"[{spec.name}] training {config.architecture} {list(spec.layer_sizes)} on "
        f"JapaneseVowels ({len(train_set)} train / {len(test_set)} test), "
        f"{spec.epochs} epochs, seed {spec.seed}"
    )
    started = time.perf_counter()
    model, record = train(
        config, train_set, test_set, TrainSettings(epochs=spec.epochs, seed=spec.seed)
    )
    save_checkpoint(path, model, record)
    print(
        f"[{spec.name}] trained in {time.perf_counter() - started:.1f} s, test accuracy "
        f"{record['test_accuracy']:.4f}; wrote {path}"
    )


def export_variant(checkpoint: Path, name: str, precision: str, args: argparse.Namespace) -> int:
    """Export ``checkpoint``'s ``precision`` variant as ``name`` unless it is up to date, and
    write the examples of the console's "try it" beside it; the exit status of ``run_export``
    (0 also when up to date)."""
    from export.examples import write_japanese_vowels_examples
    from export.exporter import export_checkpoint
    from export.repository import exported_sha256

    same = up_to_date(checkpoint, args.repository, name, args.version)
    if same is not None and not args.force:
        print(f"[{name}] {same}")
        write_japanese_vowels_examples(args.repository, name, args.data_dir)
        return 0
    previous = exported_sha256(args.repository, name, args.version)
    reason = (
        "forced"
        if same is not None
        else "not in the repository"
        if previous is None
        else f"repository holds another checkpoint's export (sha256 {previous[:16]}…)"
    )
    print(f"[{name}] exporting {checkpoint} ({precision}) as version {args.version} ({reason})")
    export = partial(
        export_checkpoint,
        checkpoint,
        args.repository,
        name,
        args.version,
        verify=verify_settings(args),
        precision=precision,
    )
    code = run_export(export, what=f"[{name}]")
    if code == 0:  # the examples (export/examples.py) only next to a model that exported
        write_japanese_vowels_examples(args.repository, name, args.data_dir)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # models.train reports each epoch through logging.
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    started = time.perf_counter()
    failures = 0
    for spec in DEFAULT_MODELS:
        if args.only and spec.name not in args.only:
            continue
        checkpoint = args.checkpoints / f"{spec.name}.pt"
        ensure_checkpoint(spec, checkpoint, args.data_dir)
        for precision in args.precisions:
            code = export_variant(checkpoint, variant_name(spec.name, precision), precision, args)
            if code == 2:  # a provider that cannot run, or an unusable checkpoint: stop here
                return 2
            failures += code
    print(
        f"done in {time.perf_counter() - started:.1f} s"
        + (f", {failures} failed" if failures else "")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
