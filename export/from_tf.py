"""Bring a TensorFlow 1.x checkpoint to the model repository: ``python -m export.from_tf --help``.

    # what is in it (to write a description)
    python -m export.from_tf CKPT --list-variables
    python -m export.from_tf CKPT --write-description desc.json     # a guess to check and edit
    # import, check against TF's own outputs, export (verified) and write into the repository
    python -m export.from_tf CKPT --description desc.json --reference expected.npz --name my_lstm

No TensorFlow is needed: ``tf1_checkpoint`` reads the files. The repository and verification
flags and the report are those of every export command (``export.cli``). Exit status: 0 done;
1 the reference or the export verification failed (nothing written); 2 the checkpoint or
description cannot be used.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contract.names import LOGITS, OUTPUTS, PROBS, final_c, final_h
from export.cli import add_repository_arguments, add_verify_arguments, run_export, verify_settings

REFERENCE_TOLERANCE = 1e-5


def reference_errors(model: Any, reference: Path) -> dict[str, float]:
    """Max abs error of ``model`` against TensorFlow's outputs saved in an ``.npz``.

    The file holds ``inputs`` ``(B, T, F)`` and ``lengths`` ``(B,)``, and any of: ``logits``,
    ``probs``, ``outputs`` (unidirectional) or ``outputs_fw``/``outputs_bw``, ``final_c_{n}``/
    ``final_h_{n}`` per layer (unidirectional), ``final_{c,h}_{n}_{fw,bw}`` per layer and
    direction, or ``final_{c,h}_{fw,bw}`` (top bidirectional layer). Each array present is
    compared.
    """
    from export.reference import torch_outputs

    data = np.load(reference)
    out = torch_outputs(model, data["inputs"], data["lengths"])
    # TensorFlow's names: the graph's, with states (B, H) per layer and the top bidirectional
    # layer's split by direction.
    ours = {name: out[name] for name in (LOGITS, PROBS, OUTPUTS)}
    half = ours["outputs"].shape[2] // 2
    ours["outputs_fw"], ours["outputs_bw"] = (
        ours["outputs"][..., :half],
        ours["outputs"][..., half:],
    )
    layers = len(model.config.layer_sizes)
    for n in range(layers):
        ours[f"final_c_{n}"] = out[final_c(n)][0]
        ours[f"final_h_{n}"] = out[final_h(n)][0]
        for direction, way in enumerate(("fw", "bw")[: out[final_c(n)].shape[0]]):
            ours[f"final_c_{n}_{way}"] = out[final_c(n)][direction]
            ours[f"final_h_{n}_{way}"] = out[final_h(n)][direction]
    top_c, top_h = out[final_c(layers - 1)], out[final_h(layers - 1)]
    if top_c.shape[0] == 2:
        ours["final_c_fw"], ours["final_h_fw"] = top_c[0], top_h[0]
        ours["final_c_bw"], ours["final_h_bw"] = top_c[1], top_h[1]
    errors = {}
    for key in sorted(set(data.files) & set(ours)):
        if data[key].shape != ours[key].shape:
            raise ValueError(f"{reference}: {key} has shape {data[key].shape}, the model gives "
                             f"{ours[key].shape}")  # fmt: skip
        errors[key] = float(np.max(np.abs(data[key].astype(np.float64) - ours[key])))
    if not errors:
        raise ValueError(f"{reference} holds none of the outputs to compare ({sorted(ours)})")
    return errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.from_tf",
        description="Import a TensorFlow 1.x LSTM classifier checkpoint (V2: .index + .data) "
        "without TensorFlow, check it, export it to ONNX (verified) and write it into the model "
        "repository.",
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="checkpoint prefix (model.ckpt), its .index file, or a folder holding both",
    )
    parser.add_argument(
        "--description",
        type=Path,
        help="JSON description of the cells and head (a manifest.json works); default: guessed "
        "from the variable names, assuming forget_bias=1.0",
    )
    parser.add_argument(
        "--list-variables", action="store_true", help="print the variables and stop"
    )
    parser.add_argument(
        "--all", action="store_true", help="with --list-variables: optimizer slots too"
    )
    parser.add_argument(
        "--write-description",
        type=Path,
        metavar="OUT",
        help="write the (guessed) description and stop",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        help=".npz with inputs, lengths and TensorFlow's outputs to reproduce (to 1e-5)",
    )
    add_repository_arguments(parser, name_required=False)
    add_verify_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    from tf1_checkpoint import (
        TF1ImportError,
        TFCheckpoint,
        build_model,
        format_variables,
        guess_description,
        list_variables,
        load_description,
    )

    try:
        checkpoint = TFCheckpoint(args.checkpoint)
        if args.list_variables:
            print(format_variables(list_variables(checkpoint), include_all=args.all))
            return 0
        if args.description:
            description = load_description(args.description)
        else:
            description = guess_description(checkpoint)
            for note in description.notes:
                print(f"note: {note}")
        if args.write_description:
            args.write_description.write_text(json.dumps(description.to_dict(), indent=2) + "\n")
            print(f"wrote {args.write_description}: check forget_bias and labels before use")
            return 0
        if not args.name:
            parser.error("--name is required to export (or use --list-variables)")
        for variable in checkpoint.variables():
            checkpoint.read(variable)  # every tensor's CRC32C, optimizer slots included
        model = build_model(checkpoint, description)
    except TF1ImportError as error:
        print(f"error: {error}")
        return 2
    config = model.config
    wiring = f" ({config.topology})" if config.bidirectional and len(config.layer_sizes) > 1 else ""
    print(
        f"imported {checkpoint.prefix}: {config.architecture}{wiring} "
        f"{list(config.layer_sizes)}, {config.input_size} features, {config.num_classes} classes"
    )
    if args.reference:
        errors = reference_errors(model, args.reference)
        worst = max(errors.values())
        for key, value in errors.items():
            print(f"  {'ok ' if value <= REFERENCE_TOLERANCE else 'BAD'}  {key:12s} {value:.2e}")
        if worst > REFERENCE_TOLERANCE:
            print(f"error: the model does not reproduce {args.reference} (max error {worst:.2e})")
            return 1
        print(f"reproduces {args.reference} to {worst:.1e}")

    from export.exporter import export_model

    return run_export(
        lambda: export_model(
            model,
            args.repository,
            args.name,
            args.version,
            source_sha256=checkpoint.sha256(),
            verify=verify_settings(args),
            max_batch_size=args.max_batch_size,
            precision=args.precision,
        ),
        what="the exported model",
    )


if __name__ == "__main__":
    raise SystemExit(main())
