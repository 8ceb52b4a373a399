"""``models.rnn.cells``: cells with TF-layout weights reproduce the TF 1.x formulas (computed here
in float64 numpy); ``MultiRNNCell``: state structure, per-cell sizes, concatenated states, weight
loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.rnn import (
    BasicLSTMCell,
    BasicRNNCell,
    LSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
    dynamic_rnn,
)
from tests.support.numpy_tf_rnn import basic_rnn_step, lstm_step, random_lstm_weights, sigmoid, to64

TOL = {"rtol": 1e-5, "atol": 1e-6}
F, U, B = 3, 5, 4


def _steps(rng: np.random.Generator, steps: int = 3) -> list[np.ndarray]:
    return [rng.standard_normal((B, F)) for _ in range(steps)]


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float32))


# -- BasicRNNCell ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("torch_act", "numpy_act"),
    [(None, np.tanh), (torch.relu, lambda a: np.maximum(a, 0.0))],
    ids=["tanh", "relu"],
)
def test_basic_rnn_cell_matches_tf_formula(rng, torch_act, numpy_act):
    kernel = rng.uniform(-0.8, 0.8, (F + U, U)).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, U).astype(np.float32)
    cell = BasicRNNCell(U, activation=torch_act)
    cell.load_tf_weights(kernel, bias)

    h_ref = rng.standard_normal((B, U)) * 0.5
    h = _t(h_ref)
    for x in _steps(rng):
        output, h = cell(_t(x), h)
        h_ref = basic_rnn_step(x, h_ref, kernel.astype(np.float64), bias, numpy_act)
        np.testing.assert_allclose(to64(output), h_ref, **TOL)
        assert torch.equal(output, h)  # output and state are one tensor


# -- BasicLSTMCell ----------------------------------------------------------------------------


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("state_is_tuple", [True, False])
def test_basic_lstm_cell_matches_tf_formula(rng, forget_bias, state_is_tuple):
    kernel, bias = random_lstm_weights(rng, F, U)
    cell = BasicLSTMCell(U, forget_bias=forget_bias, state_is_tuple=state_is_tuple)
    cell.load_tf_weights(kernel, bias)

    c_ref = rng.standard_normal((B, U))
    h_ref = rng.standard_normal((B, U)) * 0.5
    state = (
        LSTMStateTuple(_t(c_ref), _t(h_ref))
        if state_is_tuple
        else _t(np.concatenate([c_ref, h_ref], axis=1))
    )
    for x in _steps(rng):
        output, state = cell(_t(x), state)
        out_ref, c_ref, h_ref = lstm_step(
            x, c_ref, h_ref, kernel.astype(np.float64), bias, forget_bias
        )
        np.testing.assert_allclose(to64(output), out_ref, **TOL)
        if state_is_tuple:
            assert isinstance(state, LSTMStateTuple)
            np.testing.assert_allclose(to64(state.c), c_ref, **TOL)
            np.testing.assert_allclose(to64(state.h), h_ref, **TOL)
        else:
            assert isinstance(state, torch.Tensor) and state.shape == (B, 2 * U)
            np.testing.assert_allclose(to64(state), np.concatenate([c_ref, h_ref], axis=1), **TOL)


def test_basic_lstm_forget_bias_is_added_at_run_time_not_stored(rng):
    kernel, bias = random_lstm_weights(rng, F, U)
    cells = [BasicLSTMCell(U, forget_bias=fb) for fb in (0.0, 3.0)]
    for cell in cells:
        cell.load_tf_weights(kernel, bias)
        np.testing.assert_array_equal(cell.bias.detach().numpy(), bias)
    x, state = _t(rng.standard_normal((B, F))), cells[0].zero_state(B)
    c_prev = _t(rng.standard_normal((B, U)))
    state = LSTMStateTuple(c_prev, state.h)
    (_, s0), (_, s1) = (cell(x, state) for cell in cells)
    # Same gates; only the forget gate differs: c' - sigmoid(f + fb) * c is the same for both.
    z = np.concatenate([x.numpy(), np.zeros((B, U))], axis=1).astype(np.float64) @ kernel + bias
    f = np.split(z, 4, axis=1)[2]
    c = c_prev.double().numpy()
    np.testing.assert_allclose(
        to64(s0.c) - sigmoid(f) * c, to64(s1.c) - sigmoid(f + 3.0) * c, **TOL
    )


def test_basic_lstm_custom_activation(rng):
    kernel, bias = random_lstm_weights(rng, F, U)
    cell = BasicLSTMCell(U, activation=torch.nn.functional.softsign)
    cell.load_tf_weights(kernel, bias)
    x, c, h = rng.standard_normal((B, F)), rng.standard_normal((B, U)), rng.standard_normal((B, U))
    output, _ = cell(_t(x), LSTMStateTuple(_t(c), _t(h)))
    expected, _, _ = lstm_step(
        x, c, h, kernel.astype(np.float64), bias, act=lambda a: a / (1 + abs(a))
    )
    np.testing.assert_allclose(to64(output), expected, **TOL)


# -- LSTMCell ---------------------------------------------------------------------------------


def _run_lstm_cell(cell, rng, kernel, c0, h0, steps=3, **ref_kwargs):
    """Run ``cell`` and the numpy reference side by side; return the last c for the caller."""
    c_ref, h_ref = c0, h0
    state = LSTMStateTuple(_t(c0), _t(h0))
    bias = cell.bias.detach().double().numpy()
    for x in _steps(rng, steps):
        output, state = cell(_t(x), state)
        out_ref, c_ref, h_ref = lstm_step(
            x, c_ref, h_ref, kernel.astype(np.float64), bias, cell.forget_bias, **ref_kwargs
        )
        np.testing.assert_allclose(to64(output), out_ref, **TOL)
        np.testing.assert_allclose(to64(state.c), c_ref, **TOL)
        np.testing.assert_allclose(to64(state.h), h_ref, **TOL)
    return c_ref, h_ref


def test_lstm_cell_defaults_match_tf_formula_and_basic_lstm(rng):
    kernel, bias = random_lstm_weights(rng, F, U)
    cell, basic = LSTMCell(U), BasicLSTMCell(U)
    cell.load_tf_weights(kernel, bias)
    basic.load_tf_weights(kernel, bias)
    c0, h0 = rng.standard_normal((B, U)), rng.standard_normal((B, U))
    _run_lstm_cell(cell, rng, kernel, c0, h0)

    x = _t(rng.standard_normal((B, F)))
    state = LSTMStateTuple(_t(c0), _t(h0))
    (out_a, st_a), (out_b, st_b) = cell(x, state), basic(x, state)
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(st_a.c, st_b.c)


def test_lstm_cell_peepholes_match_tf_formula(rng):
    kernel, bias = random_lstm_weights(rng, F, U)
    diags = {name: rng.uniform(-1.5, 1.5, U).astype(np.float32) for name in ("i", "f", "o")}
    cell = LSTMCell(U, use_peepholes=True, forget_bias=0.5)
    cell.load_tf_weights(
        kernel, bias, w_i_diag=diags["i"], w_f_diag=diags["f"], w_o_diag=diags["o"]
    )
    c0, h0 = 2.0 * rng.standard_normal((B, U)), rng.standard_normal((B, U))
    _run_lstm_cell(
        cell,
        rng,
        kernel,
        c0,
        h0,
        w_i_diag=diags["i"].astype(np.float64),
        w_f_diag=diags["f"].astype(np.float64),
        w_o_diag=diags["o"].astype(np.float64),
    )
    # The peepholes matter with these numbers: the plain formula gives something else.
    x = rng.standard_normal((B, F))
    peep_out, _ = cell(_t(x), LSTMStateTuple(_t(c0), _t(h0)))
    plain_out, _, _ = lstm_step(x, c0, h0, kernel.astype(np.float64), bias, 0.5)
    assert np.abs(to64(peep_out) - plain_out).max() > 1e-2


def test_lstm_cell_cell_clip_matches_tf_formula(rng):
    kernel, bias = random_lstm_weights(rng, F, U, scale=1.5)
    clip = 0.3
    cell = LSTMCell(U, cell_clip=clip)
    cell.load_tf_weights(kernel, bias)
    c0, h0 = rng.standard_normal((B, U)), rng.standard_normal((B, U))
    c_last, _ = _run_lstm_cell(cell, rng, kernel, c0, h0, cell_clip=clip)
    assert np.abs(c_last).max() == pytest.approx(clip)  # the clip was active


def test_lstm_cell_projection_and_proj_clip_match_tf_formula(rng):
    num_proj, proj_clip = 3, 0.1
    kernel, bias = random_lstm_weights(rng, F, U)
    kernel = kernel[: F + num_proj]  # the recurrent rows are P = num_proj wide
    projection = rng.uniform(-1.0, 1.0, (U, num_proj)).astype(np.float32)
    cell = LSTMCell(U, num_proj=num_proj, proj_clip=proj_clip)
    assert cell.state_size == LSTMStateTuple(U, num_proj)
    assert cell.output_size == num_proj
    cell.load_tf_weights(kernel, bias, projection_kernel=projection)
    assert cell.input_size == F
    c0, h0 = rng.standard_normal((B, U)), 0.1 * rng.standard_normal((B, num_proj))
    _, h_last = _run_lstm_cell(
        cell,
        rng,
        kernel,
        c0,
        h0,
        projection_kernel=projection.astype(np.float64),
        proj_clip=proj_clip,
    )
    assert np.abs(h_last).max() == pytest.approx(proj_clip)  # the clip was active


def test_lstm_cell_everything_with_concatenated_state(rng):
    num_proj = 2
    kernel, bias = random_lstm_weights(rng, F, U)
    kernel = kernel[: F + num_proj]
    diags = [rng.uniform(-1, 1, U).astype(np.float32) for _ in range(3)]
    projection = rng.uniform(-1, 1, (U, num_proj)).astype(np.float32)
    cell = LSTMCell(
        U, use_peepholes=True, cell_clip=0.8, num_proj=num_proj, proj_clip=0.5, state_is_tuple=False
    )
    assert cell.state_size == U + num_proj
    cell.load_tf_weights(
        kernel,
        bias,
        w_i_diag=diags[0],
        w_f_diag=diags[1],
        w_o_diag=diags[2],
        projection_kernel=projection,
    )
    c, h = rng.standard_normal((B, U)), rng.standard_normal((B, num_proj))
    state = _t(np.concatenate([c, h], axis=1))
    for x in _steps(rng):
        output, state = cell(_t(x), state)
        out_ref, c, h = lstm_step(
            x,
            c,
            h,
            kernel.astype(np.float64),
            bias,
            w_i_diag=diags[0].astype(np.float64),
            w_f_diag=diags[1].astype(np.float64),
            w_o_diag=diags[2].astype(np.float64),
            cell_clip=0.8,
            projection_kernel=projection.astype(np.float64),
            proj_clip=0.5,
        )
        np.testing.assert_allclose(to64(output), out_ref, **TOL)
        np.testing.assert_allclose(to64(state), np.concatenate([c, h], axis=1), **TOL)


# -- building, shapes, weight loading errors ---------------------------------------------------


def test_lazy_build_on_first_call_and_mismatch_raises():
    cell = BasicLSTMCell(U)
    assert cell.input_size is None
    assert not list(cell.parameters())
    cell(torch.zeros(B, F), cell.zero_state(B))
    assert cell.input_size == F
    assert cell.kernel.shape == (F + U, 4 * U) and cell.bias.shape == (4 * U,)
    with pytest.raises(ValueError, match=f"input depth {F}, got inputs of depth {F + 1}"):
        cell(torch.zeros(B, F + 1), cell.zero_state(B))


def test_default_init_is_glorot_uniform_kernel_and_zero_bias():
    cell = LSTMCell(16, input_size=8, use_peepholes=True, num_proj=4)
    rows, cols = 8 + 4, 4 * 16
    bound = math.sqrt(6.0 / (rows + cols))
    assert cell.kernel.shape == (rows, cols)
    assert cell.kernel.abs().max() <= bound
    assert cell.kernel.abs().max() > 0.5 * bound  # really spread, not all zero
    assert torch.count_nonzero(cell.bias) == 0
    assert cell.projection_kernel.shape == (16, 4)
    assert cell.w_i_diag.shape == cell.w_f_diag.shape == cell.w_o_diag.shape == (16,)


def test_zero_state_shapes_and_dtypes():
    assert BasicRNNCell(U).zero_state(B).shape == (B, U)
    state = BasicLSTMCell(U).zero_state(B, torch.float64)
    assert isinstance(state, LSTMStateTuple)
    assert state.c.shape == state.h.shape == (B, U) and state.c.dtype == torch.float64
    assert BasicLSTMCell(U, state_is_tuple=False).zero_state(B).shape == (B, 2 * U)
    projected = LSTMCell(U, num_proj=2).zero_state(B)
    assert projected.c.shape == (B, U) and projected.h.shape == (B, 2)
    assert all(torch.count_nonzero(leaf) == 0 for leaf in projected)


def test_cell_argument_errors():
    with pytest.raises(ValueError, match="num_units must be positive"):
        BasicLSTMCell(0)
    cell = BasicLSTMCell(U, input_size=F)
    with pytest.raises(ValueError, match=r"must be \(B, F\)"):
        cell(torch.zeros(B, 2, F), cell.zero_state(B))
    with pytest.raises(ValueError, match="state batch 3 differs from inputs batch 4"):
        cell(torch.zeros(B, F), cell.zero_state(3))


def test_load_tf_weights_shape_errors(rng):
    kernel, bias = random_lstm_weights(rng, F, U)
    cell = BasicLSTMCell(U)
    with pytest.raises(ValueError, match="expects a kernel of shape"):
        cell.load_tf_weights(kernel[:, :-1], bias)
    with pytest.raises(ValueError, match="expects a kernel of shape"):
        cell.load_tf_weights(kernel[0], bias)
    with pytest.raises(ValueError, match="bias of shape"):
        cell.load_tf_weights(kernel, bias[:-1])
    with pytest.raises(ValueError, match="fewer than the 5 recurrent rows"):
        cell.load_tf_weights(kernel[:U], bias)
    built = BasicLSTMCell(U, input_size=F + 1)
    with pytest.raises(ValueError, match="built for input depth"):
        built.load_tf_weights(kernel, bias)


def test_lstm_cell_extra_weight_errors(rng):
    kernel, bias = random_lstm_weights(rng, F, U)
    diag = np.zeros(U, np.float32)
    with pytest.raises(ValueError, match="needs w_i_diag, w_o_diag"):
        LSTMCell(U, use_peepholes=True).load_tf_weights(kernel, bias, w_f_diag=diag)
    with pytest.raises(ValueError, match="use_peepholes=False"):
        LSTMCell(U).load_tf_weights(kernel, bias, w_f_diag=diag)
    with pytest.raises(ValueError, match="w_o_diag: expected shape"):
        LSTMCell(U, use_peepholes=True).load_tf_weights(
            kernel, bias, w_i_diag=diag, w_f_diag=diag, w_o_diag=diag[:-1]
        )
    proj_kernel = kernel[: F + 2]
    with pytest.raises(ValueError, match="needs projection_kernel"):
        LSTMCell(U, num_proj=2).load_tf_weights(proj_kernel, bias)
    with pytest.raises(ValueError, match="projection_kernel: expected shape"):
        LSTMCell(U, num_proj=2).load_tf_weights(
            proj_kernel, bias, projection_kernel=np.zeros((U, 3))
        )
    with pytest.raises(ValueError, match="without num_proj"):
        LSTMCell(U).load_tf_weights(kernel, bias, projection_kernel=np.zeros((U, 2)))


# -- MultiRNNCell ------------------------------------------------------------------------------


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
