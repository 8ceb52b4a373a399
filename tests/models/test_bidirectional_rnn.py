"""``bidirectional_dynamic_rnn``, ``reverse_sequence``, ``stack_bidirectional_dynamic_rnn``,
``static_rnn``: per-sequence reversal, alignment, zeros past each length."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy_tf_rnn import padded_batch

from models.rnn import (
    BasicLSTMCell,
    LSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
    reverse_sequence,
    stack_bidirectional_dynamic_rnn,
    static_rnn,
)

F, T = 3, 6
LENGTHS = [6, 2, 4, 1, 5]
TOL = {"rtol": 1e-5, "atol": 1e-6}


def _random_cell(num_units: int, input_size: int, seed: int, **kwargs) -> BasicLSTMCell:
    cell = (LSTMCell if kwargs else BasicLSTMCell)(num_units, input_size=input_size, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in cell.parameters():
            param.uniform_(-0.6, 0.6, generator=gen)
    return cell


@pytest.fixture
def cells():
    return _random_cell(4, F, seed=1), _random_cell(5, F, seed=2, num_proj=3)


@pytest.fixture
def batch(rng):
    return padded_batch(rng, LENGTHS, T, F)


# -- reverse_sequence -------------------------------------------------------------------------


def test_reverse_sequence_reverses_within_each_length():
    inputs = torch.arange(3 * 5).reshape(3, 5, 1) * 10  # value = 10 * (5 * b + t)
    lengths = [3, 5, 0]
    got = reverse_sequence(inputs, lengths)[..., 0]
    expected = torch.tensor(
        [
            [20, 10, 0, 30, 40],  # first 3 reversed, the rest in place
            [90, 80, 70, 60, 50],  # full length: a plain flip
            [100, 110, 120, 130, 140],  # length 0: untouched
        ]
    )
    assert torch.equal(got, expected)


def test_reverse_sequence_time_major_and_trailing_dims(rng):
    inputs = torch.from_numpy(rng.standard_normal((4, 6, 2, 3)))
    lengths = [6, 1, 3, 0]
    batch_major = reverse_sequence(inputs, lengths)
    time_major = reverse_sequence(inputs.transpose(0, 1), lengths, time_major=True)
    assert torch.equal(time_major.transpose(0, 1), batch_major)
    for b, length in enumerate(lengths):
        assert torch.equal(batch_major[b, :length], inputs[b, :length].flip(0))
        assert torch.equal(batch_major[b, length:], inputs[b, length:])


def test_reverse_sequence_without_lengths_flips_everything():
    inputs = torch.arange(12.0).reshape(2, 6, 1)
    assert torch.equal(reverse_sequence(inputs), inputs.flip(1))
    assert torch.equal(
        reverse_sequence(inputs.transpose(0, 1), time_major=True), inputs.flip(1).transpose(0, 1)
    )


def test_reverse_sequence_rejects_bad_lengths():
    with pytest.raises(ValueError, match="sequence_length"):
        reverse_sequence(torch.zeros(2, 4, 1), [1, 5])
    with pytest.raises(ValueError, match="sequence_length must have shape"):
        reverse_sequence(torch.zeros(2, 4, 1), [1, 2, 3])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 8), min_size=1, max_size=5).flatmap(
        lambda lengths: st.tuples(st.just(lengths), st.integers(max(lengths), 9))
    )
)
def test_reverse_sequence_property(lengths_and_time):
    lengths, max_time = lengths_and_time
    inputs = torch.arange(len(lengths) * max_time).reshape(len(lengths), max_time)
    once = reverse_sequence(inputs, lengths)
    assert torch.equal(reverse_sequence(once, lengths), inputs)  # an involution
    for b, length in enumerate(lengths):
        expected = list(range(length - 1, -1, -1)) + list(range(length, max_time))
        assert once[b].tolist() == [b * max_time + t for t in expected]


# -- bidirectional_dynamic_rnn ----------------------------------------------------------------


def test_backward_direction_reads_each_sequence_reversed_within_its_length(cells, batch):
    cell_fw, cell_bw = cells
    (out_fw, out_bw), (state_fw, state_bw) = bidirectional_dynamic_rnn(
        cell_fw, cell_bw, batch, LENGTHS
    )
    assert out_fw.shape == (len(LENGTHS), T, 4) and out_bw.shape == (len(LENGTHS), T, 3)
    for b, length in enumerate(LENGTHS):
        sequence = batch[b : b + 1, :length]
        fw_alone, fw_state = dynamic_rnn(cell_fw, sequence)
        # The backward cell run by hand over x[L-1], ..., x[0] of this sequence alone.
        bw_alone, bw_state = dynamic_rnn(cell_bw, sequence.flip(1))
        torch.testing.assert_close(out_fw[b : b + 1, :length], fw_alone, **TOL)
        # out_bw[t] aligns with input t: it is the backward output after reading x[L-1] .. x[t].
        torch.testing.assert_close(out_bw[b : b + 1, :length], bw_alone.flip(1), **TOL)
        torch.testing.assert_close(state_fw.c[b], fw_state.c[0], **TOL)
        torch.testing.assert_close(state_fw.h[b], fw_state.h[0], **TOL)
        torch.testing.assert_close(state_bw.c[b], bw_state.c[0], **TOL)
        torch.testing.assert_close(state_bw.h[b], bw_state.h[0], **TOL)


def test_not_a_full_length_flip(cells, batch):
    """A full-length flip would feed the padding first; the results must not depend on it."""
    cell_fw, cell_bw = cells
    (_, out_bw), (_, state_bw) = bidirectional_dynamic_rnn(cell_fw, cell_bw, batch, LENGTHS)
    flipped_out, flipped_state = dynamic_rnn(cell_bw, batch.flip(1))
    short = LENGTHS.index(2)
    assert not torch.allclose(state_bw.h[short], flipped_state.h[short], atol=1e-3)
    assert not torch.allclose(out_bw[short, 0], flipped_out.flip(1)[short, 0], atol=1e-3)


def test_backward_final_h_equals_out_bw_at_step_zero(cells, batch):
    (_, out_bw), (_, state_bw) = bidirectional_dynamic_rnn(*cells, batch, LENGTHS)
    torch.testing.assert_close(state_bw.h, out_bw[:, 0], rtol=0, atol=0)


def test_forward_final_h_equals_out_fw_at_last_real_step(cells, batch):
    (out_fw, _), (state_fw, _) = bidirectional_dynamic_rnn(*cells, batch, LENGTHS)
    last = out_fw[torch.arange(len(LENGTHS)), torch.tensor(LENGTHS) - 1]
    torch.testing.assert_close(state_fw.h, last, rtol=0, atol=0)


def test_both_directions_zero_past_length_and_padding_invariant(cells, batch, rng):
    (out_fw, out_bw), states = bidirectional_dynamic_rnn(*cells, batch, LENGTHS)
    other = batch.clone()
    for b, length in enumerate(LENGTHS):
        assert torch.count_nonzero(out_fw[b, length:]) == 0
        assert torch.count_nonzero(out_bw[b, length:]) == 0
        other[b, length:] = -5e2 * torch.from_numpy(rng.standard_normal((T - length, F)))
    (out_fw2, out_bw2), states2 = bidirectional_dynamic_rnn(*cells, other, LENGTHS)
    torch.testing.assert_close(out_fw2, out_fw, **TOL)
    torch.testing.assert_close(out_bw2, out_bw, **TOL)
    for got, want in zip(states2, states, strict=True):
        torch.testing.assert_close(got.c, want.c, **TOL)
        torch.testing.assert_close(got.h, want.h, **TOL)


def test_bidirectional_time_major_agrees(cells, batch):
    (fw_b, bw_b), (sf_b, sb_b) = bidirectional_dynamic_rnn(*cells, batch, LENGTHS)
    (fw_t, bw_t), (sf_t, sb_t) = bidirectional_dynamic_rnn(
        *cells, batch.transpose(0, 1), LENGTHS, time_major=True
    )
    torch.testing.assert_close(fw_t.transpose(0, 1), fw_b)
    torch.testing.assert_close(bw_t.transpose(0, 1), bw_b)
    for got, want in ((sf_t, sf_b), (sb_t, sb_b)):
        torch.testing.assert_close(got.c, want.c)
        torch.testing.assert_close(got.h, want.h)


def test_bidirectional_initial_states_honoured(cells, batch):
    cell_fw, cell_bw = cells
    gen = torch.Generator().manual_seed(3)
    init_fw = LSTMStateTuple(*(torch.randn(len(LENGTHS), 4, generator=gen) for _ in range(2)))
    init_bw = LSTMStateTuple(
        torch.randn(len(LENGTHS), 5, generator=gen), torch.randn(len(LENGTHS), 3, generator=gen)
    )
    (_, out_bw), (state_fw, state_bw) = bidirectional_dynamic_rnn(
        cell_fw, cell_bw, batch, LENGTHS, initial_state_fw=init_fw, initial_state_bw=init_bw
    )
    b, length = 2, LENGTHS[2]
    row = slice(b, b + 1)
    _, fw_state = dynamic_rnn(
        cell_fw, batch[row, :length], initial_state=LSTMStateTuple(init_fw.c[row], init_fw.h[row])
    )
    bw_out, bw_state = dynamic_rnn(
        cell_bw,
        batch[row, :length].flip(1),
        initial_state=LSTMStateTuple(init_bw.c[row], init_bw.h[row]),
    )
    torch.testing.assert_close(state_fw.h[row], fw_state.h, **TOL)
    torch.testing.assert_close(state_bw.c[row], bw_state.c, **TOL)
    torch.testing.assert_close(out_bw[row, :length], bw_out.flip(1), **TOL)


# -- stack_bidirectional_dynamic_rnn, static_rnn ----------------------------------------------


def test_stack_bidirectional_equals_layer_by_layer_composition(batch):
    cells_fw = [_random_cell(4, F, 10), _random_cell(3, 4 + 5, 11)]
    cells_bw = [_random_cell(5, F, 12), _random_cell(2, 4 + 5, 13)]
    outputs, states_fw, states_bw = stack_bidirectional_dynamic_rnn(
        cells_fw, cells_bw, batch, sequence_length=LENGTHS
    )
    assert outputs.shape == (len(LENGTHS), T, 3 + 2)
    layer_input = batch
    for n in range(2):
        (fw, bw), (sf, sb) = bidirectional_dynamic_rnn(
            cells_fw[n], cells_bw[n], layer_input, LENGTHS
        )
        layer_input = torch.cat([fw, bw], dim=-1)
        torch.testing.assert_close(states_fw[n].h, sf.h)
        torch.testing.assert_close(states_bw[n].c, sb.c)
    torch.testing.assert_close(outputs, layer_input)
    for b, length in enumerate(LENGTHS):
        assert torch.count_nonzero(outputs[b, length:]) == 0

    init_fw = [c.zero_state(len(LENGTHS)) for c in cells_fw]
    init_bw = [LSTMStateTuple(s.c + 1.0, s.h) for s in (c.zero_state(5) for c in cells_bw)]
    shifted, _, sb_shifted = stack_bidirectional_dynamic_rnn(
        cells_fw, cells_bw, batch, init_fw, init_bw, sequence_length=LENGTHS
    )
    _, (_, sb0) = bidirectional_dynamic_rnn(
        cells_fw[0], cells_bw[0], batch, LENGTHS, init_fw[0], init_bw[0]
    )
    torch.testing.assert_close(sb_shifted[0].c, sb0.c)
    assert not torch.allclose(shifted, outputs)


def test_stack_bidirectional_rejects_mismatched_cell_lists():
    with pytest.raises(ValueError, match="same length"):
        stack_bidirectional_dynamic_rnn([BasicLSTMCell(2)], [], torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="non-empty"):
        stack_bidirectional_dynamic_rnn([], [], torch.zeros(1, 2, 2))


def test_static_rnn_equals_dynamic_rnn(batch):
    cell = MultiRNNCell([_random_cell(4, F, 20), _random_cell(3, 4, 21)])
    steps = list(batch.transpose(0, 1).unbind(0))  # T tensors (B, F)
    outputs, state = static_rnn(cell, steps, sequence_length=LENGTHS)
    expected, expected_state = dynamic_rnn(cell, batch, LENGTHS)
    assert isinstance(outputs, list) and len(outputs) == T
    torch.testing.assert_close(torch.stack(outputs, dim=1), expected)
    for got, want in zip(state, expected_state, strict=True):
        torch.testing.assert_close(got.c, want.c)
        torch.testing.assert_close(got.h, want.h)
    full, _ = static_rnn(cell, steps)
    torch.testing.assert_close(torch.stack(full, dim=1), dynamic_rnn(cell, batch)[0])
    with pytest.raises(ValueError, match="at least one step"):
        static_rnn(cell, [])


def test_lengths_given_as_numpy(cells, batch):
    (fw, bw), _ = bidirectional_dynamic_rnn(*cells, batch, np.array(LENGTHS))
    (fw2, bw2), _ = bidirectional_dynamic_rnn(*cells, batch, torch.tensor(LENGTHS))
    assert torch.equal(fw, fw2) and torch.equal(bw, bw2)
