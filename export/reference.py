"""The two sides of every check of an export, named alike, and the random feeds they run on.

* ``torch_outputs``: the reference. ``LSTMClassifier`` on numpy feeds, its results named as the
  graph names its outputs (``docs/model-contract.md``): ``logits``, ``probs``, ``outputs``,
  ``final_c_{n}`` and ``final_h_{n}``.
* ``onnx_outputs``: an ONNX Runtime session on the same feeds, every output by name.
* ``random_padded_batch`` and ``random_initial_states``: feeds that show a bug at once
  (``±pad_value`` past each length, non-zero states).

``export.verify`` compares the two sides on every export; the export tests and
``bench/gpu_check.py`` compare them too, through these same functions.

Shapes: ``B`` batch, ``T`` padded time, ``F`` input features, ``H_n`` width of layer ``n``,
``dirs`` 1 or 2, ``D = dirs * H_last``, ``C`` classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort
import torch

from contract.names import (
    INPUTS,
    LENGTHS,
    LOGITS,
    OUTPUTS,
    PROBS,
    final_c,
    final_h,
    initial_c,
    initial_h,
)
from models.architectures import LSTMClassifier, LSTMClassifierConfig
from models.rnn import LSTMStateTuple

Arrays = dict[str, np.ndarray]


def torch_outputs(
    model: LSTMClassifier,
    inputs: np.ndarray,
    lengths: np.ndarray,
    initial_states: Mapping[str, np.ndarray] | None = None,
) -> Arrays:
    """``model`` on ``inputs`` ``(B, T, F)`` and ``lengths`` ``(B,)``, as the graph answers.

    ``initial_states`` maps ``initial_{c,h}_{n}`` to ``(dirs, B, H_n)``, like the graph's feeds
    (None: zeros). The model runs in its own dtype and on its own device, so a ``.double()``
    copy gives the float64 reference; inputs and states are cast to it, ``lengths`` stay on
    the CPU. Returns ``logits``/``probs`` ``(B, C)``, ``outputs`` ``(B, T, D)`` and
    ``final_{c,h}_{n}`` ``(dirs, B, H_n)`` as CPU arrays, in the graph's output order.
    """
    parameter = next(model.parameters())

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array)).to(parameter.device, parameter.dtype)

    initial = None
    if initial_states is not None:
        initial = tuple(
            LSTMStateTuple(
                tensor(initial_states[initial_c(n)]),
                tensor(initial_states[initial_h(n)]),
            )
            for n in range(len(model.config.layer_sizes))
        )
    with torch.no_grad():
        result = model(tensor(inputs), torch.from_numpy(np.asarray(lengths)), initial)
    arrays = {
        LOGITS: result.logits.cpu().numpy(),
        PROBS: result.probs.cpu().numpy(),
        OUTPUTS: result.outputs.cpu().numpy(),
    }
    for n, state in enumerate(result.states):
        arrays[final_c(n)] = state.c.cpu().numpy()
        arrays[final_h(n)] = state.h.cpu().numpy()
    return arrays


def onnx_outputs(
    session: ort.InferenceSession,
    inputs: np.ndarray,
    lengths: np.ndarray,
    initial_states: Mapping[str, np.ndarray] | None = None,
    names: Sequence[str] | None = None,
) -> Arrays:
    """``session`` on the same feeds as ``torch_outputs``: the outputs ``names`` (default:
    every output of the session), by name. ``lengths`` are fed as int32."""
    names = list(names) if names is not None else [o.name for o in session.get_outputs()]
    feeds = {INPUTS: inputs, LENGTHS: np.asarray(lengths, dtype=np.int32)}
    feeds.update(initial_states or {})
    return dict(zip(names, session.run(names, feeds), strict=True))


def random_padded_batch(
    lengths: Sequence[int] | np.ndarray,
    features: int,
    rng: np.random.Generator,
    pad_value: float = 1e3,
) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``(B, T, F)`` float32 inputs, ``T = max(lengths)``, with ``±pad_value``
    past each length (see ``fill_padding``), and the lengths ``(B,)`` int32."""
    lengths_array = np.asarray(lengths, dtype=np.int32)
    shape = (len(lengths_array), int(lengths_array.max()), features)
    inputs = rng.standard_normal(shape).astype(np.float32)
    fill_padding(inputs, lengths_array, pad_value, rng)
    return inputs, lengths_array


def fill_padding(
    inputs: np.ndarray, lengths: np.ndarray, value: float, rng: np.random.Generator
) -> None:
    """Write ``±value`` (random signs) into ``inputs`` ``(B, T, F)`` past each length, in place:
    a graph that reads the padding shows it at once."""
    for row, length in enumerate(lengths):
        tail = inputs[row, length:]
        tail[...] = value * rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=tail.shape)


def random_initial_states(
    config: LSTMClassifierConfig, batch_size: int, rng: np.random.Generator, scale: float = 1.0
) -> Arrays:
    """Non-zero initial states ``(dirs, B, H_n)`` float32 for every layer, named as the graph's
    feeds: ``scale`` times standard normal values."""
    dirs = config.num_directions
    return {
        name: (scale * rng.standard_normal((dirs, batch_size, hidden))).astype(np.float32)
        for n, hidden in enumerate(config.layer_sizes)
        for name in (initial_c(n), initial_h(n))
    }
