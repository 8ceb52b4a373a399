"""PNG plots for people: the latency distribution of a run, and a sweep's throughput and p99
against concurrency. Needs matplotlib (``pip install -e ".[loadtest]"``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            'plots need matplotlib: pip install -e ".[loadtest]" (or pass --no-plots)'
        ) from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, figure: Any, title: str, path: Path) -> Path:
    """Title ``figure``, write it to ``path`` (creating its folder) and close it."""
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def latency_plot(latencies_s: np.ndarray, title: str, path: Path) -> Path:
    """Histogram of successful-request latencies with p50/p90/p99 marked, and their CDF."""
    plt = _pyplot()
    ms = np.sort(np.asarray(latencies_s, dtype=np.float64) * 1000.0)
    figure, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4.2))
    if ms.size:
        low, high = max(ms[0], 1e-3), max(ms[-1], ms[0] * 1.01, 1e-3 * 1.01)
        bins = np.geomspace(low, high, 60) if high / low > 20 else 60
        hist.hist(ms, bins=bins, color="#4878d0", edgecolor="white", linewidth=0.3)
        if not isinstance(bins, int):
            hist.set_xscale("log")
        for q, colour in ((50, "#2a9d4b"), (90, "#e0a100"), (99, "#d1495b")):
            value = float(np.percentile(ms, q))
            hist.axvline(value, color=colour, linestyle="--", label=f"p{q} {value:.1f} ms")
        hist.legend(loc="upper right", fontsize=8)
        cdf.plot(ms, np.arange(1, ms.size + 1) / ms.size, color="#4878d0")
        cdf.set_xscale("log")
    else:
        hist.text(0.5, 0.5, "no successful requests", ha="center", transform=hist.transAxes)
    hist.set_xlabel("latency (ms)")
    hist.set_ylabel("requests")
    hist.set_title("latency distribution")
    cdf.set_xlabel("latency (ms)")
    cdf.set_ylabel("fraction of requests at or below")
    cdf.set_title(f"CDF ({ms.size} requests)")
    cdf.grid(True, which="both", alpha=0.3)
    return _save(plt, figure, title, path)


def sweep_plot(levels: Sequence[dict[str, Any]], title: str, path: Path) -> Path:
    """Throughput (requests/s and sequences/s) and p50/p99 latency against concurrency.

    ``levels``: one summary per concurrency level, each with ``concurrency``,
    ``requests_per_s``, ``sequences_per_s`` and ``latency_ms`` (``p50``, ``p99``).
    """
    plt = _pyplot()
    concurrency = [level["concurrency"] for level in levels]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(concurrency, [lv["requests_per_s"] for lv in levels], "o-", label="requests/s")
    left.plot(concurrency, [lv["sequences_per_s"] for lv in levels], "s--", label="sequences/s")
    left.set_xlabel("concurrent clients")
    left.set_ylabel("throughput (per second)")
    left.set_title("throughput")
    left.legend(fontsize=8)
    for key, style in (("p50", "o-"), ("p99", "s-")):
        values = [lv["latency_ms"].get(key) for lv in levels]
        right.plot(concurrency, [np.nan if v is None else v for v in values], style, label=key)
    right.set_xlabel("concurrent clients")
    right.set_ylabel("latency (ms)")
    right.set_title("latency")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(concurrency, [str(c) for c in concurrency])
        axis.grid(True, alpha=0.3)
        axis.set_ylim(bottom=0)
    return _save(plt, figure, title, path)
