"""The multi-frontend case of ``python -m bench`` (``--frontends 1,2,4``): whether N HTTP
frontends feeding one engine form the batches one process forms.

For each N it starts the service with ``--workers N --engine separate`` (N frontend processes,
one engine process: the docs/serving.md's "Process model") and measures, over one protocol,

* a closed loop at the run's highest concurrency: throughput, p50/p99, the engine's mean batch
  size and padding efficiency (``/metrics``), errors, the CPU of every server process;
* an open loop at one offered rate shared by every open-loop row (``rate``, or by default
  ``RATE_SHARE`` of the first row's closed-loop throughput), so that mean batch sizes compare
  at the same offered load.

Then, at that rate, two reference rows: the service in one process (``--workers 1 --engine
in-process``) and the old model, ``--engine in-process --workers N`` for the largest N, whose
N batchers split the traffic N ways. ``bench.analysis.frontend_batch_ratios`` puts each
open-loop row's mean batch over the one-process row's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.analysis import frontend_batch_ratios
from bench.load import LoadPlan, measured_phase
from bench.markdown import fmt
from bench.records import FrontendRow, FrontendsCase
from bench.servers import RunningServer, running_server
from loadtest.engine import ClientConfig, LoadGenerator, Phase

log = logging.getLogger(__name__)

RATE_SHARE = 0.8
"""The shared open-loop rate, as a share of the first row's closed-loop requests/s: high enough
that one process forms batches of more than one sequence (at half its capacity, hardly any on
the CPU), low enough that every process model keeps up with it."""


@dataclass(frozen=True)
class ProcessModel:
    """How the service is started: ``frontends`` HTTP processes, the models in one engine
    process (``separate``) or in each worker (``in-process``)."""

    label: str
    frontends: int
    engine: str

    @property
    def flags(self) -> list[str]:
        return ["--workers", str(self.frontends), "--engine", self.engine]


def process_models(counts: Sequence[int]) -> list[ProcessModel]:
    """N frontends + one engine for each of ``counts``, then one process, then the old model
    (each worker its own batcher) at the largest count when it is above 1."""
    layouts = [
        ProcessModel(f"{n} frontend{'s' if n > 1 else ''} + engine", n, "separate") for n in counts
    ]
    layouts.append(ProcessModel("one process", 1, "in-process"))
    if (top := max(counts)) > 1:
        layouts.append(ProcessModel(f"{top} workers, in-process (old)", top, "in-process"))
    return layouts


def measure_frontends(
    repository: Path,
    plan: LoadPlan,
    counts: Sequence[int],
    features: int,
    service_flags: Sequence[str] = (),
    provider: str = "cpu",
    rate: float | None = None,
) -> FrontendsCase:
    """The case's rows (see the module's docstring) over ``plan.protocols[0]``, closed loop at
    ``plan.concurrency[-1]`` clients, each phase ``plan.seconds`` after ``plan.warmup_s``."""
    if not counts:
        raise ValueError("the multi-frontend case needs at least one frontend count")
    protocol, concurrency = plan.protocols[0], plan.concurrency[-1]
    spec = plan.pool_spec(protocol, features)
    source = "--frontend-rate" if rate else f"{RATE_SHARE:g} x the first row's closed loop"
    rows: list[FrontendRow] = []
    for layout in process_models(counts):
        log.info("%s:", layout.label)
        flags = [*service_flags, *layout.flags]
        with running_server("service", repository, flags, provider) as server:
            config = ClientConfig(server.url, spec, timeout_s=60.0, samples_per_phase=0)
            with LoadGenerator(config, plan.processes) as generator:
                if plan.server_warmup_s > 0:
                    generator.run(Phase("closed", concurrency=16, duration_s=plan.server_warmup_s))
                if layout.engine == "separate":
                    closed = Phase(
                        "closed", concurrency=concurrency, duration_s=plan.seconds,
                        warmup_s=plan.warmup_s,
                    )  # fmt: skip
                    rows.append(_row(layout, generator, server, closed, plan.model))
                # The first row is a closed loop: the shared rate is known from here on.
                rate = rate or max(1.0, RATE_SHARE * rows[0].requests_per_s)
                opened = Phase("open", rate=rate, duration_s=plan.seconds, warmup_s=plan.warmup_s)
                rows.append(_row(layout, generator, server, opened, plan.model))
    assert rate is not None
    return FrontendsCase(protocol, concurrency, rate, source, frontend_batch_ratios(rows))


def _row(
    layout: ProcessModel,
    generator: LoadGenerator,
    server: RunningServer,
    phase: Phase,
    model_name: str,
) -> FrontendRow:
    summary, _, cpu = measured_phase(generator, server, phase, model_name)
    row = FrontendRow(
        label=layout.label,
        frontends=layout.frontends,
        engine=layout.engine,
        mode=phase.mode,
        concurrency=phase.concurrency if phase.mode == "closed" else None,
        offered_rate=phase.rate if phase.mode == "open" else None,
        client=summary,
        cpu=cpu,
    )
    log.info(row_line(row))
    return row


def row_line(row: FrontendRow) -> str:
    """One line of progress for a row."""
    load = f"c={row.concurrency}" if row.mode == "closed" else f"{row.offered_rate:.0f} req/s"
    lat = row.latency_ms
    return (
        f"  {row.label:<32} {load:<12} {row.requests_per_s:8.1f} req/s  "
        f"p50 {fmt(lat['p50'], 2)} ms  p99 {fmt(lat['p99'], 2)} ms  "
        f"failed {row.client['failed']}  batch {fmt(row.mean_batch_size, 2)}"
    )
