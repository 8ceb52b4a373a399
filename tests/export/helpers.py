"""Helpers of the export tests: small random-weight models (F = 5, C = 3) built in-process,
their ONNX graphs, ORT sessions and padded batches.

Shapes: ``B`` batch, ``T`` padded time, ``F`` features, ``H_n`` width of layer ``n``, ``dirs``
directions, ``D = dirs * H_last``, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export import contract
from export.graph import build_onnx_model
from export.verify import VerifySettings, create_session
from models.architectures import LSTMClassifier, LSTMClassifierConfig
from models.rnn import LSTMStateTuple

FEATURES = 5
LABELS = ("ka", "ki", "ku")
FAST_VERIFY = VerifySettings(max_length=24, batch_size=6, num_batches=2)
"""Verification settings that keep a tiny model's checks well under a second."""


def make_model(bidirectional: bool, layer_sizes: tuple[int, ...], seed: int = 0) -> LSTMClassifier:
    """A random-weight classifier; biases are widened so that every gate matters."""
    torch.manual_seed(seed)
    config = LSTMClassifierConfig(
        input_size=FEATURES,
        layer_sizes=layer_sizes,
        num_classes=len(LABELS),
        bidirectional=bidirectional,
        labels=LABELS,
    )
    model = LSTMClassifier(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "bias" in name:
                parameter.uniform_(-1.0, 1.0)
    return model


@dataclass
class Case:
    """One architecture under test: the torch model, its ONNX graph and an ORT CPU session."""

    name: str
    model: LSTMClassifier
    proto: onnx.ModelProto
    session: ort.InferenceSession

    @property
    def config(self) -> LSTMClassifierConfig:
        return self.model.config

    def run(
        self,
        inputs: np.ndarray,
        lengths: np.ndarray,
        states: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Every graph output by name."""
        names = contract.output_names(len(self.config.layer_sizes))
        feeds = {contract.INPUTS: inputs, contract.LENGTHS: lengths.astype(np.int32)}
        feeds.update(states or {})
        return dict(zip(names, self.session.run(names, feeds), strict=True))

    def torch_run(
        self,
        inputs: np.ndarray,
        lengths: np.ndarray,
        states: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """The same outputs from the torch model, named as in the graph."""
        initial = None
        if states is not None:
            initial = tuple(
                LSTMStateTuple(
                    torch.from_numpy(states[contract.initial_c(n)]),
                    torch.from_numpy(states[contract.initial_h(n)]),
                )
                for n in range(len(self.config.layer_sizes))
            )
        with torch.no_grad():
            result = self.model(torch.from_numpy(inputs), torch.from_numpy(lengths), initial)
        arrays = {
            contract.LOGITS: result.logits.numpy(),
            contract.PROBS: result.probs.numpy(),
            contract.OUTPUTS: result.outputs.numpy(),
        }
        for n, state in enumerate(result.states):
            arrays[contract.final_c(n)] = state.c.numpy()
            arrays[contract.final_h(n)] = state.h.numpy()
        return arrays

    def random_states(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Non-zero initial states ``(dirs, B, H_n)`` for every layer."""
        dirs = self.config.num_directions
        return {
            name: rng.standard_normal((dirs, batch, hidden)).astype(np.float32)
            for n, hidden in enumerate(self.config.layer_sizes)
            for name in (contract.initial_c(n), contract.initial_h(n))
        }


def make_case(name: str, bidirectional: bool, layer_sizes: tuple[int, ...]) -> Case:
    model = make_model(bidirectional, layer_sizes)
    proto = build_onnx_model(model)
    return Case(name, model, proto, create_session(proto))


def padded_batch(
    lengths: list[int], rng: np.random.Generator, pad_value: float = 1e3
) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(B, T, F)`` inputs with ``±pad_value`` past each length, and lengths ``(B,)``."""
    lengths_array = np.array(lengths, dtype=np.int32)
    inputs = rng.standard_normal((len(lengths), max(lengths), FEATURES)).astype(np.float32)
    for row, length in enumerate(lengths):
        tail = inputs[row, length:]
        tail[...] = pad_value * rng.choice([-1.0, 1.0], size=tail.shape)
    return inputs, lengths_array
