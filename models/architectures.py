"""The architectures that are trained, exported and served: LSTM stacks with a classifier head.

Shapes: ``B`` batch, ``T`` padded time, ``F`` input features, ``H_n`` hidden width of layer
``n``, ``D = dirs * H_last`` the top layer's output width (``dirs`` is 2 when bidirectional),
``C`` classes.

Each layer is a fused ``torch.nn.LSTM`` (one per layer, so layers can have different widths)
run on packed sequences, so padding never reaches a result. ``reference_forward`` computes the
same thing cell by cell with ``models.rnn`` (``dynamic_rnn`` over a ``MultiRNNCell``, or
``stack_bidirectional_dynamic_rnn``); the tests prove the two agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.rnn import (
    BasicLSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
    dynamic_rnn,
    stack_bidirectional_dynamic_rnn,
)
from models.weights import tf_to_torch_lstm, torch_to_tf_lstm


@dataclass(frozen=True)
class LSTMClassifierConfig:
    """What defines an ``LSTMClassifier``; saved in checkpoints and ONNX metadata."""

    input_size: int
    layer_sizes: tuple[int, ...]
    num_classes: int
    bidirectional: bool = False
    labels: tuple[str, ...] = field(default=())
    dropout: float = 0.0
    """Dropout between layers and before the head, in training only."""
    forget_bias: float = 1.0
    """The TF ``forget_bias`` used when weights are converted to or from TF cells."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_sizes", tuple(int(n) for n in self.layer_sizes))
        labels = tuple(str(label) for label in self.labels) or tuple(
            str(k) for k in range(self.num_classes)
        )
        object.__setattr__(self, "labels", labels)
        if self.input_size <= 0 or self.num_classes <= 0:
            raise ValueError("input_size and num_classes must be positive")
        if not self.layer_sizes or min(self.layer_sizes) <= 0:
            raise ValueError(f"layer_sizes must be positive widths, got {self.layer_sizes}")
        if len(labels) != self.num_classes:
            raise ValueError(f"{len(labels)} labels given for {self.num_classes} classes")

    @property
    def architecture(self) -> str:
        return "bidirectional_lstm" if self.bidirectional else "stacked_lstm"

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """``D``: width of the top layer's per-step outputs."""
        return self.layer_sizes[-1] * self.num_directions

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layer_sizes"] = list(self.layer_sizes)
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LSTMClassifierConfig:
        return cls(**data)


class ClassifierOutput(NamedTuple):
    """Everything a forward pass returns.

    * ``logits``, ``probs``: ``(B, C)``
    * ``outputs``: ``(B, T, D)`` top-layer outputs, zero past each length (fw then bw halves)
    * ``states``: one ``LSTMStateTuple(c, h)`` per layer, each tensor ``(dirs, B, H_n)``
      (direction 0 forward, 1 backward): the state after each sequence's last real step
    """

    logits: torch.Tensor
    probs: torch.Tensor
    outputs: torch.Tensor
    states: tuple[LSTMStateTuple, ...]


InitialStates = tuple[LSTMStateTuple, ...] | None
"""Per layer ``LSTMStateTuple(c, h)``, each ``(dirs, B, H_n)``; None means zeros."""


def _check_batch(inputs: torch.Tensor, lengths: torch.Tensor, input_size: int) -> torch.Tensor:
    if inputs.dim() != 3 or inputs.shape[2] != input_size:
        raise ValueError(f"inputs must be (B, T, {input_size}), got {tuple(inputs.shape)}")
    lengths = torch.as_tensor(lengths).long().cpu()
    if lengths.shape != (inputs.shape[0],):
        raise ValueError(f"lengths must be ({inputs.shape[0]},), got {tuple(lengths.shape)}")
    if inputs.shape[0] and (lengths.min() < 1 or lengths.max() > inputs.shape[1]):
        raise ValueError(f"lengths must lie in [1, {inputs.shape[1]}], got {lengths.tolist()}")
    return lengths


class LSTMClassifier(nn.Module):
    """A stack of (bi)LSTM layers of per-layer widths, classified from the final state.

    The head reads the final ``h`` of the top layer (``concat([h_fw, h_bw])`` when
    bidirectional): ``logits = h @ W + b``, ``probs = softmax(logits)``.
    """

    def __init__(self, config: LSTMClassifierConfig) -> None:
        super().__init__()
        self.config = config
        widths = (config.input_size,) + tuple(
            size * config.num_directions for size in config.layer_sizes[:-1]
        )
        self.layers = nn.ModuleList(
            nn.LSTM(width, size, batch_first=True, bidirectional=config.bidirectional)
            for width, size in zip(widths, config.layer_sizes, strict=True)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.output_size, config.num_classes)

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial_states: InitialStates = None
    ) -> ClassifierOutput:
        """Run a padded batch.

        Args:
            inputs: ``(B, T, F)``; values past each length are ignored.
            lengths: ``(B,)`` real lengths, each in ``[1, T]``.
            initial_states: optional per-layer ``LSTMStateTuple(c, h)`` of ``(dirs, B, H_n)``.
        """
        lengths = _check_batch(inputs, lengths, self.config.input_size)
        max_time = inputs.shape[1]
        layer_input = inputs
        states = []
        for n, layer in enumerate(self.layers):
            packed = pack_padded_sequence(
                layer_input, lengths, batch_first=True, enforce_sorted=False
            )
            hx = None
            if initial_states is not None:
                c0, h0 = initial_states[n]
                hx = (h0.contiguous(), c0.contiguous())
            packed_out, (h_n, c_n) = layer(packed, hx)
            out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=max_time)
            states.append(LSTMStateTuple(c_n, h_n))
            layer_input = self.dropout(out) if n + 1 < len(self.layers) else out
        top_h = states[-1].h  # (dirs, B, H)
        final = torch.cat(list(top_h), dim=1)  # (B, D), forward first
        logits = self.head(self.dropout(final))
        return ClassifierOutput(logits, torch.softmax(logits, dim=1), layer_input, tuple(states))

    # -- the cell-by-cell path -----------------------------------------------------------------
    def to_tf_cells(self) -> tuple[list[BasicLSTMCell], list[BasicLSTMCell]]:
        """``BasicLSTMCell`` copies of every layer (forward cells, backward cells), TF layout."""
        cells: tuple[list[BasicLSTMCell], list[BasicLSTMCell]] = ([], [])
        for layer, size in zip(self.layers, self.config.layer_sizes, strict=True):
            for direction in range(self.config.num_directions):
                suffix = "_reverse" if direction else ""
                weights = {
                    name: getattr(layer, f"{name}_l0{suffix}").detach().cpu().numpy()
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                }
                kernel, bias = torch_to_tf_lstm(**weights, forget_bias=self.config.forget_bias)
                cell = BasicLSTMCell(size, forget_bias=self.config.forget_bias)
                cell.load_tf_weights(kernel, bias)
                cells[direction].append(cell.to(self.head.weight.device))
        return cells

    def load_tf_layers(self, layers: list[list[tuple[Any, Any]]], head: tuple[Any, Any]) -> None:
        """Load TF-layout weights: ``layers[n][direction] = (kernel, bias)`` and
        ``head = (W (D, C), b (C,))``, with the config's ``forget_bias`` folded in."""
        if len(layers) != len(self.layers):
            raise ValueError(f"expected weights for {len(self.layers)} layers, got {len(layers)}")
        with torch.no_grad():
            for layer, directions in zip(self.layers, layers, strict=True):
                if len(directions) != self.config.num_directions:
                    raise ValueError(
                        f"expected {self.config.num_directions} directions, got {len(directions)}"
                    )
                for direction, (kernel, bias) in enumerate(directions):
                    suffix = "_reverse" if direction else ""
                    converted = tf_to_torch_lstm(kernel, bias, self.config.forget_bias)
                    for name, array in converted.items():
                        target = getattr(layer, f"{name}_l0{suffix}")
                        if tuple(target.shape) != array.shape:
                            raise ValueError(
                                f"layer weight {name}{suffix}: expected {tuple(target.shape)}, "
                                f"got {array.shape}"
                            )
                        target.copy_(torch.from_numpy(array))
            weight, bias = (torch.as_tensor(a, dtype=torch.float32) for a in head)
            if tuple(weight.shape) != (self.config.output_size, self.config.num_classes):
                raise ValueError(
                    f"head weight: expected ({self.config.output_size}, "
                    f"{self.config.num_classes}), got {tuple(weight.shape)}"
                )
            if tuple(bias.shape) != (self.config.num_classes,):
                raise ValueError(
                    f"head bias: expected ({self.config.num_classes},), got {tuple(bias.shape)}"
                )
            self.head.weight.copy_(weight.T)
            self.head.bias.copy_(bias)


def reference_forward(
    model: LSTMClassifier, inputs: torch.Tensor, lengths: torch.Tensor
) -> ClassifierOutput:
    """The same forward pass as ``model(inputs, lengths)``, computed cell by cell in TF style.

    Unidirectional: ``dynamic_rnn(MultiRNNCell(cells), ...)``; bidirectional:
    ``stack_bidirectional_dynamic_rnn``. States are returned in ``model``'s ``(dirs, B, H)`` form.
    """
    lengths = _check_batch(inputs, lengths, model.config.input_size).to(inputs.device)
    cells_fw, cells_bw = model.to_tf_cells()
    if model.config.bidirectional:
        outputs, states_fw, states_bw = stack_bidirectional_dynamic_rnn(
            cells_fw, cells_bw, inputs, sequence_length=lengths
        )
        states = tuple(
            LSTMStateTuple(torch.stack([fw.c, bw.c]), torch.stack([fw.h, bw.h]))
            for fw, bw in zip(states_fw, states_bw, strict=True)
        )
    else:
        outputs, layer_states = dynamic_rnn(MultiRNNCell(cells_fw), inputs, sequence_length=lengths)
        states = tuple(LSTMStateTuple(s.c.unsqueeze(0), s.h.unsqueeze(0)) for s in layer_states)
    final = torch.cat(list(states[-1].h), dim=1)
    logits = model.head(final)
    return ClassifierOutput(logits, torch.softmax(logits, dim=1), outputs, states)
