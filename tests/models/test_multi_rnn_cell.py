"""``MultiRNNCell``: state structure, per-cell sizes, concatenated states, weight loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy_tf_rnn import lstm_step, random_lstm_weights, to64

from models.rnn import (
    BasicLSTMCell,
    BasicRNNCell,
    LSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
    dynamic_rnn,
)

TOL = {"rtol": 1e-5, "atol": 1e-6}


def test_state_structure_and_sizes_follow_each_cell():
    cell = MultiRNNCell([BasicLSTMCell(128), BasicLSTMCell(256)])
    assert cell.state_size == (LSTMStateTuple(128, 128), LSTMStateTuple(256, 256))
    assert type(cell.state_size) is tuple
    assert cell.output_size == 256
    state = cell.zero_state(3)
    assert type(state) is tuple and len(state) == 2
    assert all(isinstance(s, LSTMStateTuple) for s in state)
    assert state[0].c.shape == state[0].h.shape == (3, 128)
    assert state[1].c.shape == state[1].h.shape == (3, 256)
    assert state[1].c.dtype == torch.float32
    assert cell.zero_state(2, torch.float64)[0].h.dtype == torch.float64


def test_mixed_cells_sizes():
    cell = MultiRNNCell([LSTMCell(8, num_proj=3), BasicRNNCell(5), BasicLSTMCell(6)])
    assert cell.state_size == (LSTMStateTuple(8, 3), 5, LSTMStateTuple(6, 6))
    cell.build(4)
    assert [c.input_size for c in cell.cells] == [4, 3, 5]
    assert cell.cells[1].kernel.shape == (3 + 5, 5)
    concatenated = MultiRNNCell([LSTMCell(8, num_proj=3), BasicRNNCell(5)], state_is_tuple=False)
    assert concatenated.state_size == 8 + 3 + 5
    assert concatenated.zero_state(2).shape == (2, 16)


def test_one_step_chains_the_cells_and_matches_tf_formula(rng):
    sizes, features, batch = [4, 6], 3, 2
    weights = [random_lstm_weights(rng, features, 4), random_lstm_weights(rng, 4, 6)]
    cell = MultiRNNCell([BasicLSTMCell(n) for n in sizes])
    cell.load_tf_weights(weights)
    assert cell.cells[0].kernel.shape == (3 + 4, 16)
    assert cell.cells[1].kernel.shape == (4 + 6, 24)

    x = rng.standard_normal((batch, features))
    states = [(rng.standard_normal((batch, n)), rng.standard_normal((batch, n))) for n in sizes]
    torch_state = tuple(
        LSTMStateTuple(torch.tensor(c, dtype=torch.float32), torch.tensor(h, dtype=torch.float32))
        for c, h in states
    )
    output, new_state = cell(torch.tensor(x, dtype=torch.float32), torch_state)

    layer_input = x
    for n, ((kernel, bias), (c, h)) in enumerate(zip(weights, states, strict=True)):
        layer_input, c_new, h_new = lstm_step(
            layer_input, c, h, kernel.astype(np.float64), bias.astype(np.float64)
        )
        np.testing.assert_allclose(to64(new_state[n].c), c_new, **TOL)
        np.testing.assert_allclose(to64(new_state[n].h), h_new, **TOL)
    np.testing.assert_allclose(to64(output), layer_input, **TOL)


def test_load_tf_weights_needs_one_pair_per_cell(rng):
    cell = MultiRNNCell([BasicLSTMCell(4), BasicLSTMCell(6)])
    with pytest.raises(ValueError, match=r"expected 2 \(kernel, bias\) pairs, got 1"):
        cell.load_tf_weights([random_lstm_weights(rng, 3, 4)])
    with pytest.raises(ValueError, match="built for input depth 4"):  # layer 2 must read 4
        cell.load_tf_weights([random_lstm_weights(rng, 3, 4), random_lstm_weights(rng, 5, 6)])


def test_input_size_inferred_on_first_call_and_checked_later():
    cell = MultiRNNCell([BasicLSTMCell(4), BasicLSTMCell(6)])
    assert cell.input_size is None
    cell(torch.zeros(2, 3), cell.zero_state(2))
    assert cell.input_size == 3
    assert cell.cells[1].input_size == 4
    with pytest.raises(ValueError, match="input depth 3, got inputs of depth 5"):
        cell(torch.zeros(2, 5), cell.zero_state(2))


@pytest.mark.parametrize("inner_tuple", [True, False])
def test_concatenated_state_round_trip(rng, inner_tuple):
    """A state_is_tuple=False stack splits its (B, sum of widths) state into the cells' states
    and concatenates them back: same numbers as the tuple version."""

    def make(state_is_tuple: bool) -> MultiRNNCell:
        return MultiRNNCell(
            [
                BasicLSTMCell(4, state_is_tuple=inner_tuple),
                LSTMCell(5, num_proj=2),
                BasicRNNCell(3),
            ],
            state_is_tuple=state_is_tuple,
        )

    tuple_cell, flat_cell = make(True), make(False)
    tuple_cell.build(3)
    flat_cell.build(3)
    flat_cell.load_state_dict(tuple_cell.state_dict())
    assert flat_cell.state_size == 8 + 7 + 3

    init = tuple(
        torch.from_numpy(rng.standard_normal((2, w)).astype(np.float32)) for w in (4, 4, 5, 2, 3)
    )
    first = LSTMStateTuple(init[0], init[1]) if inner_tuple else torch.cat(init[:2], dim=1)
    tuple_state = (first, LSTMStateTuple(init[2], init[3]), init[4])
    flat_state = torch.cat(init, dim=1)

    inputs = torch.from_numpy(rng.standard_normal((2, 5, 3)).astype(np.float32))
    out_t, final_t = dynamic_rnn(tuple_cell, inputs, [5, 2], initial_state=tuple_state)
    out_f, final_f = dynamic_rnn(flat_cell, inputs, [5, 2], initial_state=flat_state)
    torch.testing.assert_close(out_f, out_t)
    assert final_f.shape == (2, 18)
    leaves = [final_t[0].c, final_t[0].h] if inner_tuple else [final_t[0]]
    leaves += [final_t[1].c, final_t[1].h, final_t[2]]
    torch.testing.assert_close(final_f, torch.cat(leaves, dim=1))


def test_state_errors():
    with pytest.raises(ValueError, match="at least one cell"):
        MultiRNNCell([])
    cell = MultiRNNCell([BasicLSTMCell(4), BasicLSTMCell(6)])
    with pytest.raises(ValueError, match="expected 2 cell states, got 1"):
        cell(torch.zeros(2, 3), cell.zero_state(2)[:1])
    flat = MultiRNNCell([BasicLSTMCell(4), BasicLSTMCell(6)], state_is_tuple=False)
    with pytest.raises(ValueError, match="concatenated state has width 21, expected 20"):
        flat(torch.zeros(2, 3), torch.zeros(2, 21))
