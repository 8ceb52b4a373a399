"""The precision case of ``python -m bench`` (``--precisions fp32,int8`` on the CPU,
``fp32,fp16`` on a GPU): each variant of the model (``contract.precision.variant_name``: ``bilstm``,
``bilstm_int8``, ``bilstm_fp16``) measured the same ways in one run, its test accuracy beside.

* in process: ONNX Runtime on the same sample as the ceiling (``bench.ceiling``), cut at each batch
  size in arrival and length-sorted order, with as many runs in parallel as the service runs;
* the service: one server over the repository, the same closed-loop load against each variant in
  turn, at the highest concurrency of the run.

Each variant runs where it is served (``contract.precision.SERVED_ON``: int8 on the CPU even on a
GPU server). Its test accuracy is the one its export measured (metadata ``accuracy``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from bench.ceiling import ORDERS, cut, ort_throughput, sample_sequences
from bench.load import LoadPlan, load_server
from bench.markdown import fmt
from bench.records import PrecisionCase, PrecisionRow
from bench.servers import running_server, served_model_file
from contract.precision import SERVED_ON, precision_of, variant_name
from contract.sessions import create_session

log = logging.getLogger(__name__)


def measure_precisions(
    repository: Path,
    plan: LoadPlan,
    precisions: Sequence[str],
    features: int,
    *,
    batch_sizes: Sequence[int],
    sample: int,
    low: int,
    high: int,
    seconds: float,
    parallel: int,
    service_flags: Sequence[str],
    provider: str,
) -> PrecisionCase:
    """The rows of the variants of ``plan.model`` named by ``precisions`` that the repository
    holds (a missing one is logged and left out)."""
    sequences = sample_sequences(sample, features, low, high)
    found: list[tuple[str, str, Path]] = []
    for precision in precisions:
        name = variant_name(plan.model, precision)
        path = served_model_file(repository, name)
        if path is None:
            log.warning("%s is not in %s: its precision row is left out", name, repository)
            continue
        found.append((precision, name, path))
    rows: list[PrecisionRow] = []
    for precision, name, path in found:
        runs_on = provider if provider in SERVED_ON[precision] else SERVED_ON[precision][0]
        session, ort_provider = create_session(path, runs_on, 1)  # type: ignore[arg-type]
        metadata = session.get_modelmeta().custom_metadata_map
        if precision_of(metadata) != precision:
            raise ValueError(f"{name} says precision {precision_of(metadata)}, not {precision}")
        accuracy = json.loads(metadata.get("accuracy", "{}")).get(precision)
        cells = {}
        for batch_size in batch_sizes:
            for order in ORDERS:
                batches = cut(sequences, batch_size, order)
                rate = ort_throughput(session, batches, parallel, seconds)["seq_per_s"]
                cells[f"{batch_size} {order}"] = rate
        rows.append(PrecisionRow(precision, name, ort_provider, accuracy, cells, None, None))
        log.info(row_line(rows[-1]))
    concurrency = max(plan.concurrency)
    with running_server("service", repository, service_flags, provider) as server:
        for row, (_, name, path) in zip(rows, found, strict=True):
            variant_plan = dataclasses.replace(plan, model=name, concurrency=(concurrency,))
            (point,) = load_server(server, variant_plan, features, path)
            row.service_seq_per_s = point.sequences_per_s
            row.service_p99_ms = point.client["latency_ms"]["p99"]
            log.info("  service serving %s: %.0f seq/s", name, point.sequences_per_s)
    return PrecisionCase(plan.protocols[0], concurrency, parallel, rows)


def row_line(row: PrecisionRow) -> str:
    """One line of progress for a row's in-process figures."""
    cells = "  ".join(f"{cell} {rate:,.0f}" for cell, rate in row.in_process_seq_per_s.items())
    return f"  {row.precision:<5} {row.model} (accuracy {fmt(row.test_accuracy, 4)}): {cells}"
