"""The in-process compute ceiling: ONNX Runtime (and torch eager, for comparison) on the same
batches of a fixed sample of sequences, with no HTTP, no queue and no copies but padding.

Shapes: a sample of ``N`` sequences ``(L_i, F)``; a batch ``(B, T, F)`` zero padded to its
longest ``T``. Batches are cut in three ways:

* ``arrival``: consecutive sequences of the sample (what first-come batching would run);
* ``sorted``: the sample sorted by length, then cut (what length-aware batching aims at);
* ``batcher``: as the service's batching policy (``service.engine.loading.batch_policy``)
  cuts them with a given number of sequences waiting.

ORT runs in the service's CPU configuration: one session, one intra-op thread per run, and as
many runs in parallel as the service runs batches (``ort_{P}x1``), and also as one run at a
time with all cores as intra-op threads (``ort_1x{cores}``); torch eager (``torch.inference_mode``,
the checkpoint's ``LSTMClassifier``) runs like ``ort_{P}x1``. Throughputs are sequences
per second over whole passes of the sample, repeated for at least ``seconds`` after a warm-up.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.cpu import MachineCpu
from bench.records import CeilingCell, CeilingRow, Ceilings, CeilingSample, SingleSequence
from contract.providers import ProviderPreference
from contract.sessions import create_session
from padding import pad_sequences
from service.engine.batching.formation import BatchPolicy, select_batch

log = logging.getLogger(__name__)

Batch = tuple[np.ndarray, np.ndarray]  # (B, T, F) float32, (B,) int32
ORDERS = ("arrival", "sorted")


def sample_sequences(
    count: int, features: int, low: int, high: int, seed: int = 0
) -> list[np.ndarray]:
    """``count`` sequences of lengths uniform in ``[low, high]``, standard normal features."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(low, high + 1, size=count)
    return [rng.standard_normal((int(n), features), dtype=np.float32) for n in lengths]


def cut(sequences: Sequence[np.ndarray], batch_size: int, order: str) -> list[Batch]:
    """The sample as padded batches of ``batch_size``, in ``arrival`` or ``sorted`` order."""
    if order == "sorted":
        index = sorted(range(len(sequences)), key=lambda k: len(sequences[k]))
    elif order == "arrival":
        index = list(range(len(sequences)))
    else:
        raise ValueError(f"order must be 'arrival' or 'sorted', got {order!r}")
    return [
        pad_sequences([sequences[k] for k in index[start : start + batch_size]])
        for start in range(0, len(index), batch_size)
    ]


def batcher_batches(
    sequences: Sequence[np.ndarray], waiting: int, policy: BatchPolicy
) -> list[Batch]:
    """The sample as the service's batcher would cut it with ``waiting`` sequences queued:
    ``service.engine.batching.formation.select_batch`` under ``policy`` anchored on the oldest, each
    chosen sequence replaced by the next of the sample (a closed loop of ``waiting``
    clients)."""
    pending = list(range(min(waiting, len(sequences))))
    following = len(pending)
    batches = []
    while pending:
        chosen = select_batch([len(sequences[k]) for k in pending], 0, policy).indices
        batches.append(pad_sequences([sequences[pending[i]] for i in chosen]))
        taken = set(chosen)
        pending = [k for i, k in enumerate(pending) if i not in taken]
        refill = min(len(chosen), len(sequences) - following)
        pending += range(following, following + refill)
        following += refill
    return batches


def padding_efficiency(batches: Sequence[Batch]) -> float:
    real = sum(int(lengths.sum()) for _, lengths in batches)
    padded = sum(int(inputs.shape[0] * inputs.shape[1]) for inputs, _ in batches)
    return real / padded


def _throughput(
    run_pass: Callable[[], object], sequences: int, seconds: float, min_passes: int = 1
) -> dict[str, float]:
    """Warm up with one pass, then passes until ``seconds``; sequences/s (median pass)."""
    run_pass()
    rates: list[float] = []
    started = time.perf_counter()
    while len(rates) < min_passes or time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        run_pass()
        rates.append(sequences / (time.perf_counter() - begin))
    return {"seq_per_s": statistics.median(rates), "passes": len(rates)}


def ort_throughput(
    session: Any, batches: list[Batch], parallel: int, seconds: float
) -> dict[str, float]:
    """Sequences/s running ``batches`` with ``parallel`` runs at once on ``session``."""
    sequences = sum(len(lengths) for _, lengths in batches)
    shares = [batches[k::parallel] for k in range(parallel)]

    def run(share: list[Batch]) -> None:
        for inputs, lengths in share:
            session.run(["probs"], {"inputs": inputs, "lengths": lengths})

    if parallel == 1:
        return _throughput(lambda: run(batches), sequences, seconds)
    with ThreadPoolExecutor(parallel) as pool:
        return _throughput(lambda: list(pool.map(run, shares)), sequences, seconds)


def torch_throughput(
    model: Any, batches: list[Batch], parallel: int, seconds: float
) -> dict[str, float]:
    """Sequences/s of torch eager (fused ``nn.LSTM`` on packed sequences) on ``batches``, with
    ``parallel`` runs at once (torch releases the GIL inside its ops), like ORT's ``parallel``
    runs. The caller sets torch's threads (1 each: OpenMP teams of several threads stall badly
    when another process holds one of the cores)."""
    import torch

    tensors = [(torch.from_numpy(x), torch.from_numpy(n).long()) for x, n in batches]
    sequences = sum(len(n) for _, n in batches)

    def run(share: list[tuple[Any, Any]]) -> None:
        with torch.inference_mode():
            for inputs, lengths in share:
                model(inputs, lengths)

    if parallel == 1:
        return _throughput(lambda: run(tensors), sequences, seconds)
    shares = [tensors[k::parallel] for k in range(parallel)]
    with ThreadPoolExecutor(parallel) as pool:
        return _throughput(lambda: list(pool.map(run, shares)), sequences, seconds)


def single_sequence_latency_ms(
    session: Any, sequences: Sequence[np.ndarray], seconds: float
) -> SingleSequence:
    """One sequence per run, one run at a time: median and mean milliseconds per run."""
    times: list[float] = []
    started = time.perf_counter()
    k = 0
    for sequence in sequences[:8]:  # warm-up
        session.run(
            ["probs"], {"inputs": sequence[None], "lengths": np.array([len(sequence)], np.int32)}
        )
    while k < len(sequences) and (k < 64 or time.perf_counter() - started < seconds):
        sequence = sequences[k]
        inputs, lengths = sequence[None], np.array([len(sequence)], dtype=np.int32)
        begin = time.perf_counter()
        session.run(["probs"], {"inputs": inputs, "lengths": lengths})
        times.append(1000.0 * (time.perf_counter() - begin))
        k += 1
    return SingleSequence(statistics.median(times), statistics.fmean(times), k)


def _row_line(row: CeilingRow, only: str = "ort") -> str:
    rates = "  ".join(
        f"{runner} {rate:,.0f}" for runner, rate in row.seq_per_s.items() if runner.startswith(only)
    )
    where = f"  batch {row.batch!s:>4} {row.order:<8}"
    return f"{where} pad eff {row.padding_efficiency:.3f}  {rates} seq/s"


def measure_ceilings(
    model_file: Path,
    *,
    checkpoint: Path | None,
    features: int,
    batch_sizes: Sequence[int],
    sample: int,
    low: int,
    high: int,
    seconds: float,
    parallel: int,
    policy: BatchPolicy,
    batcher_waiting: Sequence[int] = (),
    provider: ProviderPreference = "cpu",
) -> Ceilings:
    """Every in-process figure: ORT parallel/threads and torch (when ``checkpoint`` is given),
    per batch size and order, and on the batches ``policy`` cuts with each of
    ``batcher_waiting`` sequences waiting; with the CPU that other processes used meanwhile."""
    meter = MachineCpu()
    meter.start()
    started = time.perf_counter()
    sequences = sample_sequences(sample, features, low, high)
    cores = os.cpu_count() or 1
    # On CUDA both get one intra-op thread, as the service's sessions do (create_session).
    one_thread = create_session(model_file, provider, 1)[0]
    all_threads = create_session(model_file, provider, cores)[0]
    cells: list[tuple[int | str, str, list[Batch]]] = [
        (b, order, cut(sequences, b, order)) for b in batch_sizes for order in ORDERS
    ]
    for waiting in batcher_waiting:
        formed = batcher_batches(sequences, waiting, policy)
        mean = sum(len(n) for _, n in formed) / len(formed)
        cells.append((f"batcher ({mean:.1f})", f"{waiting} waiting", formed))
    rows: list[CeilingRow] = []
    for batch_size, order, batches in cells:  # ORT first: torch stays unloaded meanwhile
        in_parallel = ort_throughput(one_thread, batches, parallel, seconds)
        one_at_a_time = ort_throughput(all_threads, batches, 1, seconds)
        row = CeilingRow(batch_size, order, padding_efficiency(batches))
        row.seq_per_s[f"ort_{parallel}x1"] = in_parallel["seq_per_s"]
        row.seq_per_s[f"ort_1x{cores}"] = one_at_a_time["seq_per_s"]
        rows.append(row)
        log.info(_row_line(row))
    single = single_sequence_latency_ms(one_thread, sequences, min(seconds, 2.0))
    if checkpoint is not None:
        import torch

        from models.checkpoint import load_checkpoint

        torch.set_num_threads(1)
        model, _ = load_checkpoint(checkpoint)
        for row, (_, _, batches) in zip(rows, cells, strict=True):
            row.seq_per_s[f"torch_eager_{parallel}x1"] = torch_throughput(
                model, batches, parallel, seconds
            )["seq_per_s"]
            log.info(_row_line(row, only="torch"))
    best = max(rows, key=lambda r: r.best_ort_seq_per_s)
    elapsed = time.perf_counter() - started
    busy = meter.busy_cores()
    return Ceilings(
        ort_at_batcher_batches={
            r.order: r.best_ort_seq_per_s for r in rows if str(r.batch).startswith("batcher")
        },
        other_cpu_cores=None if busy is None else max(0.0, busy - meter.own_cores(elapsed)),
        sample=CeilingSample(sample, f"U[{low},{high}]", features),
        cores=cores,
        parallel_runs=parallel,
        rows=rows,
        ort_best_seq_per_s=best.best_ort_seq_per_s,
        ort_best_at=CeilingCell(best.batch, best.order),
        single_sequence=single,
    )
