"""Models this project did not export, as users bring them, for the "bring your own model" tests.

* ``export_plain_lstm``: ``torch.onnx.export`` of a plain ``nn.LSTM`` + ``nn.Linear`` with no
  lengths input (padding-sensitive): input ``x`` ``[N, T, F]`` (batch-major) or ``[T, N, F]``
  (time-major), outputs ``scores`` ``[N, C]`` (the head on the last step), ``y`` (per-step,
  the input's layout), ``h_n`` ``[layers, N, H]`` and ``best`` ``[N]`` int64 (the argmax); a
  symbolic batch dimension named ``N`` and opset 14, as an exporter elsewhere writes them.
* ``renamed_contract_model``: one of this project's graphs with every name changed, ``probs``
  dropped and an int64 lengths input: inputs ``x``, ``lens``; outputs ``scores`` (logits),
  ``per_step``, ``state_{c|h}_{n}``.

Shapes: ``N``/``B`` batch, ``T`` time, ``F`` features, ``H`` hidden width, ``C`` classes.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from contract.names import CONFIG_FILENAME, MODEL_FILENAME

PLAIN_FEATURES = 5
PLAIN_HIDDEN = 8
PLAIN_CLASSES = 3
PLAIN_LAYERS = 2


class PlainLSTM(nn.Module):
    """``nn.LSTM`` + ``nn.Linear`` on the last step, no lengths: what a user writes."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.lstm = nn.LSTM(
            PLAIN_FEATURES, PLAIN_HIDDEN, num_layers=PLAIN_LAYERS, batch_first=batch_first
        )
        self.head = nn.Linear(PLAIN_HIDDEN, PLAIN_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``x`` ``[N, T, F]`` (or ``[T, N, F]``): ``scores`` ``[N, C]``, ``y``, ``h_n``,
        ``best`` ``[N]``."""
        y, (h_n, _) = self.lstm(x)
        scores = self.head(y[:, -1] if self.batch_first else y[-1])
        return scores, y, h_n, scores.argmax(dim=1)


def plain_lstm(batch_first: bool = True, seed: int = 0) -> PlainLSTM:
    torch.manual_seed(seed)
    return PlainLSTM(batch_first).eval()


def export_plain_lstm(
    model: PlainLSTM, repo: Path, name: str, config: str | None = None, ir_version: int = 0
) -> Path:
    """``model`` as ``<repo>/<name>/1/model.onnx`` (with ``config`` as its ``config.pbtxt`` if
    given, and ``ir_version`` stamped if not 0); returns the model file."""
    axes = {0: "N", 1: "T"} if model.batch_first else {0: "T", 1: "N"}
    example = torch.zeros((2, 4, PLAIN_FEATURES) if model.batch_first else (4, 2, PLAIN_FEATURES))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            input_names=["x"],
            output_names=["scores", "y", "h_n", "best"],
            dynamic_axes={
                "x": axes,
                "y": axes,
                "scores": {0: "N"},
                "h_n": {1: "N"},
                "best": {0: "N"},
            },
            opset_version=14,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    if ir_version:
        proto.ir_version = ir_version
    return _write(proto, repo, name, config)


def run_plain(model: PlainLSTM, sequence: np.ndarray) -> dict[str, np.ndarray]:
    """``sequence`` ``(L, F)`` alone through the torch ``model``: ``scores`` ``(C,)``, ``y``
    ``(L, H)``, ``h_n`` ``(layers, H)``, ``best`` ``()``."""
    x = torch.from_numpy(sequence[np.newaxis] if model.batch_first else sequence[:, np.newaxis])
    with torch.no_grad():
        scores, y, h_n, best = model(x)
    return {
        "scores": scores[0].numpy(),
        "y": (y[0] if model.batch_first else y[:, 0]).numpy(),
        "h_n": h_n[:, 0].numpy(),
        "best": best[0].numpy(),
    }


RENAMES = {"inputs": "x", "logits": "scores", "outputs": "per_step"}


def renamed_contract_model(source: Path, repo: Path, name: str, config: str | None = None) -> Path:
    """The contract graph ``source`` renamed (``RENAMES``; states ``initial_*`` to ``init_*``,
    ``final_*`` to ``state_*``), without ``probs``, its lengths an int64 input ``lens`` cast to
    the int32 the LSTM nodes take; written as ``<repo>/<name>/1/model.onnx``."""
    proto = onnx.load(source)
    graph = proto.graph

    def rename(value: str) -> str:
        if value.startswith("initial_"):
            return "init_" + value.removeprefix("initial_")
        if value.startswith("final_"):
            return "state_" + value.removeprefix("final_")
        return RENAMES.get(value, value)

    for node in graph.node:
        node.input[:] = [rename(v) for v in node.input]
        node.output[:] = [rename(v) for v in node.output]
    for value in [*graph.input, *graph.output, *graph.initializer]:
        value.name = rename(value.name)
    kept = [o for o in graph.output if o.name != "probs"]
    del graph.output[:]
    graph.output.extend(kept)
    lengths = next(i for i in graph.input if i.name == "lengths")
    lengths.name = "lens"
    lengths.type.tensor_type.elem_type = TensorProto.INT64
    graph.node.insert(0, helper.make_node("Cast", ["lens"], ["lengths"], to=TensorProto.INT32))
    del proto.metadata_props[:]  # not this project's export any more
    onnx.checker.check_model(proto)
    return _write(proto, repo, name, config)


def _write(proto: onnx.ModelProto, repo: Path, name: str, config: str | None) -> Path:
    folder = repo / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_FILENAME
    onnx.save(proto, path)
    if config is not None:
        (repo / name / CONFIG_FILENAME).write_text(config)
    return path
