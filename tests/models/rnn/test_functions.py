"""``models.rnn.functions``: ``dynamic_rnn`` (zero outputs past each length, final state at step
L-1, padding invariance), ``reverse_sequence`` (per-sequence reversal), and
``bidirectional_dynamic_rnn``, ``stack_bidirectional_dynamic_rnn`` and ``static_rnn`` built on
them (alignment, zeros past each length)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.rnn import (
    BasicLSTMCell,
    BasicRNNCell,
    LSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
    reverse_sequence,
    stack_bidirectional_dynamic_rnn,
    static_rnn,
)
from models.rnn.structure import flatten, map_structure
from tests.support.numpy_tf_rnn import lstm_sequence, padded_batch, random_lstm_weights, to64

F, T = 3, 7
LENGTHS = [7, 3, 0, 5, 1]  # unsorted, one full, one empty
TOL = {"rtol": 1e-5, "atol": 1e-6}


def _cell(kind: str):
    if kind == "rnn":
        return BasicRNNCell(4, input_size=F)
    if kind == "lstm":
        return BasicLSTMCell(4, input_size=F)
    if kind == "lstm_concat_state":
        return BasicLSTMCell(4, state_is_tuple=False, input_size=F)
    if kind == "lstm_peephole_proj":
        return LSTMCell(5, use_peepholes=True, num_proj=3, cell_clip=2.0, input_size=F)
    if kind == "multi":
        return MultiRNNCell([BasicLSTMCell(4, input_size=F), LSTMCell(6, num_proj=2)])
    raise AssertionError(kind)


CELL_KINDS = ["rnn", "lstm", "lstm_concat_state", "lstm_peephole_proj", "multi"]


def _randomize(cell, seed: int = 0) -> None:
    """Non-trivial biases too (the default bias is zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in cell.parameters():
            param.uniform_(-0.6, 0.6, generator=gen)


def _leaves(state) -> list[torch.Tensor]:
    return flatten(state)


def _row(state, b: int):
    """The structure ``state`` restricted to batch row ``b`` (keeping the batch dim)."""
    return map_structure(lambda leaf: leaf[b : b + 1], state)


@pytest.fixture(params=CELL_KINDS)
def cell(request):
    built = _cell(request.param)
    if isinstance(built, MultiRNNCell):
        built.build(F)
    _randomize(built)
    return built


@pytest.fixture
def batch(rng):
    return padded_batch(rng, LENGTHS, T, F)


# -- dynamic_rnn -----------------------------------------------------------------------------------


def test_lstm_outputs_and_state_match_numpy_reference(rng, batch):
    kernel, bias = random_lstm_weights(rng, F, 4)
    cell = BasicLSTMCell(4, forget_bias=0.7)
    cell.load_tf_weights(kernel, bias)
    c0, h0 = rng.standard_normal((len(LENGTHS), 4)), rng.standard_normal((len(LENGTHS), 4))
    init = LSTMStateTuple(
        torch.tensor(c0, dtype=torch.float32), torch.tensor(h0, dtype=torch.float32)
    )
    outputs, state = dynamic_rnn(cell, batch, LENGTHS, initial_state=init)
    assert outputs.shape == (len(LENGTHS), T, 4)
    for b, length in enumerate(LENGTHS):
        c0_b, h0_b = to64(init.c[b]), to64(init.h[b])
        ref_out, ref_c, ref_h = lstm_sequence(
            to64(batch[b, :length]), c0_b, h0_b, kernel.astype(np.float64), bias, 0.7
        )
        np.testing.assert_allclose(to64(outputs[b, :length]), ref_out, **TOL)
        np.testing.assert_allclose(to64(state.c[b]), ref_c, **TOL)
        np.testing.assert_allclose(to64(state.h[b]), ref_h, **TOL)


def test_outputs_past_length_are_exactly_zero(cell, batch):
    outputs, _ = dynamic_rnn(cell, batch, LENGTHS)
    assert outputs.shape == (len(LENGTHS), T, cell.output_size)
    for b, length in enumerate(LENGTHS):
        assert torch.count_nonzero(outputs[b, length:]) == 0
        if length:
            assert torch.count_nonzero(outputs[b, :length]) > 0


def test_each_sequence_in_padded_batch_equals_it_alone(cell, batch):
    outputs, state = dynamic_rnn(cell, batch, LENGTHS)
    for b, length in enumerate(LENGTHS):
        alone_out, alone_state = dynamic_rnn(cell, batch[b : b + 1, :length])
        torch.testing.assert_close(outputs[b : b + 1, :length], alone_out, **TOL)
        for got, want in zip(_leaves(_row(state, b)), _leaves(alone_state), strict=True):
            torch.testing.assert_close(got, want, **TOL)


def test_final_state_is_state_after_step_length_minus_one(cell, batch):
    _, state = dynamic_rnn(cell, batch, LENGTHS)
    for b, length in enumerate(LENGTHS):
        step_state = cell.zero_state(1)
        for t in range(length):
            _, step_state = cell(batch[b : b + 1, t], step_state)
        for got, want in zip(_leaves(_row(state, b)), _leaves(step_state), strict=True):
            torch.testing.assert_close(got, want, **TOL)


def test_padding_content_never_reaches_results(cell, rng):
    clean = padded_batch(rng, LENGTHS, T, F, garbage=0.0)
    noisy = clean.clone()
    weird = clean.clone()
    for b, length in enumerate(LENGTHS):
        noisy[b, length:] = 1e3 * torch.from_numpy(rng.standard_normal((T - length, F)))
        weird[b, length:] = float("nan")
        weird[b, length:, 0] = float("inf")
    out_clean, st_clean = dynamic_rnn(cell, clean, LENGTHS)
    for padded in (noisy, weird):
        out, st = dynamic_rnn(cell, padded, LENGTHS)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, out_clean, **TOL)
        for got, want in zip(_leaves(st), _leaves(st_clean), strict=True):
            torch.testing.assert_close(got, want, **TOL)


def test_length_zero_returns_the_initial_state(cell, batch):
    gen = torch.Generator().manual_seed(5)
    init = map_structure(
        lambda leaf: torch.randn(leaf.shape, generator=gen), cell.zero_state(len(LENGTHS))
    )
    _, state = dynamic_rnn(cell, batch, LENGTHS, initial_state=init)
    empty = LENGTHS.index(0)
    for got, want in zip(_leaves(_row(state, empty)), _leaves(_row(init, empty)), strict=True):
        assert torch.equal(got, want)
    for got, want in zip(_leaves(_row(state, 0)), _leaves(_row(init, 0)), strict=True):
        assert not torch.allclose(got, want)  # a real sequence does move the state


def test_all_lengths_zero(batch):
    cell = BasicLSTMCell(4, input_size=F)
    init = LSTMStateTuple(torch.randn(len(LENGTHS), 4), torch.randn(len(LENGTHS), 4))
    outputs, state = dynamic_rnn(cell, batch, [0] * len(LENGTHS), initial_state=init)
    assert outputs.shape == (len(LENGTHS), T, 4) and torch.count_nonzero(outputs) == 0
    assert torch.equal(state.c, init.c) and torch.equal(state.h, init.h)


def test_initial_state_is_honoured(batch):
    cell = BasicLSTMCell(4, input_size=F)
    _randomize(cell)
    init = LSTMStateTuple(torch.randn(len(LENGTHS), 4), torch.randn(len(LENGTHS), 4))
    outputs, _ = dynamic_rnn(cell, batch, LENGTHS, initial_state=init)
    zero_outputs, _ = dynamic_rnn(cell, batch, LENGTHS)
    assert not torch.allclose(outputs[0, 0], zero_outputs[0, 0])
    b = 3
    step_state = LSTMStateTuple(init.c[b : b + 1], init.h[b : b + 1])
    expected = []
    for t in range(LENGTHS[b]):
        out, step_state = cell(batch[b : b + 1, t], step_state)
        expected.append(out[0])
    torch.testing.assert_close(outputs[b, : LENGTHS[b]], torch.stack(expected), **TOL)


def test_no_sequence_length_runs_every_step(cell, batch):
    full = [T] * len(LENGTHS)
    out_none, st_none = dynamic_rnn(cell, batch)
    out_full, st_full = dynamic_rnn(cell, batch, full)
    torch.testing.assert_close(out_none, out_full)
    for got, want in zip(_leaves(st_none), _leaves(st_full), strict=True):
        torch.testing.assert_close(got, want)


def test_steps_past_the_longest_sequence_are_zero_padded(batch):
    cell = BasicRNNCell(4, input_size=F)
    lengths = [2, 4, 1, 3, 0]  # all shorter than T
    outputs, _ = dynamic_rnn(cell, batch, lengths)
    assert outputs.shape == (len(lengths), T, 4)
    assert torch.count_nonzero(outputs[:, 4:]) == 0


def test_time_major_agrees_with_batch_major(cell, batch):
    out_b, st_b = dynamic_rnn(cell, batch, LENGTHS)
    out_t, st_t = dynamic_rnn(cell, batch.transpose(0, 1), LENGTHS, time_major=True)
    assert out_t.shape == (T, len(LENGTHS), cell.output_size)
    torch.testing.assert_close(out_t.transpose(0, 1), out_b)
    for got, want in zip(_leaves(st_t), _leaves(st_b), strict=True):
        torch.testing.assert_close(got, want)


def test_dtype_sets_the_zero_state_dtype(batch):
    cell = BasicLSTMCell(4, input_size=F).double()
    inputs = batch.double()
    outputs, state = dynamic_rnn(cell, inputs, LENGTHS, dtype=torch.float64)
    assert outputs.dtype == state.c.dtype == state.h.dtype == torch.float64
    # With no step to run, the state is the zero state itself, in the requested dtype.
    float32_cell = BasicLSTMCell(4, input_size=F)
    _, state = dynamic_rnn(float32_cell, batch, [0] * len(LENGTHS), dtype=torch.float64)
    assert state.c.dtype == state.h.dtype == torch.float64
    _, default_state = dynamic_rnn(cell, inputs, LENGTHS)  # default: the inputs' dtype
    assert default_state.c.dtype == torch.float64


def test_sequence_length_accepts_lists_arrays_and_tensors(batch):
    cell = BasicLSTMCell(4, input_size=F)
    reference, _ = dynamic_rnn(cell, batch, LENGTHS)
    for lengths in (np.array(LENGTHS, dtype=np.int32), torch.tensor(LENGTHS), tuple(LENGTHS)):
        torch.testing.assert_close(dynamic_rnn(cell, batch, lengths)[0], reference)


def test_shape_errors_are_clear(batch):
    cell = BasicLSTMCell(4, input_size=F)
    with pytest.raises(ValueError, match="inputs must be 3-D"):
        dynamic_rnn(cell, batch[0], [3])
    with pytest.raises(ValueError, match=r"sequence_length must have shape \(5,\), got \(5, 1\)"):
        dynamic_rnn(cell, batch, torch.tensor(LENGTHS).unsqueeze(1))
    with pytest.raises(ValueError, match=r"sequence_length must have shape \(5,\), got \(4,\)"):
        dynamic_rnn(cell, batch, LENGTHS[:4])
    with pytest.raises(ValueError, match=r"must lie in \[0, 7\], got \[0, 8\]"):
        dynamic_rnn(cell, batch, [8, 3, 0, 5, 1])
    with pytest.raises(ValueError, match=r"must lie in \[0, 7\], got \[-1, 7\]"):
        dynamic_rnn(cell, batch, [7, 3, -1, 5, 1])
    with pytest.raises(ValueError, match="initial_state batch 2 differs from inputs 5"):
        dynamic_rnn(cell, batch, LENGTHS, initial_state=cell.zero_state(2))
    with pytest.raises(ValueError, match="depth"):
        dynamic_rnn(cell, torch.zeros(2, 3, F + 1))


# -- reverse_sequence, bidirectional_dynamic_rnn, stack_bidirectional_dynamic_rnn, static_rnn ------

# A batch of their own: no empty sequence (the forward final state is read at step L-1).
BIDI_T = 6
BIDI_LENGTHS = [6, 2, 4, 1, 5]


def _random_cell(num_units: int, input_size: int, seed: int, **kwargs) -> BasicLSTMCell:
    cell = (LSTMCell if kwargs else BasicLSTMCell)(num_units, input_size=input_size, **kwargs)
    _randomize(cell, seed)
    return cell


@pytest.fixture
def cells():
    return _random_cell(4, F, seed=1), _random_cell(5, F, seed=2, num_proj=3)


@pytest.fixture
def bidi_batch(rng):
    return padded_batch(rng, BIDI_LENGTHS, BIDI_T, F)


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


def test_backward_direction_reads_each_sequence_reversed_within_its_length(cells, bidi_batch):
    cell_fw, cell_bw = cells
    (out_fw, out_bw), (state_fw, state_bw) = bidirectional_dynamic_rnn(
        cell_fw, cell_bw, bidi_batch, BIDI_LENGTHS
    )
    assert out_fw.shape == (len(BIDI_LENGTHS), BIDI_T, 4) and out_bw.shape == (
        len(BIDI_LENGTHS),
        BIDI_T,
        3,
    )
    for b, length in enumerate(BIDI_LENGTHS):
        sequence = bidi_batch[b : b + 1, :length]
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


def test_not_a_full_length_flip(cells, bidi_batch):
    """A full-length flip would feed the padding first; the results must not depend on it."""
    cell_fw, cell_bw = cells
    (_, out_bw), (_, state_bw) = bidirectional_dynamic_rnn(
        cell_fw, cell_bw, bidi_batch, BIDI_LENGTHS
    )
    flipped_out, flipped_state = dynamic_rnn(cell_bw, bidi_batch.flip(1))
    short = BIDI_LENGTHS.index(2)
    assert not torch.allclose(state_bw.h[short], flipped_state.h[short], atol=1e-3)
    assert not torch.allclose(out_bw[short, 0], flipped_out.flip(1)[short, 0], atol=1e-3)


def test_backward_final_h_equals_out_bw_at_step_zero(cells, bidi_batch):
    (_, out_bw), (_, state_bw) = bidirectional_dynamic_rnn(*cells, bidi_batch, BIDI_LENGTHS)
    torch.testing.assert_close(state_bw.h, out_bw[:, 0], rtol=0, atol=0)


def test_forward_final_h_equals_out_fw_at_last_real_step(cells, bidi_batch):
    (out_fw, _), (state_fw, _) = bidirectional_dynamic_rnn(*cells, bidi_batch, BIDI_LENGTHS)
    last = out_fw[torch.arange(len(BIDI_LENGTHS)), torch.tensor(BIDI_LENGTHS) - 1]
    torch.testing.assert_close(state_fw.h, last, rtol=0, atol=0)


def test_both_directions_zero_past_length_and_padding_invariant(cells, bidi_batch, rng):
    (out_fw, out_bw), states = bidirectional_dynamic_rnn(*cells, bidi_batch, BIDI_LENGTHS)
    other = bidi_batch.clone()
    for b, length in enumerate(BIDI_LENGTHS):
        assert torch.count_nonzero(out_fw[b, length:]) == 0
        assert torch.count_nonzero(out_bw[b, length:]) == 0
        other[b, length:] = -5e2 * torch.from_numpy(rng.standard_normal((BIDI_T - length, F)))
    (out_fw2, out_bw2), states2 = bidirectional_dynamic_rnn(*cells, other, BIDI_LENGTHS)
    torch.testing.assert_close(out_fw2, out_fw, **TOL)
    torch.testing.assert_close(out_bw2, out_bw, **TOL)
    for got, want in zip(states2, states, strict=True):
        torch.testing.assert_close(got.c, want.c, **TOL)
        torch.testing.assert_close(got.h, want.h, **TOL)


def test_bidirectional_time_major_agrees(cells, bidi_batch):
    (fw_b, bw_b), (sf_b, sb_b) = bidirectional_dynamic_rnn(*cells, bidi_batch, BIDI_LENGTHS)
    (fw_t, bw_t), (sf_t, sb_t) = bidirectional_dynamic_rnn(
        *cells, bidi_batch.transpose(0, 1), BIDI_LENGTHS, time_major=True
    )
    torch.testing.assert_close(fw_t.transpose(0, 1), fw_b)
    torch.testing.assert_close(bw_t.transpose(0, 1), bw_b)
    for got, want in ((sf_t, sf_b), (sb_t, sb_b)):
        torch.testing.assert_close(got.c, want.c)
        torch.testing.assert_close(got.h, want.h)


def test_bidirectional_initial_states_honoured(cells, bidi_batch):
    cell_fw, cell_bw = cells
    gen = torch.Generator().manual_seed(3)
    init_fw = LSTMStateTuple(*(torch.randn(len(BIDI_LENGTHS), 4, generator=gen) for _ in range(2)))
    init_bw = LSTMStateTuple(
        torch.randn(len(BIDI_LENGTHS), 5, generator=gen),
        torch.randn(len(BIDI_LENGTHS), 3, generator=gen),
    )
    (_, out_bw), (state_fw, state_bw) = bidirectional_dynamic_rnn(
        cell_fw,
        cell_bw,
        bidi_batch,
        BIDI_LENGTHS,
        initial_state_fw=init_fw,
        initial_state_bw=init_bw,
    )
    b, length = 2, BIDI_LENGTHS[2]
    row = slice(b, b + 1)
    _, fw_state = dynamic_rnn(
        cell_fw,
        bidi_batch[row, :length],
        initial_state=LSTMStateTuple(init_fw.c[row], init_fw.h[row]),
    )
    bw_out, bw_state = dynamic_rnn(
        cell_bw,
        bidi_batch[row, :length].flip(1),
        initial_state=LSTMStateTuple(init_bw.c[row], init_bw.h[row]),
    )
    torch.testing.assert_close(state_fw.h[row], fw_state.h, **TOL)
    torch.testing.assert_close(state_bw.c[row], bw_state.c, **TOL)
    torch.testing.assert_close(out_bw[row, :length], bw_out.flip(1), **TOL)


# -- stack_bidirectional_dynamic_rnn, static_rnn ----------------------------------------------


def test_stack_bidirectional_equals_layer_by_layer_composition(bidi_batch):
    cells_fw = [_random_cell(4, F, 10), _random_cell(3, 4 + 5, 11)]
    cells_bw = [_random_cell(5, F, 12), _random_cell(2, 4 + 5, 13)]
    outputs, states_fw, states_bw = stack_bidirectional_dynamic_rnn(
        cells_fw, cells_bw, bidi_batch, sequence_length=BIDI_LENGTHS
    )
    assert outputs.shape == (len(BIDI_LENGTHS), BIDI_T, 3 + 2)
    layer_input = bidi_batch
    for n in range(2):
        (fw, bw), (sf, sb) = bidirectional_dynamic_rnn(
            cells_fw[n], cells_bw[n], layer_input, BIDI_LENGTHS
        )
        layer_input = torch.cat([fw, bw], dim=-1)
        torch.testing.assert_close(states_fw[n].h, sf.h)
        torch.testing.assert_close(states_bw[n].c, sb.c)
    torch.testing.assert_close(outputs, layer_input)
    for b, length in enumerate(BIDI_LENGTHS):
        assert torch.count_nonzero(outputs[b, length:]) == 0

    init_fw = [c.zero_state(len(BIDI_LENGTHS)) for c in cells_fw]
    init_bw = [LSTMStateTuple(s.c + 1.0, s.h) for s in (c.zero_state(5) for c in cells_bw)]
    shifted, _, sb_shifted = stack_bidirectional_dynamic_rnn(
        cells_fw, cells_bw, bidi_batch, init_fw, init_bw, sequence_length=BIDI_LENGTHS
    )
    _, (_, sb0) = bidirectional_dynamic_rnn(
        cells_fw[0], cells_bw[0], bidi_batch, BIDI_LENGTHS, init_fw[0], init_bw[0]
    )
    torch.testing.assert_close(sb_shifted[0].c, sb0.c)
    assert not torch.allclose(shifted, outputs)


def test_stack_bidirectional_rejects_mismatched_cell_lists():
    with pytest.raises(ValueError, match="same length"):
        stack_bidirectional_dynamic_rnn([BasicLSTMCell(2)], [], torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="non-empty"):
        stack_bidirectional_dynamic_rnn([], [], torch.zeros(1, 2, 2))


def test_static_rnn_equals_dynamic_rnn(bidi_batch):
    cell = MultiRNNCell([_random_cell(4, F, 20), _random_cell(3, 4, 21)])
    steps = list(bidi_batch.transpose(0, 1).unbind(0))  # BIDI_T tensors (B, F)
    outputs, state = static_rnn(cell, steps, sequence_length=BIDI_LENGTHS)
    expected, expected_state = dynamic_rnn(cell, bidi_batch, BIDI_LENGTHS)
    assert isinstance(outputs, list) and len(outputs) == BIDI_T
    torch.testing.assert_close(torch.stack(outputs, dim=1), expected)
    for got, want in zip(state, expected_state, strict=True):
        torch.testing.assert_close(got.c, want.c)
        torch.testing.assert_close(got.h, want.h)
    full, _ = static_rnn(cell, steps)
    torch.testing.assert_close(torch.stack(full, dim=1), dynamic_rnn(cell, bidi_batch)[0])
    with pytest.raises(ValueError, match="at least one step"):
        static_rnn(cell, [])


def test_lengths_given_as_numpy(cells, bidi_batch):
    (fw, bw), _ = bidirectional_dynamic_rnn(*cells, bidi_batch, np.array(BIDI_LENGTHS))
    (fw2, bw2), _ = bidirectional_dynamic_rnn(*cells, bidi_batch, torch.tensor(BIDI_LENGTHS))
    assert torch.equal(fw, fw2) and torch.equal(bw, bw2)
