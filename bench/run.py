"""The CPU benchmark suite, in one run on one machine:

    python -m bench                 # defaults: ~5 s per point, < 10 min on a 2-core machine
    python -m bench --quick         # ~2 s per point
    python bench/run.py --help

For the default bidirectional model (``bilstm``) and lengths U[10,200] it measures

1. the in-process ceiling: ONNX Runtime on the exported model at batches of 1/16/64/256, cut in
   arrival order and length-sorted, and torch eager on the same batches (``bench.ceiling``);
2. the service (``python -m service``, length-aware batching) over /v1 JSON, V2 JSON and V2
   binary at concurrency 1/16/64, with the server's own figures from ``/metrics``;
3. the naive baseline (``bench.naive_server``: one ORT call per request) under the same load;
4. the HTTP ceiling (``bench.http_ceiling``: the real service with inference skipped);
5. the padding efficiency the batcher reached vs first-come batching of the same arrivals;

then prints the ratios (service / ceiling, service / baseline, service / HTTP ceiling), the
targets and where the time goes, and writes ``bench/results/cpu-<date>.json`` and ``.md``.
Every server runs as its own process on a free port; the load comes from ``loadtest``'s
client processes (``--processes``, default 1), which share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/run.py` as well as `python -m bench`
    sys.path.insert(0, str(ROOT))

from bench.ceiling import measure_ceilings, ort_session  # noqa: E402
from bench.cpu import MachineCpu, load_average  # noqa: E402
from loadtest.distributions import parse_int_distribution  # noqa: E402
from loadtest.engine import ClientConfig, LoadGenerator, Phase  # noqa: E402
from loadtest.payloads import PROTOCOLS, PoolSpec, pool_sequences  # noqa: E402
from loadtest.report import measure_phase  # noqa: E402
from loadtest.verify import fetch_model_info, verify_samples  # noqa: E402

SERVERS = ("service", "naive", "http-ceiling")
SERVER_LABELS = {
    "service": "service (length-aware batching)",
    "naive": "naive baseline (one ORT call per request)",
    "http-ceiling": "HTTP ceiling (service, inference skipped)",
}
MACHINE_NAME = "2-core CPU dev machine"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- servers -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def server_command(
    kind: str, repository: Path, port: int, extra: Sequence[str] = (), provider: str = "cpu"
) -> list[str]:
    common = ["--model-repository", str(repository), "--port", str(port)]
    service_flags = ["--provider", provider, "--log-format", "text", "--log-level", "warning"]
    service_flags += extra
    if kind == "service":
        return [sys.executable, "-m", "service", *common, *service_flags]
    if kind == "http-ceiling":
        return [sys.executable, "-m", "bench.http_ceiling", *common, *service_flags]
    if kind == "naive":
        return [sys.executable, "-m", "bench.naive_server", *common, "--provider", provider]
    raise ValueError(f"unknown server {kind!r}")


class RunningServer:
    """A server process on a free port; ``cpu_s()`` reads its CPU time from /proc."""

    def __init__(
        self,
        kind: str,
        repository: Path,
        extra_flags: Sequence[str] = (),
        ready_timeout_s: float = 300.0,
        provider: str = "cpu",
    ) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            "w+", prefix=f"bench-{kind}-", suffix=".log", delete=False
        )
        started = time.monotonic()
        self.process = subprocess.Popen(
            server_command(kind, repository, self.port, extra_flags, provider),
            cwd=ROOT,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        while not _ready(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(f"{kind} server exited early:\n{self.log_tail()}")
            if time.monotonic() - started > ready_timeout_s:
                self.stop()
                raise RuntimeError(f"{kind} server not ready in {ready_timeout_s:g} s")
            time.sleep(0.1)  # polling readiness, bounded by the timeout
        self.startup_s = time.monotonic() - started

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the server process so far (Linux only)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, chars: int = 2000) -> str:
        self.log_file.flush()
        return Path(self.log_file.name).read_text(errors="replace")[-chars:]

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log_file.close()
        Path(self.log_file.name).unlink(missing_ok=True)
        return self.process.returncode


@contextmanager
def running_server(
    kind: str, repository: Path, extra_flags: Sequence[str] = (), provider: str = "cpu"
) -> Iterator[RunningServer]:
    server = RunningServer(kind, repository, extra_flags, provider=provider)
    try:
        yield server
    finally:
        server.stop()


# -- load --------------------------------------------------------------------------------------
def load_server(
    server: RunningServer,
    args: argparse.Namespace,
    features: int,
    model_file: Path | None,
) -> list[dict[str, Any]]:
    """Every protocol at every concurrency against one server; one summary per point."""
    points = []
    info = fetch_model_info(server.url, args.model)
    for protocol in args.protocols:
        spec = PoolSpec(
            protocol=protocol,
            model=args.model,
            features=features,
            lengths=args.lengths,
            sequences_per_request=parse_int_distribution("1"),
            size=args.pool,
            seed=args.seed,
        )
        config = ClientConfig(server.url, spec, timeout_s=60.0, samples_per_phase=args.verify)
        with LoadGenerator(config, args.processes) as generator:
            samples = []
            if args.server_warmup > 0 and protocol == args.protocols[0]:
                # A fresh server's first seconds are slower (allocations for new shapes):
                # keep them out of its first point.
                generator.run(Phase("closed", concurrency=16, duration_s=args.server_warmup))
            for concurrency in args.concurrency:
                phase = Phase(
                    "closed",
                    concurrency=concurrency,
                    duration_s=args.seconds,
                    warmup_s=args.warmup,
                )
                cpu_before: list[float | None] = [None]
                machine = MachineCpu()

                def read_cpu(
                    box: list[float | None] = cpu_before, meter: MachineCpu = machine
                ) -> None:
                    box[0] = server.cpu_s()
                    meter.start()

                summary, result = measure_phase(
                    generator, phase, args.model, on_measure_start=read_cpu
                )
                cpu_after, busy = server.cpu_s(), machine.busy_cores()
                elapsed = summary["elapsed_s"]
                if cpu_before[0] is not None and cpu_after is not None and elapsed > 0:
                    summary["server_cpu_cores"] = (cpu_after - cpu_before[0]) / elapsed
                if elapsed > 0:
                    summary["client_cpu_cores"] = result.client_cpu_s / elapsed
                if busy is not None and "server_cpu_cores" in summary:
                    summary["machine_cpu_cores"] = busy
                    summary["other_cpu_cores"] = max(
                        0.0, busy - summary["server_cpu_cores"] - summary["client_cpu_cores"]
                    )
                order = np.argsort(result.sent, kind="stable")
                summary["_arrival_pool_index"] = result.pool_index[order]
                summary.update(server=summary.get("server"), protocol=protocol, kind=server.kind)
                samples.extend(result.samples)
                points.append(summary)
                log(_point_line(summary))
            check_file = model_file if server.kind != "http-ceiling" else None
            verification = verify_samples(samples, spec, info, check_file)
            for point in points[-len(args.concurrency) :]:
                point["verification"] = {
                    k: verification[k]
                    for k in ("checked_responses", "passed", "max_abs_error_vs_ort", "failures")
                }
            if not verification["passed"]:
                log(f"  VERIFICATION FAILED for {server.kind} {protocol}: {verification}")
    return points


def _point_line(p: dict[str, Any]) -> str:
    lat, server = p["latency_ms"], p.get("server") or {}
    batch = server.get("mean_batch_size")
    extra = f"  batch {batch:.1f} pad {server['padding_efficiency']:.3f}" if batch else ""
    return (
        f"  {p['kind']:<12} {p['protocol']:<9} c={p['concurrency']:<3} "
        f"{p['sequences_per_s']:8.1f} seq/s  p50 {lat['p50'] or 0:7.2f} ms  "
        f"p99 {lat['p99'] or 0:7.2f} ms  failed {p['failed']}{extra}"
    )


# -- padding: the batcher vs first-come batching -------------------------------------------------
def fcfs_padding_efficiency(lengths: Sequence[int], batch_size: int) -> float:
    """Real / padded steps when ``lengths`` (arrival order) are cut into consecutive batches."""
    batch_size = max(1, int(batch_size))
    real = padded = 0
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start : start + batch_size]
        real += sum(chunk)
        padded += len(chunk) * max(chunk)
    return real / padded if padded else 1.0


def padding_comparison(
    points: list[dict[str, Any]], args: argparse.Namespace, features: int
) -> list[dict[str, Any]]:
    """For each service point: the batcher's padding efficiency vs FCFS batches of the same
    arrival stream (the requests in the order they were sent) at the same mean batch size."""
    rows = []
    pools: dict[str, list[int]] = {}
    for point in points:
        server = point.get("server") or {}
        if point["kind"] != "service" or not server.get("mean_batch_size"):
            continue
        protocol = point["protocol"]
        if protocol not in pools:
            spec = PoolSpec(
                protocol, args.model, features, args.lengths, parse_int_distribution("1"),
                args.pool, args.seed,
            )  # fmt: skip
            pools[protocol] = [len(r[0]) for r in pool_sequences(spec)]
        stream = [pools[protocol][int(k)] for k in point["_arrival_pool_index"]]
        size = server["mean_batch_size"]
        rows.append(
            {
                "protocol": protocol,
                "concurrency": point["concurrency"],
                "mean_batch_size": size,
                "batcher_padding_efficiency": server["padding_efficiency"],
                "fcfs_same_batch_size": fcfs_padding_efficiency(stream, round(size)),
                "fcfs_batch_64": fcfs_padding_efficiency(stream, 64),
            }
        )
    return rows


# -- ratios, targets, where the time goes --------------------------------------------------------
def _find(points: list[dict[str, Any]], kind: str, protocol: str, c: int) -> dict | None:
    for p in points:
        if p["kind"] == kind and p["protocol"] == protocol and p["concurrency"] == c:
            return p
    return None


def ratios(points: list[dict[str, Any]], ceilings: dict[str, Any] | None) -> list[dict]:
    rows = []
    best = ceilings["ort_best_seq_per_s"] if ceilings else None
    formed = list((ceilings or {}).get("ort_at_batcher_batches", {}).values())
    for p in points:
        if p["kind"] != "service":
            continue
        row: dict[str, Any] = {
            "protocol": p["protocol"],
            "concurrency": p["concurrency"],
            "service_seq_per_s": p["sequences_per_s"],
        }
        naive = _find(points, "naive", p["protocol"], p["concurrency"])
        http = _find(points, "http-ceiling", p["protocol"], p["concurrency"])
        if naive and naive["sequences_per_s"]:
            row["vs_naive"] = p["sequences_per_s"] / naive["sequences_per_s"]
        if http and http["sequences_per_s"]:
            row["vs_http_ceiling"] = p["sequences_per_s"] / http["sequences_per_s"]
        if best:
            row["vs_ort_ceiling"] = p["sequences_per_s"] / best
        if formed:
            row["vs_ort_at_batcher_batches"] = p["sequences_per_s"] / formed[0]
        rows.append(row)
    return rows


def time_breakdown(point: dict[str, Any]) -> dict[str, Any] | None:
    """Mean milliseconds per request: outside the server (client, TCP, uvicorn's HTTP parsing),
    and inside it: queue wait, batch compute, and the rest (body read, decode, validation,
    result assembly, encoding, event-loop scheduling)."""
    server = point.get("server") or {}
    inside = (server.get("request_latency_ms") or {}).get("mean")
    if inside is None:
        return None
    queue = (server.get("queue_wait_ms") or {}).get("mean") or 0.0
    compute = (server.get("batch_compute_ms") or {}).get("mean") or 0.0
    client = point["latency_ms"]["mean"] or 0.0
    requests = max(1, point["ok"])
    server_cpu = point.get("server_cpu_cores")
    return {
        "client_latency_ms": client,
        "outside_server_ms": client - inside,
        "in_server_ms": inside,
        "queue_wait_ms": queue,
        "batch_compute_ms": compute,
        "rest_in_server_ms": inside - queue - compute,
        "server_cpu_ms_per_request": (
            1000 * server_cpu * point["elapsed_s"] / requests if server_cpu is not None else None
        ),
        "client_cpu_ms_per_request": 1000 * point["client_cpu_s"] / requests,
        "compute_busy": server.get("compute_busy"),
    }


def targets(
    points: list[dict[str, Any]],
    ceilings: dict[str, Any] | None,
    padding: list[dict[str, Any]],
    top: int,
) -> list[dict[str, Any]]:
    out = []
    service = _find(points, "service", "v2-binary", top)
    naive = _find(points, "naive", "v2-binary", top)
    if service and ceilings:
        value = service["sequences_per_s"] / ceilings["ort_best_seq_per_s"]
        out.append(
            {"target": f"service v2-binary c={top} >= 70% of the in-process ORT ceiling",
             "value": value, "met": value >= 0.70}
        )  # fmt: skip
    if service and naive and naive["sequences_per_s"]:
        value = service["sequences_per_s"] / naive["sequences_per_s"]
        out.append(
            {"target": f"service v2-binary c={top} >= 3x the naive baseline",
             "value": value, "met": value >= 3.0}
        )  # fmt: skip
    pad = [r for r in padding if r["protocol"] == "v2-binary" and r["concurrency"] == top]
    if pad:
        value = pad[0]["batcher_padding_efficiency"]
        out.append(
            {"target": f"padding efficiency >= 0.85 at c={top}", "value": value,
             "met": value >= 0.85}
        )  # fmt: skip
    single = _find(points, "service", "v2-binary", 1)
    if single and ceilings:
        value = single["latency_ms"]["p50"] - ceilings["single_sequence"]["median_ms"]
        out.append(
            {"target": "c=1 p50 latency within a few ms (<= 3 ms) of in-process single-sequence",
             "value": value, "met": value <= 3.0}
        )  # fmt: skip
    return out


# -- report ------------------------------------------------------------------------------------
def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# {'GPU' if report.get('provider') == 'cuda' else 'CPU'} benchmark, "
        f"{report['date']} — {m['name']}",
        "",
        f"{m['cpu_model']}, {m['cores']} cores; Python {m['python']}, onnxruntime "
        f"{m['onnxruntime']}; model `{report['model']}`, lengths {report['lengths']}, one "
        f"sequence per request; {report['seconds']:g} s per point after "
        f"{report['warmup_s']:g} s of warm-up, {report['client_processes']} client process(es) on "
        "the same machine (the load client competes with the server for the same cores).",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    ceilings = report.get("ceilings")
    if ceilings:
        columns = [k for k in ceilings["rows"][0] if k.endswith("_seq_per_s")]
        lines += [
            "## In-process ceiling (sequences/s)",
            "",
            "| batch | order | padding eff. | " + " | ".join(c.removesuffix("_seq_per_s")
                                                            for c in columns) + " |",
            "|---|---|---|" + "---|" * len(columns),
        ]  # fmt: skip
        for row in ceilings["rows"]:
            lines.append(
                f"| {row['batch']} | {row['order']} | {row['padding_efficiency']:.3f} | "
                + " | ".join(_f(row[c], 0) for c in columns)
                + " |"
            )
        single = ceilings["single_sequence"]
        lines += [
            "",
            f"`ort_{ceilings['parallel_runs']}x1`: {ceilings['parallel_runs']} runs in parallel, "
            f"1 intra-op thread each (the service's CPU configuration); `ort_1x{ceilings['cores']}`"
            f": one run at a time on {ceilings['cores']} threads. Best ORT: "
            f"**{_f(ceilings['ort_best_seq_per_s'], 0)} seq/s** (batch "
            f"{ceilings['ort_best_at']['batch']}, {ceilings['ort_best_at']['order']}). One "
            f"sequence alone, one thread: median {single['median_ms']:.2f} ms per run. Other "
            f"processes used {_f(ceilings.get('other_cpu_cores'), 2)} cores meanwhile.",
            "",
        ]
    lines += [
        "## Servers under closed-loop load",
        "",
        "| server | protocol | clients | req/s | seq/s | p50 ms | p99 ms | failed | batch | "
        "pad. eff. | server CPU | client CPU | other CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in report["points"]:
        server, lat = p.get("server") or {}, p["latency_ms"]
        lines.append(
            f"| {p['kind']} | {p['protocol']} | {p['concurrency']} | "
            f"{_f(p['requests_per_s'])} | {_f(p['sequences_per_s'])} | {_f(lat['p50'], 2)} | "
            f"{_f(lat['p99'], 2)} | {p['failed']} | {_f(server.get('mean_batch_size'), 2)} | "
            f"{_f(server.get('padding_efficiency'), 3)} | {_f(p.get('server_cpu_cores'), 2)} | "
            f"{_f(p.get('client_cpu_cores'), 2)} | {_f(p.get('other_cpu_cores'), 2)} |"
        )
    lines += [
        "",
        "server / client / other CPU: cores used on average (CPU seconds per wall second) by "
        "the server process, by the load client, and by everything else on the machine (from "
        "/proc/stat; more than ~0.1 means the machine was not quiet and the point is suspect).",
        "",
        "## Ratios (sequences/s)",
        "",
        "| protocol | clients | service seq/s | / naive baseline | / HTTP ceiling | "
        "/ best ORT | / ORT on the batcher's batches |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["ratios"]:
        lines.append(
            f"| {r['protocol']} | {r['concurrency']} | {_f(r['service_seq_per_s'])} | "
            f"{_f(r.get('vs_naive'), 2)}x | {_f(r.get('vs_http_ceiling'), 2)} | "
            f"{_f(r.get('vs_ort_ceiling'), 2)} | {_f(r.get('vs_ort_at_batcher_batches'), 2)} |"
        )
    if report["padding"]:
        lines += [
            "",
            "## Padding efficiency: the batcher vs first-come batching of the same arrivals",
            "",
            "| protocol | clients | mean batch | batcher | FCFS, same batch size | FCFS, 64 |",
            "|---|---|---|---|---|---|",
        ]
        for r in report["padding"]:
            lines.append(
                f"| {r['protocol']} | {r['concurrency']} | {r['mean_batch_size']:.2f} | "
                f"{r['batcher_padding_efficiency']:.3f} | {r['fcfs_same_batch_size']:.3f} | "
                f"{r['fcfs_batch_64']:.3f} |"
            )
    if report["breakdown"]:
        lines += [
            "",
            "## Where the time goes (service, mean ms per request)",
            "",
            "| protocol | clients | client latency | outside server | in server | queue wait | "
            "batch compute | rest in server | server CPU/req | client CPU/req | compute busy |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for b in report["breakdown"]:
            lines.append(
                f"| {b['protocol']} | {b['concurrency']} | {_f(b['client_latency_ms'], 2)} | "
                f"{_f(b['outside_server_ms'], 2)} | {_f(b['in_server_ms'], 2)} | "
                f"{_f(b['queue_wait_ms'], 2)} | {_f(b['batch_compute_ms'], 2)} | "
                f"{_f(b['rest_in_server_ms'], 2)} | {_f(b['server_cpu_ms_per_request'], 2)} | "
                f"{_f(b['client_cpu_ms_per_request'], 2)} | {_f(b['compute_busy'], 2)} |"
            )
        lines += [
            "",
            "in server: from the handler's start to its return (`lstm_request_latency_seconds`); "
            "batch compute: the mean time of the batch a request's sequence ran in (pad, ORT, "
            "split); rest: body read, decoding, validation, result assembly and encoding, and "
            "waiting for the event loop; outside: client, TCP and uvicorn's HTTP parsing. "
            "compute busy: batches running at once on average.",
        ]
    if report["targets"]:
        lines += ["", "## Targets", ""]
        for t in report["targets"]:
            lines.append(
                f"- {t['target']}: **{t['value']:.2f}** — {'met' if t['met'] else 'MISSED'}"
            )
    lines.append("")
    return "\n".join(lines)


def _gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"
    return f"{out.strip().splitlines()[0]} ({os.cpu_count()} CPU cores)"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64]
    )
    parser.add_argument(
        "--protocols", type=lambda s: s.split(","), default=list(PROTOCOLS), help="comma list"
    )
    parser.add_argument(
        "--servers", type=lambda s: s.split(","), default=list(SERVERS), help="comma list"
    )
    parser.add_argument(
        "--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64, 256]
    )
    parser.add_argument("--ceiling-seconds", type=float, default=1.5, help="per ceiling cell")
    parser.add_argument("--sample", type=int, default=1024, help="sequences in the ceiling sample")
    parser.add_argument("--lengths", type=parse_int_distribution, default="10:200")
    parser.add_argument("--processes", type=int, default=1, help="load client processes")
    parser.add_argument("--pool", type=int, default=512, help="distinct requests per protocol")
    parser.add_argument("--verify", type=int, default=10, help="responses checked per point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ceiling", action="store_true", help="skip the in-process ceiling")
    parser.add_argument("--no-torch", action="store_true", help="skip torch eager")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
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
        "'--concurrent-batches 3 --padding-efficiency-target 0.95'",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if isinstance(args.lengths, str):
        args.lengths = parse_int_distribution(args.lengths)
    if args.quick:
        args.seconds, args.warmup = min(args.seconds, 2.0), min(args.warmup, 0.5)
        args.server_warmup = min(args.server_warmup, 1.0)
        args.ceiling_seconds, args.sample = min(args.ceiling_seconds, 0.5), min(args.sample, 512)
    unknown = set(args.servers) - set(SERVERS) or set(args.protocols) - set(PROTOCOLS)
    if unknown:
        log(f"unknown servers or protocols: {sorted(unknown)}")
        return 2
    repository = args.repository.resolve()
    model_file = repository / args.model / "1" / "model.onnx"
    versions = sorted((p for p in (repository / args.model).glob("*/model.onnx")), key=str)
    if versions:
        model_file = max(versions, key=lambda p: int(p.parent.name))
    if not model_file.is_file():
        log(f"{model_file} not found: run `python -m export.defaults` first")
        return 2
    checkpoint = args.checkpoint or ROOT / "artifacts" / "checkpoints" / f"{args.model}.pt"
    if args.no_torch or not checkpoint.is_file():
        if not args.no_torch:
            log(f"no checkpoint at {checkpoint}: torch eager skipped")
        checkpoint = None
    started = time.monotonic()
    load_at_start = load_average()
    import onnxruntime as ort

    session = ort_session(model_file, 1)
    features = int(session.get_inputs()[0].shape[2])
    del session
    cores = os.cpu_count() or 1
    ceilings = None
    if not args.no_ceiling:
        log(f"in-process ceiling ({model_file}):")
        ceilings = measure_ceilings(
            model_file, checkpoint, features, args.batch_sizes, args.sample,
            args.lengths.low, args.lengths.high, args.ceiling_seconds,
            parallel=max(1, min(4, cores)), log=log, batcher_waiting=args.concurrency[-1:],
            provider=args.provider,
        )  # fmt: skip
    points: list[dict[str, Any]] = []
    servers_info = {}
    for kind in args.servers:
        log(f"{SERVER_LABELS[kind]}:")
        flags = shlex.split(args.service_flags)
        with running_server(kind, repository, flags, args.provider) as server:
            servers_info[kind] = {"startup_s": server.startup_s, "label": SERVER_LABELS[kind]}
            points += load_server(server, args, features, model_file)
    padding = padding_comparison(points, args, features)
    top = max(args.concurrency)
    breakdown = []
    for p in points:
        if p["kind"] == "service":
            b = time_breakdown(p)
            if b:
                breakdown.append({"protocol": p["protocol"], "concurrency": p["concurrency"], **b})
    today = dt.date.today().isoformat()
    report: dict[str, Any] = {
        "date": today,
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "name": _gpu_name()
            if args.provider == "cuda"
            else (MACHINE_NAME if cores == 2 else f"{cores}-core CPU machine"),
            "cpu_model": _cpu_model(),
            "cores": cores,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
        },
        "provider": args.provider,
        "model": args.model,
        "model_file": str(model_file),
        "lengths": str(args.lengths),
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "client_processes": args.processes,
        "servers": servers_info,
        "ceilings": ceilings,
        "points": [{k: v for k, v in p.items() if not k.startswith("_")} for p in points],
        "ratios": ratios(points, ceilings),
        "padding": padding,
        "breakdown": breakdown,
        "targets": targets(points, ceilings, padding, top),
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_average(),
        "wall_s": None,
    }
    report["wall_s"] = time.monotonic() - started
    text = markdown(report)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    kind = "gpu" if args.provider == "cuda" else "cpu"
    stem = args.out_dir / (f"{kind}-{today}" + (f"-{args.tag}" if args.tag else ""))
    Path(f"{stem}.json").write_text(json.dumps(report, indent=1, default=_jsonable))
    Path(f"{stem}.md").write_text(text)
    print(text)
    log(f"wrote {stem}.json and {stem}.md in {report['wall_s']:.0f} s")
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


if __name__ == "__main__":
    raise SystemExit(main())
