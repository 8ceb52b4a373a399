"""Machine-wide CPU use from ``/proc/stat`` (Linux): how busy all cores were between two reads.

On a shared 2-core machine a benchmark must show what else ran: ``other = machine - server -
load client`` per point says whether a figure was measured on a quiet machine.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def _busy_and_total() -> tuple[int, int] | None:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return total - idle, total


class MachineCpu:
    """``start()``, then ``busy_cores()``: mean busy cores since ``start`` (None off Linux)."""

    def __init__(self) -> None:
        self._start: tuple[int, int] | None = None
        self._process_start = 0.0

    def start(self) -> None:
        self._start = _busy_and_total()
        self._process_start = time.process_time()

    def busy_cores(self) -> float | None:
        now = _busy_and_total()
        if self._start is None or now is None or now[1] <= self._start[1]:
            return None
        busy, total = now[0] - self._start[0], now[1] - self._start[1]
        return (os.cpu_count() or 1) * busy / total

    def own_cores(self, elapsed_s: float) -> float:
        """This process's CPU seconds per wall second since ``start``."""
        return (time.process_time() - self._process_start) / elapsed_s if elapsed_s > 0 else 0.0


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None
