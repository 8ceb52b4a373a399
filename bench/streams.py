"""The streaming case of ``python -m bench`` (``--streams S``): three ways to serve the same
streams, against one server in one run.

The streams are ``loadtest.streams``'s: ``S`` concurrent, each ``chunks_per_stream`` chunks of
``chunk_steps`` steps, ``think_ms`` between a stream's chunks, a new stream when one ends, for
``seconds`` per mode. A stream's frames depend only on its slot and number, so each mode sends
the same streams; the modes (``loadtest.streams.MODES``) differ in how the LSTM state goes from
one chunk to the next:

* ``server-state``: the V2 sequence parameters; the engine holds the state;
* ``client-state``: ``initial_*`` in, ``final_*`` out, fed back by the client;
* ``resend-history``: every chunk re-sends the whole stream so far; no state at all.

Each row gives chunks/s, steps/s (new steps only), p50/p99 chunk latency and request bytes per
chunk, and how far its streams' last answers are from the server-state row's (they should
agree: the same streams, the same model).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from bench.markdown import fmt
from bench.records import StreamModeRow, StreamsCase
from bench.servers import running_server
from loadtest.streams import MODES, StreamPlan, StreamRun, model_state_sizes, run_streams

log = logging.getLogger(__name__)


def measure_streams(
    repository: Path,
    model: str,
    features: int,
    streams: int,
    chunk_steps: int,
    chunks_per_stream: int,
    think_ms: float,
    seconds: float,
    service_flags: Sequence[str] = (),
    provider: str = "cpu",
    protocol: str = "v2-binary",
    seed: int = 0,
    warmup_s: float = 1.0,
) -> StreamsCase:
    """The case's rows (see the module's docstring), one server for all three modes, each
    after ``warmup_s`` of the same mode unrecorded (other streams: another seed). ``model``
    must be unidirectional (a bidirectional model cannot stream)."""
    with running_server("service", repository, service_flags, provider) as server:
        metadata = httpx.get(f"{server.url}/v2/models/{model}", timeout=10).json()
        sizes = model_state_sizes(metadata)
        if not sizes:
            raise ValueError(f"{model} has no final_c_* outputs: it cannot stream")
        runs: dict[str, StreamRun] = {}
        for mode in MODES:
            plan = StreamPlan(
                model=model,
                features=features,
                streams=streams,
                chunk_steps=chunk_steps,
                chunks_per_stream=chunks_per_stream,
                think_ms=think_ms,
                duration_s=seconds,
                mode=mode,
                protocol=protocol,
                seed=seed,
                state_sizes=sizes,
            )
            if warmup_s > 0:
                warm = dataclasses.replace(plan, duration_s=warmup_s, seed=seed + 1)
                asyncio.run(run_streams(server.url, warm))
            runs[mode] = asyncio.run(run_streams(server.url, plan))
    rows = [_row(mode, run, runs["server-state"]) for mode, run in runs.items()]
    for row in rows:
        log.info(row_line(row))
    return StreamsCase(
        model, protocol, streams, chunk_steps, chunks_per_stream, think_ms, seconds, rows
    )


def _row(mode: str, run: StreamRun, reference: StreamRun) -> StreamModeRow:
    summary = run.summary()
    diff = None
    common = set(run.final_probs) & set(reference.final_probs)
    if run is not reference and common:
        diff = max(
            float(np.max(np.abs(run.final_probs[k] - reference.final_probs[k]))) for k in common
        )
    return StreamModeRow(
        mode=mode,
        chunks_ok=summary["chunks_ok"],
        chunks_failed=summary["chunks_failed"],
        chunks_per_s=summary["chunks_per_s"],
        steps_per_s=summary["steps_per_s"],
        latency_p50_ms=summary["latency_ms"]["p50"],
        latency_p99_ms=summary["latency_ms"]["p99"],
        request_bytes_per_chunk=summary["request_bytes_per_chunk"],
        streams_finished=summary["streams_finished"],
        streams_live_max=summary["streams_live_max"],
        max_diff_vs_server_state=diff,
    )


def row_line(row: StreamModeRow) -> str:
    """One line of progress for a row."""
    return (
        f"  {row.mode:<16} {row.chunks_per_s:8.1f} chunks/s {row.steps_per_s:9.1f} steps/s  "
        f"p50 {fmt(row.latency_p50_ms, 2)} ms  p99 {fmt(row.latency_p99_ms, 2)} ms  "
        f"{fmt(row.request_bytes_per_chunk, 0)} B/chunk  failed {row.chunks_failed}"
    )
