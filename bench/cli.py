"""``python -m bench``: the benchmark suite, in one run on one machine.

    python -m bench                 # defaults: ~5 s per point, < 10 min on a 2-core machine
    python -m bench --quick         # ~2 s per point
    python -m bench --help

For the default bidirectional model (``bilstm``) and lengths U[10,200] it measures

1. the in-process ceiling: ONNX Runtime on the exported model at batches of 1/16/64/256, cut in
   arrival order and length-sorted and as the service's batching policy cuts them, and torch
   eager on the same batches (``bench.ceiling``);
2. the service (``python -m service``, length-aware batching) over /v1 JSON, V2 JSON and V2
   binary at concurrency 1/16/64, with the server's own figures from ``/metrics``;
3. the naive baseline (``bench.naive_server``: one ORT call per request) under the same load;
4. the HTTP ceiling (``bench.http_ceiling``: the real service with inference skipped);
5. the padding efficiency the batcher reached vs first-come batching of the same arrivals;
6. the hand-off's CPU per request between a frontend and the engine (``bench.handoff``);
7. with ``--frontends 1,2,4``: the service as N HTTP frontends feeding one engine, against one
   process and the old model at the same offered rate (``bench.frontends``);
8. with ``--streams S``: S concurrent streams of a unidirectional model (``--stream-model``)
   served with server-held state, client-held state and re-sent history (``bench.streams``);
9. with ``--precisions fp32,int8`` (``fp32,fp16`` on a GPU): each precision variant of the model
   in process and served, with its test accuracy (``bench.precision``);

then prints the ratios (service / ceiling, service / baseline, service / HTTP ceiling), the
targets and where the time goes (``bench.analysis``), and writes
``bench/results/cpu-<date>.json`` and ``.md`` (``bench.report``). Every server runs as its own
process on a free port (``bench.servers``); the load comes from ``loadtest``'s client processes
(``--processes``, default 1, ``bench.load``), which share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.analysis import breakdowns, frontend_targets, padding_comparison, ratios, targets
from bench.ceiling import measure_ceilings
from bench.cpu import load_average
from bench.frontends import measure_frontends
from bench.handoff import measure_handoff
from bench.load import LoadPlan, load_server
from bench.precision import measure_precisions
from bench.records import Ceilings, Point, ServerStart, SuiteReport
from bench.report import describe_machine, suite_markdown, write_results
from bench.servers import ROOT, SERVER_LABELS, SERVERS, running_server, served_model_file
from bench.streams import measure_streams
from contract.sessions import create_session
from loadtest.distributions import parse_int_distribution
from loadtest.payloads import PROTOCOLS
from service.engine.loading import batch_policy
from service.settings import settings_from_cli

log = logging.getLogger("bench")

RESULTS = ROOT / "bench" / "results"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def _names(text: str) -> list[str]:
    return text.split(",")


def _counts(text: str) -> list[int]:
    """``1,2,4``; empty: none."""
    return _ints(text) if text.strip() else []


def _counts_or_names(text: str) -> list[str]:
    """``fp32,int8``; empty: none."""
    return _names(text) if text.strip() else []


def build_parser() -> argparse.ArgumentParser:
    # Alike in shape only to the export commands' parsers: the benchmark's flags (one line each,
    # defaults shown by the formatter) are its own, so none comes from export.cli.
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark: in-process ceilings, the service, the naive baseline and the "
        "HTTP ceiling, in one run; writes bench/results/cpu-<date>.json and .md (--provider "
        "cuda on a GPU: gpu-<date>.*).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default="bilstm")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="torch checkpoint for the torch eager row (default "
        "artifacts/checkpoints/<model>.pt; skipped when missing)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per point")
    parser.add_argument(
        "--server-warmup", type=float, default=3.0, help="unrecorded load after each server start"
    )
    parser.add_argument("--quick", action="store_true", help="2 s per point, shorter ceilings")
    parser.add_argument("--concurrency", type=_ints, default=[1, 16, 64])
    parser.add_argument("--protocols", type=_names, default=list(PROTOCOLS), help="comma list")
    parser.add_argument("--servers", type=_names, default=list(SERVERS), help="comma list")
    parser.add_argument("--batch-sizes", type=_ints, default=[1, 16, 64, 256])
    parser.add_argument("--ceiling-seconds", type=float, default=1.5, help="per ceiling cell")
    parser.add_argument("--sample", type=int, default=1024, help="sequences in the ceiling sample")
    parser.add_argument("--lengths", type=parse_int_distribution, default="10:200")
    parser.add_argument("--processes", type=int, default=1, help="load client processes")
    parser.add_argument("--pool", type=int, default=512, help="distinct requests per protocol")
    parser.add_argument("--verify", type=int, default=10, help="responses checked per point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ceiling", action="store_true", help="skip the in-process ceiling")
    parser.add_argument("--no-torch", action="store_true", help="skip torch eager")
    parser.add_argument(
        "--frontends",
        type=_counts,
        default=[],
        help="frontend counts of the multi-frontend case, e.g. 1,2,4: the service with "
        "--workers N --engine separate, closed loop at the highest --concurrency and open loop "
        "at one shared rate, plus one process and --engine in-process --workers <largest N> at "
        "that rate (empty: skipped; about 1 min per count with the default --seconds)",
    )
    parser.add_argument(
        "--frontend-rate",
        type=float,
        default=0.0,
        help="the multi-frontend case's open-loop rate, req/s (0: 0.8 x the closed-loop "
        "req/s of its first row)",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=0,
        help="concurrent streams of the streaming case (bench.streams: server-held state vs "
        "client-held state vs re-sent history, --seconds each; 0: skipped)",
    )
    parser.add_argument(
        "--stream-model", default="lstm", help="the streaming case's (unidirectional) model"
    )
    parser.add_argument("--chunk-steps", type=int, default=10, help="steps per stream chunk")
    parser.add_argument("--chunks-per-stream", type=int, default=10, help="chunks per stream")
    parser.add_argument(
        "--think-ms", type=float, default=20.0, help="pause between a stream's chunks"
    )
    parser.add_argument(
        "--precisions",
        type=_counts_or_names,
        default=[],
        help="precision variants of the precision case, e.g. fp32,int8 (CPU) or fp32,fp16 "
        "(GPU): each variant of --model (bilstm, bilstm_int8, bilstm_fp16) in process at "
        "--precision-batch-sizes in arrival and sorted order, and served at the highest "
        "--concurrency, with its test accuracy (bench.precision; empty: skipped)",
    )
    parser.add_argument("--precision-batch-sizes", type=_ints, default=[1, 16, 64])
    parser.add_argument(
        "--handoff-requests",
        type=int,
        default=3000,
        help="requests of the in-process hand-off measure (bench.handoff; 0: skipped)",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="appended to the result file names")
    parser.add_argument(
        "--provider",
        choices=("cpu", "cuda"),
        default="cpu",
        help="execution provider of every server and of the in-process ceiling; cuda writes "
        "bench/results/gpu-<date>.*",
    )
    parser.add_argument(
        "--service-flags",
        default="",
        help="extra flags for the service and the HTTP ceiling, e.g. "
        "'--concurrent-batches 3 --padding-efficiency-target 0.95' (the in-process ceiling "
        "cuts the batcher's batches under the same settings)",
    )
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if isinstance(args.lengths, str):  # the default, which argparse leaves unparsed
        args.lengths = parse_int_distribution(args.lengths)
    if args.quick:
        args.seconds, args.warmup = min(args.seconds, 2.0), min(args.warmup, 0.5)
        args.server_warmup = min(args.server_warmup, 1.0)
        args.ceiling_seconds, args.sample = min(args.ceiling_seconds, 0.5), min(args.sample, 512)
    return args


def _ceilings(
    args: argparse.Namespace, model_file: Path, checkpoint: Path | None, features: int
) -> Ceilings:
    settings = settings_from_cli(shlex.split(args.service_flags))
    on_gpu = args.provider == "cuda"
    log.info("in-process ceiling (%s):", model_file)
    return measure_ceilings(
        model_file,
        checkpoint=checkpoint,
        features=features,
        batch_sizes=args.batch_sizes,
        sample=args.sample,
        low=args.lengths.low,
        high=args.lengths.high,
        seconds=args.ceiling_seconds,
        parallel=max(1, min(4, os.cpu_count() or 1)),
        policy=batch_policy(settings, on_gpu),
        batcher_waiting=args.concurrency[-1:],
        provider=args.provider,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(format="%(message)s")
    log.setLevel(logging.INFO)
    args = _parse(argv)
    unknown = set(args.servers) - set(SERVERS) or set(args.protocols) - set(PROTOCOLS)
    if unknown:
        log.error("unknown servers or protocols: %s", sorted(unknown))
        return 2
    if any(count < 1 for count in args.frontends):
        log.error("--frontends takes counts of 1 or more, got %s", args.frontends)
        return 2
    if args.streams < 0 or args.chunk_steps < 1 or args.chunks_per_stream < 1 or args.think_ms < 0:
        log.error("--streams >= 0, --chunk-steps and --chunks-per-stream >= 1, --think-ms >= 0")
        return 2
    repository = args.repository.resolve()
    model_file = served_model_file(repository, args.model)
    if model_file is None:
        missing = repository / args.model / "1" / "model.onnx"
        log.error("%s not found: run `python -m export.defaults` first", missing)
        return 2
    checkpoint = args.checkpoint or ROOT / "artifacts" / "checkpoints" / f"{args.model}.pt"
    if args.no_torch or not checkpoint.is_file():
        if not args.no_torch:
            log.info("no checkpoint at %s: torch eager skipped", checkpoint)
        checkpoint = None
    started = time.monotonic()
    load_at_start = load_average()
    import onnxruntime as ort

    features = int(create_session(model_file, "cpu", 1)[0].get_inputs()[0].shape[2])
    ceilings = None if args.no_ceiling else _ceilings(args, model_file, checkpoint, features)
    handoff = None
    if args.handoff_requests > 0:
        handoff = measure_handoff(
            repository,
            args.model,
            requests=args.handoff_requests,
            length=round(args.lengths.mean),
            provider=args.provider,
            settings=settings_from_cli(shlex.split(args.service_flags)),
        )
        log.info("hand-off: %.0f us of CPU per request", handoff.handoff_cpu_us)
    plan = LoadPlan(
        model=args.model,
        protocols=tuple(args.protocols),
        concurrency=tuple(args.concurrency),
        lengths=args.lengths,
        seconds=args.seconds,
        warmup_s=args.warmup,
        server_warmup_s=args.server_warmup,
        pool=args.pool,
        seed=args.seed,
        processes=args.processes,
        verify=args.verify,
    )
    points: list[Point] = []
    servers = {}
    for kind in args.servers:
        log.info("%s:", SERVER_LABELS[kind])
        flags = shlex.split(args.service_flags)
        with running_server(kind, repository, flags, args.provider) as server:
            servers[kind] = ServerStart(server.startup_s, SERVER_LABELS[kind])
            points += load_server(server, plan, features, model_file)
    frontends = None
    if args.frontends:
        log.info("multi-frontend case:")
        protocol = "v2-binary" if "v2-binary" in args.protocols else args.protocols[0]
        frontend_plan = dataclasses.replace(
            plan, protocols=(protocol,), concurrency=(max(args.concurrency),)
        )
        frontends = measure_frontends(
            repository,
            frontend_plan,
            args.frontends,
            features,
            shlex.split(args.service_flags),
            args.provider,
            rate=args.frontend_rate or None,
        )
    streams = None
    if args.streams:
        log.info("streaming case (%s):", args.stream_model)
        stream_file = served_model_file(repository, args.stream_model)
        if stream_file is None:
            log.error("%s is not in %s: streaming case skipped", args.stream_model, repository)
        else:
            stream_features = int(create_session(stream_file, "cpu", 1)[0].get_inputs()[0].shape[2])
            streams = measure_streams(
                repository,
                args.stream_model,
                stream_features,
                streams=args.streams,
                chunk_steps=args.chunk_steps,
                chunks_per_stream=args.chunks_per_stream,
                think_ms=args.think_ms,
                seconds=args.seconds,
                service_flags=shlex.split(args.service_flags),
                provider=args.provider,
                protocol="v2-binary" if "v2-binary" in args.protocols else "v2-json",
                seed=args.seed,
                warmup_s=args.warmup,
            )
    precisions = None
    if args.precisions:
        log.info("precision case:")
        protocol = "v2-binary" if "v2-binary" in args.protocols else args.protocols[0]
        precisions = measure_precisions(
            repository,
            dataclasses.replace(plan, protocols=(protocol,)),
            args.precisions,
            features,
            batch_sizes=args.precision_batch_sizes,
            sample=args.sample,
            low=args.lengths.low,
            high=args.lengths.high,
            seconds=args.ceiling_seconds,
            parallel=max(1, min(4, os.cpu_count() or 1)),
            service_flags=shlex.split(args.service_flags),
            provider=args.provider,
        )
        naive = [
            p
            for p in points
            if p.kind == "naive"
            and p.protocol == protocol
            and p.concurrency == precisions.concurrency
        ]
        if naive:
            precisions.naive_fp32_seq_per_s = naive[0].sequences_per_s
    padding = padding_comparison(points)
    today = dt.date.today().isoformat()
    report = SuiteReport(
        date=today,
        command=" ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        machine=describe_machine(args.provider, ort.__version__),
        provider=args.provider,
        model=args.model,
        model_file=str(model_file),
        lengths=str(args.lengths),
        seconds=args.seconds,
        warmup_s=args.warmup,
        client_processes=args.processes,
        servers=servers,
        ceilings=ceilings,
        points=points,
        ratios=ratios(points, ceilings),
        padding=padding,
        breakdown=breakdowns(points),
        targets=targets(points, ceilings, padding, max(args.concurrency))
        + (frontend_targets(frontends) if frontends else []),
        load_average_at_start=load_at_start,
        load_average_at_end=load_average(),
        wall_s=time.monotonic() - started,
        handoff=handoff,
        frontends=frontends,
        streams=streams,
        precisions=precisions,
    )
    text = suite_markdown(report)
    kind = "gpu" if args.provider == "cuda" else "cpu"
    stem = args.out_dir / (f"{kind}-{today}" + (f"-{args.tag}" if args.tag else ""))
    json_file, markdown_file = write_results(stem, report, text)
    print(text)
    log.info("wrote %s and %s in %.0f s", json_file, markdown_file, report.wall_s)
    return 0
