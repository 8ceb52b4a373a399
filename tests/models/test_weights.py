"""``models.weights``: TF (i, j, f, o) + forget_bias == torch (i, f, g, o) with it folded in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.rnn import BasicLSTMCell, dynamic_rnn
from models.weights import tf_to_torch_lstm, torch_to_tf_lstm
from tests.support.numpy_tf_rnn import lstm_sequence, random_lstm_weights, to64

F, H = 3, 4


def test_tf_to_torch_block_placement(rng):
    kernel, bias = random_lstm_weights(rng, F, H)
    fb = 0.75
    torch_w = tf_to_torch_lstm(kernel, bias, forget_bias=fb)
    assert torch_w["weight_ih"].shape == (4 * H, F)
    assert torch_w["weight_hh"].shape == (4 * H, H)
    assert torch_w["bias_ih"].shape == torch_w["bias_hh"].shape == (4 * H,)
    assert all(a.dtype == np.float32 for a in torch_w.values())

    def tf_block(k: int) -> slice:  # TF column block k: 0 i, 1 j, 2 f, 3 o
        return slice(k * H, (k + 1) * H)

    torch_order_of_tf = {"i": 0, "f": 2, "g": 1, "o": 3}
    for position, gate in enumerate("ifgo"):
        rows = slice(position * H, (position + 1) * H)
        cols = tf_block(torch_order_of_tf[gate])
        np.testing.assert_array_equal(torch_w["weight_ih"][rows], kernel[:F, cols].T)
        np.testing.assert_array_equal(torch_w["weight_hh"][rows], kernel[F:, cols].T)
        expected_bias = bias[cols] + (np.float32(fb) if gate == "f" else np.float32(0))
        np.testing.assert_array_equal(torch_w["bias_ih"][rows], expected_bias)
    np.testing.assert_array_equal(torch_w["bias_hh"], np.zeros(4 * H, np.float32))


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 2.5])
def test_tf_torch_tf_round_trip(rng, forget_bias):
    kernel, bias = random_lstm_weights(rng, F, H)
    back_kernel, back_bias = torch_to_tf_lstm(
        **tf_to_torch_lstm(kernel, bias, forget_bias), forget_bias=forget_bias
    )
    np.testing.assert_array_equal(back_kernel, kernel)
    f = slice(2 * H, 3 * H)
    not_f = np.ones(4 * H, bool)
    not_f[f] = False
    np.testing.assert_array_equal(back_bias[not_f], bias[not_f])
    # f goes through (b + forget_bias) - forget_bias in float32: at most one rounding of b + fb.
    ulp = np.spacing(np.abs(bias[f]) + np.float32(forget_bias))
    assert np.all(np.abs(back_bias[f] - bias[f]) <= ulp)


def test_round_trip_is_bit_exact_for_exactly_representable_biases(rng):
    kernel, _ = random_lstm_weights(rng, F, H)
    bias = (rng.integers(-512, 512, 4 * H) / 256).astype(np.float32)  # no rounding in b + 1
    back_kernel, back_bias = torch_to_tf_lstm(
        **tf_to_torch_lstm(kernel, bias, 1.0), forget_bias=1.0
    )
    assert back_kernel.tobytes() == kernel.tobytes()
    assert back_bias.tobytes() == bias.tobytes()


def test_torch_tf_torch_round_trip_sums_the_two_biases(rng):
    lstm = torch.nn.LSTM(F, H)
    weights = {
        name: getattr(lstm, f"{name}_l0").detach().numpy().copy()
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    kernel, bias = torch_to_tf_lstm(**weights, forget_bias=0.0)
    assert kernel.shape == (F + H, 4 * H) and bias.shape == (4 * H,)
    back = tf_to_torch_lstm(kernel, bias, forget_bias=0.0)
    np.testing.assert_array_equal(back["weight_ih"], weights["weight_ih"])
    np.testing.assert_array_equal(back["weight_hh"], weights["weight_hh"])
    np.testing.assert_array_equal(back["bias_ih"], weights["bias_ih"] + weights["bias_hh"])
    np.testing.assert_array_equal(back["bias_hh"], np.zeros(4 * H, np.float32))


@pytest.mark.parametrize("forget_bias", [1.0, 0.3])
def test_nn_lstm_with_converted_weights_equals_tf_cell(rng, forget_bias):
    kernel, bias = random_lstm_weights(rng, F, H)
    lstm = torch.nn.LSTM(F, H, batch_first=True)
    with torch.no_grad():
        for name, array in tf_to_torch_lstm(kernel, bias, forget_bias).items():
            getattr(lstm, f"{name}_l0").copy_(torch.from_numpy(array))
    cell = BasicLSTMCell(H, forget_bias=forget_bias)
    cell.load_tf_weights(kernel, bias)

    inputs = torch.from_numpy(rng.standard_normal((3, 6, F)).astype(np.float32))
    c0 = torch.from_numpy(rng.standard_normal((3, H)).astype(np.float32))
    h0 = torch.from_numpy(rng.standard_normal((3, H)).astype(np.float32))
    with torch.no_grad():
        fused_out, (h_n, c_n) = lstm(inputs, (h0[None], c0[None]))
        cell_out, state = dynamic_rnn(cell, inputs, initial_state=(c0, h0))
    torch.testing.assert_close(fused_out, cell_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_n[0], state[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c_n[0], state[0], rtol=1e-5, atol=1e-6)
    # And both are TF's formula.
    ref_out, ref_c, _ = lstm_sequence(
        to64(inputs[1]), to64(c0[1]), to64(h0[1]), kernel.astype(np.float64), bias, forget_bias
    )
    np.testing.assert_allclose(to64(fused_out[1]), ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to64(c_n[0, 1]), ref_c, rtol=1e-5, atol=1e-6)


def test_conversion_shape_errors(rng):
    kernel, bias = random_lstm_weights(rng, F, H)
    with pytest.raises(ValueError, match="not a TF LSTM kernel/bias pair"):
        tf_to_torch_lstm(kernel, bias[:-1])
    with pytest.raises(ValueError, match="not a TF LSTM kernel/bias pair"):
        tf_to_torch_lstm(kernel[:H], bias)  # no input rows left
    with pytest.raises(ValueError, match="expected 4 \\* 3 = 12"):
        tf_to_torch_lstm(kernel[:, :-1], bias[:12])  # 15 columns: not 4 gate blocks
    w = tf_to_torch_lstm(kernel, bias)
    with pytest.raises(ValueError, match="expected 4 \\* 4 = 16"):
        torch_to_tf_lstm(w["weight_ih"][:-1], w["weight_hh"][:-1], w["bias_ih"], w["bias_hh"])
