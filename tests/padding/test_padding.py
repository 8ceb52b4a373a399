"""``padding.pad_sequences``: ``(L_b, F)`` sequences into ``(B, T, F)`` and ``(B,)``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from padding import pad_sequences


def test_shapes_values_and_padding() -> None:
    rng = np.random.default_rng(20240601)
    sequences = [rng.standard_normal((n, 3)).astype(np.float32) for n in (4, 1, 6)]
    batch, lengths = pad_sequences(sequences, pad_value=-9.0)
    assert batch.shape == (3, 6, 3) and batch.dtype == np.float32
    assert lengths.dtype == np.int32
    np.testing.assert_array_equal(lengths, [4, 1, 6])
    for row, sequence in enumerate(sequences):
        np.testing.assert_array_equal(batch[row, : len(sequence)], sequence)
        assert np.all(batch[row, len(sequence) :] == -9.0)
    wide, _ = pad_sequences(sequences, max_time=8)
    assert wide.shape == (3, 8, 3) and np.all(wide[:, 6:] == 0.0)
    with pytest.raises(ValueError, match="shorter than the longest"):
        pad_sequences(sequences, max_time=5)


def test_float64_input_becomes_float32_and_the_input_is_not_modified() -> None:
    sequences = [np.full((2, 2), 1.0 / 3.0), np.full((3, 2), -2.0)]
    batch, _ = pad_sequences(sequences, pad_value=np.inf)
    assert batch.dtype == np.float32
    assert batch[0, 0, 0] == np.float32(1.0 / 3.0) and np.isinf(batch[0, 2]).all()
    assert sequences[0].dtype == np.float64 and sequences[0][0, 0] == 1.0 / 3.0


def test_no_sequences_and_mixed_widths_are_refused() -> None:
    with pytest.raises(ValueError, match="no sequences"):
        pad_sequences([])
    with pytest.raises(ValueError, match=r"sequence 1: expected \(L, 3\)"):
        pad_sequences([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="sequence 1"):  # numpy would broadcast it silently
        pad_sequences([np.zeros((2, 3)), np.ones((2, 1))])
    with pytest.raises(ValueError, match="sequence 0"):
        pad_sequences([np.zeros(3), np.zeros((2, 3))])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(1, 4), st.floats(-5, 5))
def test_every_row_is_its_sequence_then_padding(
    lengths: list[int], features: int, pad_value: float
) -> None:
    sequences = [np.full((n, features), k + 0.5, np.float32) for k, n in enumerate(lengths)]
    batch, got = pad_sequences(sequences, pad_value=pad_value)
    assert batch.shape == (len(lengths), max(lengths), features)
    assert got.tolist() == lengths
    for row, length in enumerate(lengths):
        assert np.all(batch[row, :length] == row + 0.5)
        assert np.all(batch[row, length:] == np.float32(pad_value))
