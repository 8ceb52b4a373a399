"""``lstm-serving``: one command for the project's tools.

* ``lstm-serving predict --model bilstm data.npy|.csv|.json`` — classify sequences on a running
  server (``lstm_serving.client``), printing each sequence's class and probabilities, or JSON
  with ``--json``. A server's error is printed as its one-line message (exit status 1).
* ``lstm-serving models`` — what the server serves.
* ``lstm-serving serve|export|export-defaults|loadtest [ARGS]`` — the same commands as
  ``python -m service``, ``python -m export``, ``python -m export.defaults`` and
  ``python -m loadtest`` (their flags and exit statuses; ``--help`` after the name lists them).

Input files: ``.npy`` holds one sequence ``(L, F)`` or a batch ``(B, T, F)``; ``.csv`` one step
per line, ``F`` numbers, sequences separated by a blank line; ``.json`` a list of steps, a list
of sequences, a v1 body (``{"sequences": [...]}``) or an examples file
(``{"examples": [{"sequence": ...}]}``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DELEGATES: dict[str, tuple[str, str]] = {
    "serve": ("python -m service", "service.__main__"),
    "export": ("python -m export", "export.cli"),
    "export-defaults": ("python -m export.defaults", "export.defaults"),
    "loadtest": ("python -m loadtest", "loadtest.cli"),
}
"""Subcommand -> (the command it is the same as, the module whose ``main`` runs it)."""

EXIT_SERVER_ERROR = 1
EXIT_USAGE = 2


class InputError(ValueError):
    """An input file that cannot be read as sequences."""


def read_sequences(path: Path) -> list[np.ndarray]:
    """The sequences in ``path`` (``.npy``, ``.csv`` or ``.json``), each ``(L, F)`` float32."""
    from lstm_serving.client import as_sequences

    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return as_sequences(np.load(path, allow_pickle=False))
        if suffix == ".csv":
            blocks = [b for b in path.read_text().replace("\r\n", "\n").split("\n\n") if b.strip()]
            return [
                np.loadtxt(b.splitlines(), delimiter=",", ndmin=2, dtype=np.float32) for b in blocks
            ]
        if suffix == ".json":
            data: Any = json.loads(path.read_text())
            if isinstance(data, dict) and "examples" in data:
                data = [e["sequence"] for e in data["examples"]]
            elif isinstance(data, dict) and "sequences" in data:
                data = data["sequences"]
            return as_sequences(data)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: {error}") from error
    raise InputError(f"{path}: expected a .npy, .csv or .json file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-serving",
        description="Classify sequences on an lstm-serving server, or run the project's tools.",
        epilog="Also: "
        + "; ".join(
            f"lstm-serving {name} [ARGS] = {same}" for name, (same, _) in DELEGATES.items()
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def server_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--url",
            default=os.environ.get("LSTM_SERVING_URL", "http://127.0.0.1:8000"),
            help="the server (default: $LSTM_SERVING_URL or %(default)s)",
        )
        p.add_argument(
            "--api-key",
            default=os.environ.get("LSTM_SERVING_API_KEY"),
            help="sent as 'Authorization: Bearer KEY' (default: $LSTM_SERVING_API_KEY)",
        )
        p.add_argument("--timeout-s", type=float, default=30.0, help="per request (default: 30)")

    predict = commands.add_parser("predict", help="classify the sequences of a file")
    predict.add_argument("file", type=Path, help="a .npy, .csv or .json file of sequences")
    predict.add_argument("--model", required=True, help="model name")
    predict.add_argument("--model-version", help="model version (default: the latest)")
    predict.add_argument(
        "--protocol",
        choices=["v2", "v1"],
        default="v2",
        help="v2: KServe V2 with binary tensors (default); v1: the simple JSON API",
    )
    predict.add_argument("--json", action="store_true", help="print the answer as JSON")
    server_options(predict)

    models = commands.add_parser("models", help="list the models the server serves")
    models.add_argument("--json", action="store_true", help="print the answer as JSON")
    server_options(models)
    for name, (same, _) in DELEGATES.items():
        commands.add_parser(name, help=f"the same as `{same}` (its flags follow)", add_help=False)
    return parser


def _format_text(result: Any) -> str:
    lines = []
    for k, label in enumerate(result.labels):
        if result.probabilities is None:
            outputs = ", ".join(f"{n} {list(v.shape)}" for n, v in result.outputs.items())
            lines.append(f"sequence {k}: no class output (outputs: {outputs})")
            continue
        probs = result.probabilities[k]
        listed = "  ".join(
            f"{name}={p:.3f}" for name, p in zip(result.class_names, probs, strict=False)
        )
        lines.append(f"sequence {k}: class {label} (p={probs.max():.3f})   {listed}")
    return "\n".join(lines)


def _format_json(result: Any) -> str:
    results = []
    for k, label in enumerate(result.labels):
        entry: dict[str, Any] = {"label": label, "class_index": int(result.class_index[k])}
        if result.probabilities is not None:
            entry["probabilities"] = {
                name: round(float(p), 6)
                for name, p in zip(result.class_names, result.probabilities[k], strict=False)
            }
        results.append(entry)
    return json.dumps({"model": result.model, "version": result.version, "results": results})


def _predict(args: argparse.Namespace) -> int:
    from lstm_serving.client import Client

    sequences = read_sequences(args.file)
    with Client(args.url, args.api_key, args.protocol, args.timeout_s) as client:
        result = client.predict(args.model, sequences, version=args.model_version)
    print(_format_json(result) if args.json else _format_text(result))
    return 0


def _models(args: argparse.Namespace) -> int:
    from lstm_serving.client import Client

    with Client(args.url, args.api_key, timeout_s=args.timeout_s) as client:
        models = client.models()
    if args.json:
        print(json.dumps(models))
        return 0
    for m in models:
        state = "ready" if m.get("ready") else f"not ready: {m.get('error')}"
        print(
            f"{m['name']} v{m['version']}  {state}  {m.get('provider', '')}  "
            f"input [T, {m.get('input_size')}]  classes {len(m.get('labels') or [])}"
        )
    return 0


def _delegate(name: str, argv: list[str]) -> int:
    """Run ``python -m ...``'s ``main`` with ``argv`` as its arguments."""
    import importlib

    same, module = DELEGATES[name]
    main: Callable[..., Any] = importlib.import_module(module).main
    if name == "serve":  # service's main reads its flags from sys.argv (pydantic-settings)
        sys.argv = [f"lstm-serving {name}", *argv]
        result = main()
    else:
        result = main(argv)
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in DELEGATES:
        return _delegate(args_list[0], args_list[1:])
    args = build_parser().parse_args(args_list)
    try:
        import httpx

        from lstm_serving.client import ServerError
    except ImportError as error:  # the serving install (the image) has no httpx
        print(
            f"lstm-serving: error: {error}: the client needs `pip install lstm-serving[client]`",
            file=sys.stderr,
        )
        return EXIT_USAGE

    try:
        return _predict(args) if args.command == "predict" else _models(args)
    except ServerError as error:
        print(f"lstm-serving: error: {error}", file=sys.stderr)
        return EXIT_SERVER_ERROR
    except InputError as error:
        print(f"lstm-serving: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, httpx.HTTPError) as error:
        where = f" ({args.url})" if isinstance(error, httpx.HTTPError) else ""
        print(f"lstm-serving: error{where}: {error}", file=sys.stderr)
        return EXIT_SERVER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
