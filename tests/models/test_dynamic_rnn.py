"""``dynamic_rnn``: zero outputs past each length, final state at step L-1, padding invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy_tf_rnn import lstm_sequence, padded_batch, random_lstm_weights, to64

from models.rnn import (
    BasicLSTMCell,
    BasicRNNCell,
    LSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
    dynamic_rnn,
)
from models.rnn.structure import flatten, map_structure

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
