"""Fixtures of the export tests: small random-weight models (F = 5, C = 3) built in-process,
their ONNX graphs and ONNX Runtime CPU sessions, and verification settings that keep them fast.

A test that takes ``torch_model``, ``onnx_model`` or ``session`` runs once per architecture
(``architecture``: ``stacked`` [8, 12], ``bidirectional`` [8, 8], ``per_direction`` [8, 6]:
bidirectional with one stack per direction); one that is about a single
architecture pins it with ``@pytest.mark.parametrize("architecture", ["stacked"])``. Each
architecture is built once per run.

Shapes: ``B`` batch, ``T`` padded time, ``F`` features, ``H_n`` width of layer ``n``, ``dirs``
directions, ``D = dirs * H_last``, ``C`` classes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import onnx
import onnxruntime as ort
import pytest
import torch

from contract.sessions import create_session
from export.graph import build_onnx_model
from export.verify import VerifySettings
from models.architectures import PER_DIRECTION, STACKED, LSTMClassifier, LSTMClassifierConfig

ARCHITECTURES = {
    "stacked": (False, (8, 12), STACKED),
    "bidirectional": (True, (8, 8), STACKED),
    "per_direction": (True, (8, 6), PER_DIRECTION),
}
"""name: (bidirectional, layer sizes, topology)."""


def _make_model(
    bidirectional: bool, layer_sizes: tuple[int, ...], topology: str = STACKED, seed: int = 0
) -> LSTMClassifier:
    """A random-weight classifier; biases are widened so that every gate matters."""
    torch.manual_seed(seed)
    config = LSTMClassifierConfig(
        input_size=5,
        layer_sizes=layer_sizes,
        num_classes=3,
        bidirectional=bidirectional,
        labels=("ka", "ki", "ku"),
        topology=topology,
    )
    model = LSTMClassifier(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "bias" in name:
                parameter.uniform_(-1.0, 1.0)
    return model


@functools.cache
def _exported(architecture: str) -> tuple[LSTMClassifier, onnx.ModelProto, ort.InferenceSession]:
    model = _make_model(*ARCHITECTURES[architecture])
    proto = build_onnx_model(model)
    return model, proto, create_session(proto.SerializeToString(), "cpu", 0)[0]


@pytest.fixture(params=list(ARCHITECTURES))
def architecture(request: pytest.FixtureRequest) -> str:
    """Each architecture in turn (a test may pin one, see the module docstring)."""
    return request.param


@pytest.fixture
def torch_model(architecture: str) -> LSTMClassifier:
    """The architecture's random-weight classifier (shared: do not change it)."""
    return _exported(architecture)[0]


@pytest.fixture
def onnx_model(architecture: str) -> onnx.ModelProto:
    """``build_onnx_model(torch_model)`` (shared: change a copy)."""
    return _exported(architecture)[1]


@pytest.fixture
def session(architecture: str) -> ort.InferenceSession:
    """An ORT CPU session of ``onnx_model``."""
    return _exported(architecture)[2]


@pytest.fixture
def make_model() -> Callable[..., LSTMClassifier]:
    """``make_model(bidirectional, layer_sizes, seed=0)``: a new random-weight classifier like
    ``torch_model`` (F = 5, labels ``ka``, ``ki``, ``ku``), for a test that saves or changes one."""
    return _make_model


@pytest.fixture
def fast_verify() -> VerifySettings:
    """Verification settings that keep a tiny model's checks well under a second."""
    return VerifySettings(max_length=24, batch_size=6, num_batches=2)
