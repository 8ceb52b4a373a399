"""Independent float64 numpy references for the TF 1.x RNN formulas, and test-data helpers.

Nothing here imports ``models``: the expectations in the tests are computed from the TF
formulas written out again, never by the code under test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

Array = np.ndarray


def sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


def basic_rnn_step(
    x: Array, h: Array, kernel: Array, bias: Array, act: Callable[[Array], Array] = np.tanh
) -> Array:
    """``h' = act(concat([x, h]) @ kernel + bias)``; ``x`` ``(B, F)``, ``h`` ``(B, U)``."""
    return act(np.concatenate([x, h], axis=1) @ kernel + bias)


def lstm_step(
    x: Array,
    c: Array,
    h: Array,
    kernel: Array,
    bias: Array,
    forget_bias: float = 1.0,
    *,
    w_i_diag: Array | None = None,
    w_f_diag: Array | None = None,
    w_o_diag: Array | None = None,
    cell_clip: float | None = None,
    projection_kernel: Array | None = None,
    proj_clip: float | None = None,
    act: Callable[[Array], Array] = np.tanh,
) -> tuple[Array, Array, Array]:
    """One step of TF's ``LSTMCell`` (``BasicLSTMCell`` when no option is set).

    Returns ``(output, new_c, new_h)``; ``output`` is ``new_h``.
    """
    z = np.concatenate([x, h], axis=1) @ kernel + bias
    i, j, f, o = np.split(z, 4, axis=1)
    if w_f_diag is not None:
        assert w_i_diag is not None
        new_c = sigmoid(f + forget_bias + w_f_diag * c) * c + sigmoid(i + w_i_diag * c) * act(j)
    else:
        new_c = sigmoid(f + forget_bias) * c + sigmoid(i) * act(j)
    if cell_clip is not None:
        new_c = np.clip(new_c, -cell_clip, cell_clip)
    if w_o_diag is not None:
        m = sigmoid(o + w_o_diag * new_c) * act(new_c)
    else:
        m = sigmoid(o) * act(new_c)
    if projection_kernel is not None:
        m = m @ projection_kernel
        if proj_clip is not None:
            m = np.clip(m, -proj_clip, proj_clip)
    return m, new_c, m


def lstm_sequence(
    xs: Array, c0: Array, h0: Array, kernel: Array, bias: Array, forget_bias: float = 1.0
) -> tuple[Array, Array, Array]:
    """Run ``BasicLSTMCell`` over one sequence ``xs`` ``(L, F)`` from ``(c0, h0)`` ``(U,)``.

    Returns ``(outputs (L, U), c_L, h_L)``.
    """
    c, h = c0[None, :], h0[None, :]
    outputs = []
    for x in xs:
        out, c, h = lstm_step(x[None, :], c, h, kernel, bias, forget_bias)
        outputs.append(out[0])
    width = h.shape[1]
    stacked = np.stack(outputs) if outputs else np.zeros((0, width))
    return stacked, c[0], h[0]


def random_lstm_weights(
    rng: np.random.Generator, input_size: int, num_units: int, scale: float = 0.5
) -> tuple[Array, Array]:
    """A TF-layout ``(kernel (F + U, 4U), bias (4U,))`` pair in float32."""
    kernel = rng.uniform(-scale, scale, size=(input_size + num_units, 4 * num_units))
    bias = rng.uniform(-scale, scale, size=4 * num_units)
    return kernel.astype(np.float32), bias.astype(np.float32)


def padded_batch(
    rng: np.random.Generator,
    lengths: Sequence[int],
    max_time: int,
    features: int,
    garbage: float = 1e3,
) -> torch.Tensor:
    """``(B, T, F)`` float32: standard normal real steps, huge random values in the padding."""
    batch = rng.standard_normal((len(lengths), max_time, features))
    for row, length in enumerate(lengths):
        batch[row, length:] = garbage * rng.standard_normal((max_time - length, features))
    return torch.from_numpy(batch.astype(np.float32))


def to64(tensor: torch.Tensor) -> Array:
    return tensor.detach().double().cpu().numpy()
