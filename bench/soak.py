"""Overload soak: ``python -m bench.soak`` (loopback only, bounded in time).

Starts the service, measures its capacity (closed loop, 64 clients), then offers open-loop
Poisson load in three phases: normal (half the capacity), overload (4x the capacity, 60 s),
normal again. Reports, per phase: accepted requests and whether every one was answered
correctly (each accepted response's probabilities against in-process ONNX Runtime), the excess
rejected with 429/503 (and whether those carry Retry-After), 5xx other than 503, p99 latency of
accepted requests against the request deadline, the server's memory, and how long throughput and
latency took to recover. Writes ``bench/results/soak-<date>.json`` and ``.md``.

The server comes from ``bench.servers``, the load from ``bench.load`` (``loadtest``'s clients
and a side probe), the figures from ``bench.analysis``, the files from ``bench.report``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench.analysis import recovery, soak_phase
from bench.load import RejectionProbe
from bench.records import ProbeRejections, SoakPhase, SoakReport, to_json
from bench.report import soak_markdown, write_results
from bench.servers import ROOT, RunningServer, served_model_file
from loadtest.distributions import parse_int_distribution
from loadtest.engine import ClientConfig, LoadGenerator, Phase, PhaseResult
from loadtest.payloads import PoolSpec, build_pool, decode_response, pool_sequences
from loadtest.verify import OrtReference, fetch_model_info
from service.settings import settings_from_cli

log = logging.getLogger("bench.soak")

TOLERANCE = 1e-4
"""Largest absolute difference from in-process ORT of an answer counted right."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="bilstm")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--overload", type=float, default=4.0, help="x the measured capacity")
    parser.add_argument("--normal", type=float, default=0.5, help="x the measured capacity")
    parser.add_argument("--overload-s", type=float, default=60.0)
    parser.add_argument("--normal-s", type=float, default=15.0)
    parser.add_argument("--recovery-s", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--max-in-flight", type=int, default=4096)
    parser.add_argument(
        "--service-flags",
        default="--max-queue-sequences 512 --request-timeout-s 10",
        help="a queue that the client can fill from this machine, and a 10 s deadline",
    )
    parser.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    return parser


def check_answers(
    results: Iterable[PhaseResult], spec: PoolSpec, model_file: Path
) -> tuple[int, int, float]:
    """Every accepted answer kept by the client against in-process ORT (one reference per
    distinct request): how many were checked, how many were wrong, the largest error."""
    reference, requests = OrtReference(model_file), pool_sequences(spec)
    expected: dict[int, np.ndarray] = {}
    worst, wrong, checked = 0.0, 0, 0
    for result in results:
        for pool_index, status, answer, header_length in result.samples:
            if status != 200:
                continue
            if pool_index not in expected:
                expected[pool_index] = reference.probs(requests[pool_index][0])
            probs = decode_response(spec.protocol, answer, header_length).probs[0]
            gap = float(np.abs(probs - expected[pool_index]).max())
            worst, wrong, checked = max(worst, gap), wrong + (gap > TOLERANCE), checked + 1
    return checked, wrong, worst


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    flags = shlex.split(args.service_flags)
    deadline_s = settings_from_cli(flags).request_timeout_s  # as the service reads its flags
    model_file = served_model_file(args.repository, args.model)
    if model_file is None:
        log.error("no version of %s in %s: run `python -m export.defaults` first",
                  args.model, args.repository)  # fmt: skip
        return 2
    command = " ".join(["python -m bench.soak", *(argv or sys.argv[1:])])
    server = RunningServer("service", args.repository, flags, provider=args.provider)
    try:
        info = fetch_model_info(server.url, args.model)
        spec = PoolSpec(
            protocol="v2-binary",
            model=args.model,
            features=info.features,
            lengths=parse_int_distribution("10:200"),
            sequences_per_request=parse_int_distribution("1"),
            size=256,
            seed=0,
        )
        config = ClientConfig(server.url, spec, timeout_s=120.0, samples_per_phase=10**7)
        rss = {"start": server.rss_mib()}
        with LoadGenerator(config, args.processes) as generator:
            generator.run(Phase("closed", concurrency=16, duration_s=3.0))  # warm
            capacity_run = generator.run(Phase("closed", concurrency=64, duration_s=5.0))
            capacity = float((capacity_run.status == 200).sum() / capacity_run.elapsed_s)
            rss["after_capacity"] = server.rss_mib()
            normal_rate, over_rate = args.normal * capacity, args.overload * capacity
            log.info("capacity %.0f req/s; normal %.0f, overload %.0f req/s",
                     capacity, normal_rate, over_rate)  # fmt: skip
            phases: dict[str, SoakPhase] = {}
            results: dict[str, PhaseResult] = {}
            probe = RejectionProbe(server.url, build_pool(spec)[0])
            for name, rate, seconds in (
                ("normal", normal_rate, args.normal_s),
                ("overload", over_rate, args.overload_s),
                ("recovery", normal_rate, args.recovery_s),
            ):
                phase = Phase("open", rate=rate, duration_s=seconds,
                              max_in_flight=args.max_in_flight)  # fmt: skip
                if name == "overload":
                    with probe:
                        results[name] = generator.run(phase)
                else:
                    results[name] = generator.run(phase)
                rss[f"after_{name}"] = server.rss_mib()
                phases[name] = soak_phase(results[name], rate, seconds, deadline_s)
                log.info("%s: %s", name, json.dumps(to_json(phases[name])))
        baseline_p50_s = (phases["normal"].p50_accepted_ms or 1000.0) / 1000
        phases["recovery"].recovery = recovery(results["recovery"], normal_rate, baseline_p50_s)
        checked, wrong, worst = check_answers(results.values(), spec, model_file)
    finally:
        exit_code = server.stop()
    rejections = probe.rejections
    report = SoakReport(
        command=command,
        date=dt.date.today().isoformat(),
        provider=args.provider,
        service_flags=args.service_flags,
        request_deadline_s=deadline_s,
        capacity_req_per_s=capacity,
        phases=phases,
        rejections_seen_by_probe=ProbeRejections(
            count=len(rejections),
            statuses=sorted({code for code, _ in rejections}),
            all_have_retry_after=all(after is not None for _, after in rejections),
        ),
        accepted_answers_checked=checked,
        accepted_answers_wrong=wrong,
        max_abs_error_vs_ort=worst,
        rss_mib=rss,
        server_exit_code=exit_code,
    )
    text = soak_markdown(report)
    write_results(args.out_dir / f"soak-{report.date}", report, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
