"""``python -m loadtest``: load a running server, then report, verify, write JSON and plots.

Examples::

    python -m loadtest --url http://127.0.0.1:8000 --model bilstm --concurrency 16 --duration 10
    python -m loadtest --model bilstm --rate 200 --duration 20 --protocol v2-json
    python -m loadtest --model bilstm --sweep --concurrency 64 --processes 4 \\
        --model-file model_repository/bilstm/1/model.onnx
    python -m loadtest --model lstm --streams 32 --chunk-steps 10 --chunks-per-stream 20 \\
        --think-ms 50 --duration 20

Exit status: 0 when the run went through (and verification passed), 1 when no request succeeded
or verification failed, 2 for bad arguments or unreadable metadata, 3 when the run stopped
because the target refused connections (``--stop-after-refused``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.distributions import parse_int_distribution
from loadtest.engine import ClientConfig, LoadGenerator, Phase
from loadtest.payloads import PROTOCOLS, PoolSpec
from loadtest.report import (
    ProgressLine,
    format_summary,
    format_sweep,
    format_verification,
    measure_phase,
    sweep_levels,
)
from loadtest.streams import (
    MODES,
    STREAM_PROTOCOLS,
    StreamPlan,
    fetch_state_sizes,
    format_streams,
    run_streams,
)
from loadtest.verify import ModelInfo, fetch_model_info, verify_samples

EXIT_TARGET_GONE = 3
"""The run stopped early: the target refused ``--stop-after-refused`` connections in a row."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default once: not when its help already says it, nor for flags whose
    default is "absent" (None, or False for a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        absent = action.default is None or action.default is False  # not 0: "is", not "=="
        if "default" in text or absent or action.default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _distribution(text: str) -> Any:
    try:
        return parse_int_distribution(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    # add_argument blocks alike in shape only, here and in export's and bench's parsers: each
    # flag is the load tester's own (--tolerance is against ORT, --seed seeds the payloads), and
    # loadtest imports neither.
    parser = argparse.ArgumentParser(
        prog="python -m loadtest",
        description="Load-test the LSTM service: closed loop (--concurrency), open loop "
        "(--rate, Poisson arrivals) or a concurrency sweep (--sweep), over /v1 JSON, V2 JSON or "
        "V2 binary. Prints a report with the server's own /metrics figures, writes JSON results "
        "and PNG plots, and checks a sample of responses.",
        epilog="Exit status: 0 run done (verification passed), 1 nothing succeeded or "
        "verification failed, 2 bad arguments or metadata, 3 the target refused connections.",
        formatter_class=_HelpFormatter,
    )
    target = parser.add_argument_group("target")
    target.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    target.add_argument("--model", required=True, help="model name")
    target.add_argument("--model-version", default=None, help="model version (default: latest)")
    target.add_argument("--protocol", choices=PROTOCOLS, default="v2-binary", help="wire format")
    target.add_argument(
        "--api-key",
        default=None,
        help="sent as 'Authorization: Bearer KEY' (default: $LOADTEST_API_KEY, if set)",
    )

    load = parser.add_argument_group("load")
    load.add_argument(
        "--concurrency", type=int, default=8, help="closed loop: concurrent clients (the sweep's "
        "maximum with --sweep)"
    )  # fmt: skip
    load.add_argument(
        "--rate",
        type=_positive_float,
        default=None,
        help="open loop: target requests/s with Poisson arrivals (instead of a closed loop)",
    )
    load.add_argument("--sweep", action="store_true", help="closed loop at 1, 2, 4, ... clients")
    load.add_argument(
        "--duration", type=_positive_float, default=10.0, help="seconds measured (per level)"
    )
    load.add_argument(
        "--requests",
        type=int,
        default=None,
        help="measured requests (per level); with --duration, whichever comes first",
    )
    load.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of unrecorded load before each level"
    )
    load.add_argument(
        "--max-in-flight",
        type=int,
        default=1024,
        help="open loop: outstanding requests beyond which arrivals are dropped (and counted)",
    )
    load.add_argument(
        "--processes",
        type=int,
        default=1,
        help="client processes (one Python process saturates before a fast server does)",
    )
    load.add_argument(
        "--client",
        choices=("auto", "aiohttp", "httpx"),
        default="auto",
        help="HTTP client (auto: aiohttp when installed, else httpx)",
    )
    load.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    load.add_argument("--timeout", type=_positive_float, default=60.0, help="seconds per request")
    load.add_argument(
        "--stop-after-refused",
        type=int,
        default=50,
        metavar="N",
        help="stop the run, report it and exit 3 once a client process has had N connections "
        "refused in a row (the server is gone); 0: never stop",
    )

    data = parser.add_argument_group("requests")
    data.add_argument(
        "--lengths",
        type=_distribution,
        default=parse_int_distribution("10:200"),
        help="sequence lengths: N (fixed), LOW:HIGH (uniform) or A,B,C (one of)",
    )
    data.add_argument(
        "--sequences-per-request",
        type=_distribution,
        default=parse_int_distribution("1"),
        help="sequences in each request, same syntax as --lengths",
    )
    data.add_argument(
        "--features", type=int, default=None, help="features per step (default: from metadata)"
    )
    data.add_argument("--seed", type=int, default=0, help="seed of lengths and feature values")
    data.add_argument(
        "--pool", type=int, default=256, help="distinct pre-encoded requests a run cycles through"
    )

    streams = parser.add_argument_group(
        "streams",
        "streaming mode (loadtest.streams): --streams S slots, each sending a stream of "
        "--chunks-per-stream chunks of --chunk-steps steps with the V2 sequence parameters, "
        "then the next stream, for --duration; over v2-json or v2-binary, one process",
    )
    streams.add_argument(
        "--streams", type=int, default=None, help="concurrent streams (turns streaming mode on)"
    )
    streams.add_argument("--chunk-steps", type=int, default=10, help="steps per chunk")
    streams.add_argument("--chunks-per-stream", type=int, default=10, help="chunks per stream")
    streams.add_argument(
        "--think-ms", type=float, default=0.0, help="pause after each answer within a stream"
    )
    streams.add_argument(
        "--stream-mode",
        choices=MODES,
        default="server-state",
        help="how the state goes from chunk to chunk: the server holds it (sequence "
        "parameters), the client sends it back (initial_*/final_*), or every chunk re-sends "
        "the whole history",
    )

    check = parser.add_argument_group("verification")
    check.add_argument(
        "--verify", type=int, default=20, help="successful responses to check per level (0: none)"
    )
    check.add_argument(
        "--model-file",
        type=Path,
        default=None,
        help="the served model.onnx: also compare sampled probabilities with in-process ORT",
    )
    check.add_argument("--tolerance", type=float, default=1e-4, help="max abs error vs ORT")

    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON path; plots go next to it (default: "
        "loadtest-results/<model>-<protocol>-<time>.json)",
    )
    output.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    output.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.sweep and args.rate is not None:
        parser.error("--sweep is a closed-loop mode; leave out --rate")
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be at least 1")
    if args.pool < 1:
        parser.error("--pool must be at least 1")
    if args.model_file is not None and not args.model_file.is_file():
        parser.error(f"--model-file {args.model_file} does not exist")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.stop_after_refused < 0:
        parser.error("--stop-after-refused must be >= 0")
    if args.streams is not None:
        if args.streams < 1 or args.chunk_steps < 1 or args.chunks_per_stream < 1:
            parser.error("--streams, --chunk-steps and --chunks-per-stream must be at least 1")
        if args.think_ms < 0:
            parser.error("--think-ms must be >= 0")
        if args.protocol not in STREAM_PROTOCOLS:
            parser.error(f"streaming mode goes over {' or '.join(STREAM_PROTOCOLS)}")
        if args.processes != 1 or args.sweep or args.rate is not None:
            parser.error("streaming mode runs in one process, closed loop: no --processes, "
                         "--sweep or --rate")  # fmt: skip


def _default_out(args: argparse.Namespace) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("loadtest-results") / f"{args.model}-{args.protocol}-{stamp}.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    api_key = args.api_key or os.environ.get("LOADTEST_API_KEY")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        info: ModelInfo | None = fetch_model_info(
            args.url, args.model, args.model_version, headers=headers
        )
    except RuntimeError as error:
        if args.features is None:
            print(f"cannot read the model's metadata ({error}); pass --features", file=sys.stderr)
            return 2
        info = None
    features = args.features or (info.features if info else 0)
    if args.streams is not None:
        return _streams_main(args, headers, features)
    spec = PoolSpec(
        protocol=args.protocol,
        model=args.model,
        features=features,
        lengths=args.lengths,
        sequences_per_request=args.sequences_per_request,
        size=args.pool,
        seed=args.seed,
        version=args.model_version,
    )
    config = ClientConfig(
        url=args.url,
        pool=spec,
        timeout_s=args.timeout,
        client=args.client,
        use_uvloop=not args.no_uvloop,
        samples_per_phase=args.verify,
        extra_headers=headers,
        stop_after_refused=args.stop_after_refused,
    )
    phases = _phases_for(args, argv)
    out = args.out or _default_out(args)
    print(
        f"loadtest: {args.model} over {args.protocol} at {args.url}; lengths {args.lengths}, "
        f"{args.sequences_per_request} sequences/request, {features} features; "
        f"{args.processes} client process(es)",
        file=sys.stderr,
    )
    runs, samples = [], []
    stopped: str | None = None
    with LoadGenerator(config, args.processes) as generator:
        for phase in phases:
            label = (
                f"rate {phase.rate:g}/s" if phase.mode == "open" else f"c={phase.concurrency:<4}"
            )
            progress = None if args.quiet else ProgressLine(label)
            summary, result = measure_phase(generator, phase, args.model, progress)
            if progress is not None:
                progress.done()
            runs.append(summary)
            samples.extend(result.samples)
            if result.status.size:
                latencies = result.latency[(result.status >= 200) & (result.status < 300)]
            else:
                latencies = result.latency
            summary["_latencies"] = latencies
            print(f"{label}\n{format_summary(summary)}", file=sys.stderr)
            if result.stopped:
                stopped = result.stopped
                break  # the later levels would only meet the same closed port
        http_client = generator.client
    verification = verify_samples(samples, spec, info, args.model_file, args.tolerance)
    report: dict[str, Any] = {
        "tool": "loadtest",
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
        "target": {"url": args.url, "model": args.model, "version": args.model_version},
        "config": {
            "protocol": args.protocol,
            "mode": phases[0].mode,
            "sweep": args.sweep,
            "lengths": str(args.lengths),
            "sequences_per_request": str(args.sequences_per_request),
            "features": features,
            "seed": args.seed,
            "pool": args.pool,
            "processes": args.processes,
            "http_client": http_client,
            "uvloop": not args.no_uvloop,
            "timeout_s": args.timeout,
        },
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "model_info": info.__dict__ if info else None,
        "runs": [{k: v for k, v in run.items() if not k.startswith("_")} for run in runs],
        "verification": verification,
        "stopped": stopped,
        "plots": [],
    }
    if args.sweep:
        print("\n" + format_sweep(report["runs"]), file=sys.stderr)
    if args.verify:
        print(format_verification(verification), file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.no_plots:
        report["plots"] = _plots(args, runs, out)
    out.write_text(json.dumps(report, indent=1))
    print(f"results: {out}" + "".join(f"\nplot: {p}" for p in report["plots"]), file=sys.stderr)
    if stopped:
        print(f"run stopped early: {stopped}", file=sys.stderr)
        return EXIT_TARGET_GONE
    if not any(run["ok"] for run in runs):
        print("no request succeeded", file=sys.stderr)
        return 1
    if args.verify and not verification["passed"]:
        return 1
    return 0


def _streams_main(args: argparse.Namespace, headers: dict[str, str], features: int) -> int:
    """Streaming mode: one run of ``loadtest.streams``, its summary printed and written."""
    sizes: tuple[int, ...] = ()
    if args.stream_mode == "client-state":
        try:
            sizes = fetch_state_sizes(args.url, args.model, args.model_version, headers)
        except RuntimeError as error:
            print(f"cannot read the model's state sizes ({error})", file=sys.stderr)
            return 2
        if not sizes:
            print(f"{args.model} has no final_c_* outputs: no client-held state", file=sys.stderr)
            return 2
    plan = StreamPlan(
        model=args.model,
        features=features,
        streams=args.streams,
        chunk_steps=args.chunk_steps,
        chunks_per_stream=args.chunks_per_stream,
        think_ms=args.think_ms,
        duration_s=args.duration,
        mode=args.stream_mode,
        protocol=args.protocol,
        seed=args.seed,
        version=args.model_version,
        state_sizes=sizes,
    )
    print(
        f"loadtest: {args.model} streams over {args.protocol} at {args.url} ({args.stream_mode}); "
        f"{args.streams} streams of {args.chunks_per_stream} chunks x {args.chunk_steps} steps, "
        f"think {args.think_ms:g} ms, {args.duration:g} s",
        file=sys.stderr,
    )
    run = asyncio.run(run_streams(args.url, plan, headers, args.timeout))
    summary = run.summary()
    print(format_streams(summary), file=sys.stderr)
    for status, body in run.error_bodies:
        print(f"  e.g. {status}: {body}", file=sys.stderr)
    out = args.out or Path("loadtest-results") / (
        f"{args.model}-streams-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    )
    report = {
        "tool": "loadtest",
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
        "target": {"url": args.url, "model": args.model, "version": args.model_version},
        "config": {
            "protocol": args.protocol,
            "mode": "streams",
            "stream_mode": args.stream_mode,
            "streams": args.streams,
            "chunk_steps": args.chunk_steps,
            "chunks_per_stream": args.chunks_per_stream,
            "think_ms": args.think_ms,
            "duration_s": args.duration,
            "features": features,
            "seed": args.seed,
        },
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "streams": summary,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"results: {out}", file=sys.stderr)
    if not summary["chunks_ok"]:
        print("no chunk succeeded", file=sys.stderr)
        return 1
    return 0


def _phases_for(args: argparse.Namespace, argv: Sequence[str] | None) -> list[Phase]:
    """--requests alone bounds by count; with --duration given too, whichever comes first."""
    given = list(sys.argv[1:] if argv is None else argv)
    duration_given = any(a == "--duration" or a.startswith("--duration=") for a in given)
    duration = args.duration if args.requests is None or duration_given else None
    common = {"duration_s": duration, "requests": args.requests, "warmup_s": args.warmup}
    if args.rate is not None:
        return [Phase("open", rate=args.rate, max_in_flight=args.max_in_flight, **common)]
    levels = sweep_levels(args.concurrency) if args.sweep else [args.concurrency]
    return [Phase("closed", concurrency=level, **common) for level in levels]


def _plots(args: argparse.Namespace, runs: list[dict[str, Any]], out: Path) -> list[str]:
    from loadtest.plots import latency_plot, sweep_plot

    stem = out.with_suffix("")
    title = f"{args.model} over {args.protocol} ({args.lengths} steps)"
    try:
        last = runs[-1]
        where = (
            f"{last['concurrency']} clients"
            if last["concurrency"]
            else f"{last['phase']['rate']:g} requests/s"
        )
        paths = [latency_plot(last["_latencies"], f"{title}, {where}", Path(f"{stem}-latency.png"))]
        if args.sweep:
            paths.append(sweep_plot(runs, title, Path(f"{stem}-sweep.png")))
    except ImportError as error:
        print(f"no plots: {error}", file=sys.stderr)
        return []
    return [str(p) for p in paths]
