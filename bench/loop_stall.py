"""Event-loop stalls: the latency of tiny requests while large bodies are being decoded.

    python -m bench.loop_stall                          # this checkout, ~1 min
    python -m bench.loop_stall --source /tmp/main-orig  # another checkout of the service

Starts the service (``python -m service`` run from ``--source``) on 127.0.0.1 on a free port
with a small model exported here (bidirectional LSTM [8, 8], F = 12, untrained: its compute is
cheap, so what is measured is the HTTP side), then for each phase sends tiny V2 requests (one
sequence of 10 steps) at a steady 50 per second from one client while another client, in a
thread, sends large bodies back to back:

* ``idle``: no large traffic (the baseline);
* ``large-valid``: V2 JSON ``inputs`` ``[256, 1000, 12]`` (~27 MB), answered with ``probs``;
* ``large-refused``: 32 MB of JSON zeros in a ``data`` list that does not match its shape
  (the issue's case: refused, after being decoded);
* ``large-response``: v1, 64 sequences of 1000 steps returning their per-step ``outputs``
  (~7 MB in, ~12 MB out).

Prints, per phase, p50/p99/max of the tiny requests and what the large ones got. Numbers, not
assertions: the client shares the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson

from bench.markdown import fmt, table
from bench.servers import ROOT, running_server
from loadtest.payloads import encode_v2_json, route
from loadtest.stats import percentiles

FEATURES = 12
MODEL = "stall_bi"
TINY_RATE_PER_S = 50.0


@dataclass
class StallPhase:
    """What one phase measured: the tiny requests' latencies and the large ones' outcomes."""

    name: str
    tiny_ms: list[float] = field(default_factory=list)
    tiny_errors: int = 0
    large_statuses: dict[int, int] = field(default_factory=dict)
    large_s: list[float] = field(default_factory=list)

    def row(self) -> list[str]:
        tiny = percentiles(self.tiny_ms, (50, 99, 100))
        large = (
            ", ".join(f"{n}x {status}" for status, n in sorted(self.large_statuses.items())) or "-"
        )
        mean_large = f"{np.mean(self.large_s):.2f} s" if self.large_s else "-"
        return [
            self.name,
            str(len(self.tiny_ms)),
            *(fmt(tiny[q]) for q in ("p50", "p99", "p100")),
            str(self.tiny_errors),
            large,
            mean_large,
        ]


HEADER = (
    "phase", "tiny answered", "p50 ms", "p99 ms", "max ms", "tiny errors", "large: statuses",
    "large: mean time",
)  # fmt: skip


def export_model(repository: Path) -> None:
    """A small untrained model through ``export/`` (needs torch), as the tests make theirs."""
    import torch

    from export.exporter import export_model as export
    from models.architectures import LSTMClassifier, LSTMClassifierConfig

    torch.manual_seed(0)
    config = LSTMClassifierConfig(FEATURES, (8, 8), 3, True, ("a", "b", "c"))
    export(LSTMClassifier(config), repository, MODEL, 1)


def tiny_body() -> bytes:
    return encode_v2_json([np.full((10, FEATURES), 0.5, np.float32)])[0]


def large_bodies() -> dict[str, tuple[str, bytes]]:
    """Per phase: the path and body of its large request."""
    rng = np.random.default_rng(0)
    valid, _ = encode_v2_json(list(np.round(rng.random((256, 1000, FEATURES)), 6)))
    zeros = (
        b'{"inputs": [{"name": "inputs", "shape": [1, 1000, 12], "datatype": "FP32", "data": ['
        + b",".join([b"0"] * 16_000_000)
        + b"]}]}"
    )
    sequences = np.round(rng.random((64, 1000, FEATURES)), 6)
    outputs = orjson.dumps(
        {"sequences": sequences, "return": ["outputs"]}, option=orjson.OPT_SERIALIZE_NUMPY
    )
    infer = route("v2-json", MODEL)
    return {
        "large-valid": (infer, valid),
        "large-refused": (infer, zeros),
        "large-response": (route("v1", MODEL), outputs),
    }


def send_large(url: str, path: str, body: bytes, stop: threading.Event, result: StallPhase) -> None:
    """Back to back, one at a time, until ``stop``: blocking I/O, which releases the GIL."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    headers = {"Content-Type": "application/json"}
    while not stop.is_set():
        started = time.perf_counter()
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        result.large_s.append(time.perf_counter() - started)
        result.large_statuses[response.status] = result.large_statuses.get(response.status, 0) + 1
    connection.close()


async def probe_tiny(url: str, seconds: float, result: StallPhase) -> None:
    """Tiny requests at a steady rate (open loop, so a stall delays all that arrive in it)."""
    body = tiny_body()
    path = f"{url}/v2/models/{MODEL}/infer"
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one() -> None:
            started = time.perf_counter()
            try:
                response = await client.post(path, content=body)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                result.tiny_ms.append((time.perf_counter() - started) * 1000)
            else:
                result.tiny_errors += 1

        tasks = []
        start = time.perf_counter()
        for k in range(int(seconds * TINY_RATE_PER_S)):
            delay = start + k / TINY_RATE_PER_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the arrivals, not synchronisation
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)


def run_phase(url: str, name: str, large: tuple[str, bytes] | None, seconds: float) -> StallPhase:
    result = StallPhase(name)
    stop = threading.Event()
    sender = None
    if large is not None:
        sender = threading.Thread(target=send_large, args=(url, *large, stop, result))
        sender.start()
    try:
        asyncio.run(probe_tiny(url, seconds, result))
    finally:
        stop.set()
        if sender is not None:
            sender.join(180)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loop_stall", description=__doc__)
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout to run the server from")
    parser.add_argument(
        "--model-repository", type=Path, help="default: a small model exported here"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--phases", nargs="+", help="default: all (idle and the large ones)")
    parser.add_argument("--server-flag", action="append", default=[], help="passed to the server")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="loop-stall-") as scratch:
        repository = args.model_repository
        if repository is None:
            repository = Path(scratch)
            export_model(repository)
        bodies = large_bodies()
        phases = args.phases or ["idle", *bodies]
        with running_server(
            "service",
            repository,
            args.server_flag,
            ready_timeout_s=120,
            source=args.source.resolve(),
        ) as server:
            url = server.url
            for _ in range(20):  # warm the connection path and the allocator
                urllib.request.urlopen(
                    urllib.request.Request(
                        f"{url}/v2/models/{MODEL}/infer", tiny_body(), method="POST"
                    ),
                    timeout=30,
                ).read()
            results = [run_phase(url, name, bodies.get(name), args.seconds) for name in phases]
    sizes = ", ".join(f"{name} {len(body) / 1e6:.1f} MB" for name, (_, body) in bodies.items())
    print(f"server from {args.source.resolve()}; large bodies: {sizes}")
    print(
        f"tiny requests: V2 JSON, 1 x 10 x {FEATURES}, {TINY_RATE_PER_S:g}/s for "
        f"{args.seconds:g} s per phase\n"
    )
    print("\n".join(table(HEADER, [result.row() for result in results])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
