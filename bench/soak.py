"""Overload soak: ``python -m bench.soak`` (loopback only, bounded in time).

Starts the service, measures its capacity (closed loop, 64 clients), then offers open-loop
Poisson load in three phases: normal (half the capacity), overload (4x the capacity, 60 s),
normal again. Reports, per phase: accepted requests and whether every one was answered
correctly (each accepted response's probabilities against in-process ONNX Runtime), the excess
rejected with 429/503 (and whether those carry Retry-After), 5xx other than 503, p99 latency of
accepted requests against the request deadline, the server's memory, and how long throughput and
latency took to recover. Writes ``bench/results/soak-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import RunningServer  # noqa: E402
from loadtest.distributions import parse_int_distribution  # noqa: E402
from loadtest.engine import ClientConfig, LoadGenerator, Phase, PhaseResult  # noqa: E402
from loadtest.payloads import PoolSpec, decode_response, pool_sequences  # noqa: E402
from loadtest.verify import OrtReference, fetch_model_info  # noqa: E402


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def probe_rejections(url: str, body: bytes, headers: dict[str, str], stop: threading.Event,
                     found: list[tuple[int, str | None]]) -> None:  # fmt: skip
    """While the overload lasts, send a request now and then and note rejections' headers."""
    while not stop.is_set():
        request = urllib.request.Request(url, body, headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
        except urllib.error.HTTPError as error:
            found.append((error.code, error.headers.get("Retry-After")))
        except OSError:
            pass
        stop.wait(0.2)


def phase_report(result: PhaseResult, offered_rate: float, seconds: float, deadline_s: float):  # type: ignore[no-untyped-def]
    status = result.status
    ok = status == 200
    latency_ok = result.latency[ok]
    codes = {int(c): int(n) for c, n in zip(*np.unique(status, return_counts=True), strict=True)}
    return {
        "offered_rate": offered_rate,
        "seconds": seconds,
        "arrivals": int(len(status)),
        "achieved_send_rate": float((status != -1).sum() / seconds),
        "by_status": codes,
        "accepted": int(ok.sum()),
        "rejected_429_503": int(((status == 429) | (status == 503)).sum()),
        "server_errors_5xx_not_503": int(((status >= 500) & (status != 503)).sum()),
        "no_response": int((status == 0).sum()),
        "transport_errors": dict(result.transport_errors),
        "dropped_by_client": int((status == -1).sum()),
        "accepted_per_s": float(ok.sum() / seconds),
        "p50_accepted_ms": float(np.percentile(latency_ok, 50) * 1000) if ok.any() else None,
        "p99_accepted_ms": float(np.percentile(latency_ok, 99) * 1000) if ok.any() else None,
        "max_accepted_ms": float(latency_ok.max() * 1000) if ok.any() else None,
        "p99_within_deadline": bool(ok.any() and np.percentile(latency_ok, 99) <= deadline_s),
    }


def recovery(result: PhaseResult, offered_rate: float, baseline_p50_s: float) -> dict[str, Any]:
    """Seconds into the recovery phase until every later 1-s bin has its answers back at the
    offered rate (90%) and its median latency within 2x the normal phase's median."""
    ok = result.status == 200
    sent = result.sent[ok]
    latency = result.latency[ok]
    bins = int(np.ceil(result.sent.max())) if len(result.sent) else 0
    good = []
    for k in range(bins):
        mask = (sent >= k) & (sent < k + 1)
        rate_ok = mask.sum() >= 0.9 * offered_rate
        p50_ok = mask.any() and np.percentile(latency[mask], 50) <= 2 * baseline_p50_s
        good.append(bool(rate_ok and p50_ok))
    recovered_at = None
    for k in range(bins):
        if all(good[k:]):
            recovered_at = k
            break
    return {"recovered_after_s": recovered_at, "good_bins": good}


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    flags = shlex.split(args.service_flags)
    deadline_s = (
        float(flags[flags.index("--request-timeout-s") + 1])
        if ("--request-timeout-s" in flags)
        else 30.0
    )
    model_file = max(
        args.repository.glob(f"{args.model}/*/model.onnx"), key=lambda p: int(p.parent.name)
    )
    server = RunningServer("service", args.repository, flags, provider=args.provider)
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.soak", *(argv or sys.argv[1:])])
    }
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
        rss = {"start": rss_mib(server.process.pid)}
        with LoadGenerator(config, args.processes) as generator:
            generator.run(Phase("closed", concurrency=16, duration_s=3.0))  # warm
            capacity_run = generator.run(Phase("closed", concurrency=64, duration_s=5.0))
            capacity = float((capacity_run.status == 200).sum() / capacity_run.elapsed_s)
            rss["after_capacity"] = rss_mib(server.process.pid)
            normal_rate, over_rate = args.normal * capacity, args.overload * capacity
            print(f"capacity {capacity:.0f} req/s; normal {normal_rate:.0f}, overload "
                  f"{over_rate:.0f} req/s", file=sys.stderr)  # fmt: skip
            phases: dict[str, Any] = {}
            results: dict[str, PhaseResult] = {}
            stop = threading.Event()
            rejections: list[tuple[int, str | None]] = []
            body, headers = None, None
            for name, rate, seconds in (
                ("normal", normal_rate, args.normal_s),
                ("overload", over_rate, args.overload_s),
                ("recovery", normal_rate, args.recovery_s),
            ):
                probe = None
                if name == "overload":
                    from loadtest.payloads import build_pool

                    first = build_pool(spec)[0]
                    body, headers = first.body, dict(first.headers)
                    probe = threading.Thread(
                        target=probe_rejections,
                        args=(server.url + first.path, body, headers, stop, rejections),
                        daemon=True,
                    )
                    probe.start()
                phase = Phase("open", rate=rate, duration_s=seconds,
                              max_in_flight=args.max_in_flight)  # fmt: skip
                results[name] = generator.run(phase)
                if probe is not None:
                    stop.set()
                    probe.join(70)
                rss[f"after_{name}"] = rss_mib(server.process.pid)
                phases[name] = phase_report(results[name], rate, seconds, deadline_s)
                print(f"{name}: {json.dumps(phases[name])}", file=sys.stderr)
        baseline_p50 = (phases["normal"]["p50_accepted_ms"] or 1000.0) / 1000
        phases["recovery"].update(recovery(results["recovery"], normal_rate, baseline_p50))
        # Every accepted answer against in-process ORT (one reference per distinct request).
        reference, requests = OrtReference(model_file), pool_sequences(spec)
        expected: dict[int, np.ndarray] = {}
        worst, wrong, checked = 0.0, 0, 0
        for result in results.values():
            for pool_index, status, answer, header_length in result.samples:
                if status != 200:
                    continue
                if pool_index not in expected:
                    expected[pool_index] = reference.probs(requests[pool_index][0])
                probs = decode_response("v2-binary", answer, header_length).probs[0]
                gap = float(np.abs(probs - expected[pool_index]).max())
                worst, wrong, checked = max(worst, gap), wrong + (gap > 1e-4), checked + 1
        report.update(
            date=dt.date.today().isoformat(),
            provider=args.provider,
            service_flags=args.service_flags,
            request_deadline_s=deadline_s,
            capacity_req_per_s=capacity,
            phases=phases,
            rejections_seen_by_probe={
                "count": len(rejections),
                "statuses": sorted({code for code, _ in rejections}),
                "all_have_retry_after": all(after is not None for _, after in rejections),
            },
            accepted_answers_checked=checked,
            accepted_answers_wrong=wrong,
            max_abs_error_vs_ort=worst,
            rss_mib=rss,
        )
    finally:
        exit_code = server.stop()
    report["server_exit_code"] = exit_code
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"soak-{report.get('date', dt.date.today().isoformat())}"
    Path(f"{stem}.json").write_text(json.dumps(report, indent=1))
    Path(f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    if "phases" not in report:
        return "soak did not complete"
    lines = [
        f"# Overload soak, {report['date']} ({report['provider']})",
        "",
        f"Command: `{report['command']}`; service flags `{report['service_flags']}`. Measured "
        f"capacity {report['capacity_req_per_s']:.0f} req/s (closed loop, 64 clients); open-loop "
        "Poisson arrivals of one V2 binary request (one sequence, U[10,200] steps) each.",
        "",
        "| phase | offered req/s | sent req/s | accepted/s | 429+503 | 5xx (not 503) | no answer | "
        "p50 / p99 accepted (ms) | p99 within deadline |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in report["phases"].items():
        lines.append(
            f"| {name} | {p['offered_rate']:.0f} | {p['achieved_send_rate']:.0f} | "
            f"{p['accepted_per_s']:.0f} | {p['rejected_429_503']} | "
            f"{p['server_errors_5xx_not_503']} | {p['no_response']} | "
            f"{p['p50_accepted_ms'] or 0:.0f} / {p['p99_accepted_ms'] or 0:.0f} | "
            f"{p['p99_within_deadline']} |"
        )
    probe = report["rejections_seen_by_probe"]
    rss = report["rss_mib"]
    lines += [
        "",
        f"- Accepted answers checked against in-process ORT: {report['accepted_answers_checked']}"
        f", wrong: {report['accepted_answers_wrong']} (max abs error "
        f"{report['max_abs_error_vs_ort']:.1e}).",
        f"- Rejections seen by a side probe during the overload: {probe['count']} (statuses "
        f"{probe['statuses']}), all with Retry-After: {probe['all_have_retry_after']}.",
        "- Recovery: throughput and median latency back to normal "
        f"{report['phases']['recovery'].get('recovered_after_s')} s into the recovery phase.",
        "- Server memory (RSS, MiB): "
        + ", ".join(f"{k} {v:.0f}" for k, v in rss.items() if v is not None)
        + ".",
        f"- Server exit code after SIGTERM: {report['server_exit_code']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
