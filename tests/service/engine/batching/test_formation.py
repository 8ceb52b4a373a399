"""Length-aware batch formation, as a pure function of waiting lengths."""

from __future__ import annotations

import pytest

from service.engine.batching.formation import BatchPolicy, select_batch


def policy(size: int = 64, tokens: int = 10_000, efficiency: float = 0.0) -> BatchPolicy:
    return BatchPolicy(
        max_batch_size=size, max_batch_tokens=tokens, padding_efficiency_target=efficiency
    )


def test_anchor_alone_when_nothing_else_waits() -> None:
    selection = select_batch([17], 0, policy())
    assert selection.indices == [0]
    assert (selection.real_steps, selection.padded_steps) == (17, 17)
    assert not selection.full


def test_grows_towards_the_closest_lengths_first() -> None:
    lengths = [50, 10, 52, 90, 49, 200]
    selection = select_batch(lengths, 0, policy(size=3))
    assert sorted(lengths[k] for k in selection.indices) == [49, 50, 52]
    assert selection.full  # stopped by the size limit


def test_size_limit() -> None:
    selection = select_batch([10] * 20, 5, policy(size=8))
    assert len(selection.indices) == 8 and 5 in selection.indices
    assert selection.full


def test_padded_token_budget_counts_longest_times_size() -> None:
    selection = select_batch([30] * 10, 0, policy(tokens=100))
    assert len(selection.indices) == 3  # 4 x 30 = 120 > 100
    assert selection.padded_steps == 90
    assert selection.full


def test_efficiency_target_splits_short_from_long() -> None:
    lengths = [5, 100, 6, 101, 7, 102]
    short = select_batch(lengths, 0, policy(efficiency=0.8))
    assert sorted(lengths[k] for k in short.indices) == [5, 6, 7]
    assert not short.full  # more of similar length could still come
    long = select_batch(lengths, 1, policy(efficiency=0.8))
    assert sorted(lengths[k] for k in long.indices) == [100, 101, 102]


@pytest.mark.parametrize("anchor", [0, 2, 3])
def test_exact_length_takes_only_the_anchors_length(anchor: int) -> None:
    lengths = [7, 6, 7, 8, 7, 7, 6]
    exact = BatchPolicy(
        max_batch_size=64, max_batch_tokens=10_000, padding_efficiency_target=0.0, exact_length=True
    )
    selection = select_batch(lengths, anchor, exact)
    assert sorted(selection.indices) == [k for k, n in enumerate(lengths) if n == lengths[anchor]]
    assert selection.real_steps == selection.padded_steps  # no padding at all
    assert not selection.full  # more of this length may come


def test_exact_length_still_keeps_the_size_limit() -> None:
    exact = BatchPolicy(
        max_batch_size=2, max_batch_tokens=10_000, padding_efficiency_target=0.0, exact_length=True
    )
    selection = select_batch([5, 5, 5, 4], 0, exact)
    assert len(selection.indices) == 2 and selection.full


def test_without_efficiency_target_everything_fits_one_batch() -> None:
    lengths = [5, 100, 6, 101, 7, 102]
    selection = select_batch(lengths, 0, policy(efficiency=0.0))
    assert sorted(selection.indices) == list(range(6))
    assert selection.real_steps == sum(lengths)
    assert selection.padded_steps == 6 * 102


@pytest.mark.parametrize("anchor", range(7))
def test_anchor_is_always_chosen_and_efficiency_kept(anchor: int) -> None:
    lengths = [12, 190, 33, 75, 80, 140, 11]
    selection = select_batch(lengths, anchor, policy(efficiency=0.7))
    assert anchor in selection.indices
    if len(selection.indices) > 1:
        assert selection.real_steps >= 0.7 * selection.padded_steps
    assert selection.real_steps == sum(lengths[k] for k in selection.indices)
    assert selection.padded_steps == len(selection.indices) * max(
        lengths[k] for k in selection.indices
    )
