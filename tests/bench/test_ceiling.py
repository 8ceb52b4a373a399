"""``bench.ceiling``: cutting the sample into batches, the service's batching policy from its
settings (``service.engine.loading.batch_policy``), and a whole (tiny) ceiling measurement."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ceiling import (
    batcher_batches,
    cut,
    measure_ceilings,
    padding_efficiency,
    sample_sequences,
)
from bench.records import to_json
from service.engine.loading import batch_policy
from service.settings import Settings


def test_cut_sorted_batches_pad_less_than_arrival_order() -> None:
    sequences = sample_sequences(256, 3, 10, 200, seed=1)
    arrival, ordered = cut(sequences, 16, "arrival"), cut(sequences, 16, "sorted")
    assert sum(len(n) for _, n in arrival) == sum(len(n) for _, n in ordered) == 256
    assert padding_efficiency(ordered) > 0.9 > 0.7 > padding_efficiency(arrival)
    inputs, lengths = arrival[0]
    assert inputs.shape == (16, int(lengths.max()), 3)
    assert lengths.tolist() == [len(s) for s in sequences[:16]]
    assert all(inputs[b, n:].sum() == 0 for b, n in enumerate(lengths))
    with pytest.raises(ValueError):
        cut(sequences, 4, "random")


def test_batch_policy_is_the_services_for_the_device() -> None:
    cpu, gpu = batch_policy(Settings(), on_gpu=False), batch_policy(Settings(), on_gpu=True)
    assert (cpu.max_batch_size, cpu.max_batch_tokens) == (64, 16384)
    assert cpu.padding_efficiency_target == Settings().resolved_padding_efficiency(False) == 0.85
    assert gpu.padding_efficiency_target == Settings().resolved_padding_efficiency(True) == 0.5
    tuned = Settings(padding_efficiency_target=0.95, max_batch_size=16)
    assert batch_policy(tuned, on_gpu=True).padding_efficiency_target == 0.95
    assert batch_policy(tuned, on_gpu=False).max_batch_size == 16


def test_batcher_batches_use_every_sequence_once_within_the_policy() -> None:
    sequences = sample_sequences(300, 2, 10, 200, seed=4)
    policy = batch_policy(Settings(), False)
    batches = batcher_batches(sequences, waiting=32, policy=policy)
    assert sum(len(n) for _, n in batches) == 300
    assert sorted(int(v) for _, n in batches for v in n) == sorted(len(s) for s in sequences)
    for inputs, lengths in batches:
        assert len(lengths) <= policy.max_batch_size
        assert inputs.shape[0] * inputs.shape[1] <= policy.max_batch_tokens
        if len(lengths) > 1:
            real = lengths.sum()
            assert real >= policy.padding_efficiency_target * inputs.shape[0] * inputs.shape[1]
    assert padding_efficiency(batches) > padding_efficiency(cut(sequences, 8, "arrival"))


def test_measure_ceilings_fills_every_cell(tiny_model: Path) -> None:
    ceilings = measure_ceilings(
        tiny_model, checkpoint=None, features=5, batch_sizes=[1, 8], sample=24, low=3, high=9,
        seconds=0.01, parallel=2, policy=batch_policy(Settings(), False), batcher_waiting=[8],
    )  # fmt: skip
    cells = [(row.batch, row.order) for row in ceilings.rows]
    assert cells[:4] == [(1, "arrival"), (1, "sorted"), (8, "arrival"), (8, "sorted")]
    assert str(cells[4][0]).startswith("batcher (") and cells[4][1] == "8 waiting"
    cores = ceilings.cores
    for row in ceilings.rows:
        assert set(row.seq_per_s) == {"ort_2x1", f"ort_1x{cores}"}
        assert all(rate > 0 for rate in row.seq_per_s.values())
    assert ceilings.ort_best_seq_per_s == max(r.best_ort_seq_per_s for r in ceilings.rows)
    assert (ceilings.ort_best_at.batch, ceilings.ort_best_at.order) in cells
    assert list(ceilings.ort_at_batcher_batches) == ["8 waiting"]
    assert ceilings.single_sequence.runs == 24  # at least 64 runs wanted, the sample has 24
    row = to_json(ceilings)["rows"][0]
    assert list(row) == ["batch", "order", "padding_efficiency", "ort_2x1_seq_per_s",
                         f"ort_1x{cores}_seq_per_s"]  # fmt: skip
