"""LSTM weight layouts and the conversions between them.

One LSTM layer of hidden width ``H`` reading ``F`` features is stored three ways:

* TensorFlow 1.x: ``kernel`` ``(F + H, 4H)`` (rows: x then h) and ``bias`` ``(4H,)``, column blocks
  in gate order **i, j, f, o**; ``forget_bias`` is added to f at run time, not stored.
* torch ``nn.LSTM``: ``weight_ih`` ``(4H, F)``, ``weight_hh`` ``(4H, H)``, ``bias_ih`` and
  ``bias_hh`` ``(4H,)``, row blocks in order **i, f, g, o** (g is TF's j).
* ONNX ``LSTM``: ``W`` ``(4H, F)``, ``R`` ``(4H, H)``, ``Wb`` and ``Rb`` ``(4H,)`` per direction, in
  order **i, o, f, c** (c is TF's j) — see ``export``.

Invariant: TF (i, j, f, o) + forget_bias == torch (i, f, g, o) with forget_bias folded into the
f bias. The conversions below are exact (no arithmetic but that one addition).
"""

from __future__ import annotations

import numpy as np

# Positions of TF's blocks i, j, f, o inside torch's order i, f, g(=j), o.
_TF_BLOCKS_IN_TORCH_ORDER = (0, 2, 1, 3)  # torch block n is TF block _TF_...[n]


def _blocks(array: np.ndarray, hidden: int, axis: int) -> list[np.ndarray]:
    if array.shape[axis] != 4 * hidden:
        raise ValueError(
            f"expected 4 * {hidden} = {4 * hidden} along axis {axis}, got {array.shape}"
        )
    return np.split(array, 4, axis=axis)


def tf_to_torch_lstm(
    kernel: np.ndarray, bias: np.ndarray, forget_bias: float = 1.0
) -> dict[str, np.ndarray]:
    """TF ``kernel`` ``(F + H, 4H)`` and ``bias`` ``(4H,)`` to torch's ``weight_ih`` ``(4H, F)``,
    ``weight_hh`` ``(4H, H)``, ``bias_ih`` ``(4H,)`` (forget_bias folded in) and a zero ``bias_hh``.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    bias = np.asarray(bias, dtype=np.float32)
    hidden = kernel.shape[1] // 4
    input_size = kernel.shape[0] - hidden
    if input_size <= 0 or bias.shape != (4 * hidden,):
        raise ValueError(f"not a TF LSTM kernel/bias pair: {kernel.shape}, {bias.shape}")
    tf_cols = _blocks(kernel, hidden, axis=1)
    tf_bias = _blocks(bias, hidden, axis=0)
    tf_bias[2] = tf_bias[2] + np.float32(forget_bias)  # fold forget_bias into f
    order = _TF_BLOCKS_IN_TORCH_ORDER
    weight = np.concatenate([tf_cols[k] for k in order], axis=1).T  # (4H, F + H)
    return {
        "weight_ih": np.ascontiguousarray(weight[:, :input_size]),
        "weight_hh": np.ascontiguousarray(weight[:, input_size:]),
        "bias_ih": np.concatenate([tf_bias[k] for k in order]),
        "bias_hh": np.zeros(4 * hidden, dtype=np.float32),
    }


def torch_to_tf_lstm(
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias_ih: np.ndarray,
    bias_hh: np.ndarray,
    forget_bias: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """torch ``nn.LSTM`` weights of one layer and direction to TF ``(kernel, bias)``.

    The two torch biases are summed and ``forget_bias`` is taken out of f, so a TF cell built
    with the same ``forget_bias`` computes the same numbers.
    """
    hidden = weight_hh.shape[1]
    weight = np.concatenate([weight_ih, weight_hh], axis=1)  # (4H, F + H)
    torch_rows = _blocks(weight, hidden, axis=0)
    torch_bias = _blocks(np.asarray(bias_ih) + np.asarray(bias_hh), hidden, axis=0)
    # TF block k sits at torch position order.index(k); the permutation is its own inverse.
    order = _TF_BLOCKS_IN_TORCH_ORDER
    kernel = np.concatenate([torch_rows[order[k]] for k in range(4)], axis=0).T
    tf_bias = [torch_bias[order[k]] for k in range(4)]
    tf_bias[2] = tf_bias[2] - np.float32(forget_bias)
    return np.ascontiguousarray(kernel, dtype=np.float32), np.concatenate(tf_bias).astype(
        np.float32
    )
