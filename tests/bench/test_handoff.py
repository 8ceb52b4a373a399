"""``bench.handoff``: the hand-off's cost per request, measured on the tiny model in one
process (an engine over the null runtime, a client to it over IPC, and the batcher straight)."""

from __future__ import annotations

import math
from pathlib import Path

from bench.handoff import measure_handoff
from service.settings import Settings


def test_the_handoff_cost_is_measured_on_both_paths(
    model_repository: Path, cpu_settings: Settings
) -> None:
    cost = measure_handoff(
        model_repository, "tiny_bi", requests=200, in_flight=16, length=20, settings=cpu_settings
    )
    assert (cost.model, cost.requests, cost.in_flight) == ("tiny_bi", 200, 16)
    assert (cost.length, cost.features) == (20, 5)  # tiny_bi's F
    figures = (cost.direct_cpu_us, cost.remote_cpu_us, cost.direct_wall_us, cost.remote_wall_us)
    assert all(math.isfinite(value) and value > 0 for value in figures)
    assert math.isfinite(cost.handoff_cpu_us)
    assert math.isclose(cost.handoff_cpu_us, cost.remote_cpu_us - cost.direct_cpu_us)
