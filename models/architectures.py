"""The architectures that are trained, exported and served: LSTM stacks with a classifier head.

Shapes: ``B`` batch, ``T`` padded time, ``F`` input features, ``H_n`` hidden width of layer
``n``, ``D = dirs * H_last`` the top layer's output width (``dirs`` is 2 when bidirectional),
``C`` classes.

Each layer is a fused ``torch.nn.LSTM`` (one per layer, so layers can have different widths)
run on packed sequences, so padding never reaches a result. ``reference_forward`` computes the
same thing cell by cell with ``models.rnn``; the tests prove the two agree.

Two topologies of bidirectional stacks (``LSTMClassifierConfig.topology``):

* ``"stacked"``: layer ``n`` of each direction reads ``concat(out_fw, out_bw)`` of layer
  ``n-1`` (width ``2 * H_{n-1}``), as ``stack_bidirectional_dynamic_rnn`` and torch's
  ``nn.LSTM(bidirectional=True, num_layers=k)``. One bidirectional ``nn.LSTM`` per layer.
* ``"per_direction"``: one stack per direction, as ``bidirectional_dynamic_rnn(
  MultiRNNCell(fw cells), MultiRNNCell(bw cells))``: layer ``n`` of a direction reads only that
  direction's layer ``n-1`` (width ``H_{n-1}``); the two are concatenated only at the top. Two
  unidirectional ``nn.LSTM`` per layer; the backward stack runs over each sequence reversed
  within its own length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, cast

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.rnn import (
    BasicLSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
    reverse_sequence,
    stack_bidirectional_dynamic_rnn,
)
from models.topology import PER_DIRECTION, STACKED, TOPOLOGIES
from models.weights import tf_to_torch_lstm, torch_to_tf_lstm

LSTM_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
"""The parameters of one direction of one layer, in torch layout (see ``direction_weights``)."""


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
    topology: str = STACKED
    """How bidirectional layers are wired (``TOPOLOGIES``, module docstring); ``"per_direction"``
    only for bidirectional models of two or more layers (with one layer both are the same)."""

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
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        if self.topology == PER_DIRECTION and (not self.bidirectional or len(self.layer_sizes) < 2):
            raise ValueError(
                "topology 'per_direction' needs a bidirectional model of two or more layers "
                f"(got bidirectional={self.bidirectional}, {len(self.layer_sizes)} layer(s)); "
                "with one layer it is the same as 'stacked'"
            )

    @property
    def architecture(self) -> str:
        return "bidirectional_lstm" if self.bidirectional else "stacked_lstm"

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def per_direction(self) -> bool:
        return self.topology == PER_DIRECTION

    @property
    def layer_input_sizes(self) -> tuple[int, ...]:
        """What each layer of one direction reads: ``F``, then ``dirs * H_{n-1}`` when stacked
        or ``H_{n-1}`` per direction."""
        below = 1 if self.per_direction else self.num_directions
        return (self.input_size,) + tuple(size * below for size in self.layer_sizes[:-1])

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


def _run_packed(
    lstm: nn.LSTM,
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    hx: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, LSTMStateTuple]:
    """One ``nn.LSTM`` over a padded batch as packed sequences, so padding is never read.

    ``inputs`` ``(B, T, W)``, ``lengths`` ``(B,)`` on the CPU, ``hx = (h0, c0)`` of ``(k, B, H)``
    or None. Returns outputs ``(B, T, k*H)``, zero past each length, and the state after each
    sequence's last real step as ``LSTMStateTuple(c, h)`` of ``(k, B, H)`` (``k`` is the
    module's number of directions).
    """
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    if hx is not None:
        hx = (hx[0].contiguous(), hx[1].contiguous())
    packed_out, (h_n, c_n) = lstm(packed, hx)
    out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=inputs.shape[1])
    return out, LSTMStateTuple(c_n, h_n)


class LSTMClassifier(nn.Module):
    """A stack of (bi)LSTM layers of per-layer widths, classified from the final state.

    The head reads the final ``h`` of the top layer (``concat([h_fw, h_bw])`` when
    bidirectional): ``logits = h @ W + b``, ``probs = softmax(logits)``. ``layers[n]`` is one
    ``nn.LSTM`` (bidirectional or not) when stacked, and ``[forward, backward]`` unidirectional
    ``nn.LSTM`` per direction; ``direction_weights`` reads either.
    """

    def __init__(self, config: LSTMClassifierConfig) -> None:
        super().__init__()
        self.config = config
        sizes = zip(config.layer_input_sizes, config.layer_sizes, strict=True)
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.LSTM(width, size, batch_first=True) for _ in range(2))
            if config.per_direction
            else nn.LSTM(width, size, batch_first=True, bidirectional=config.bidirectional)
            for width, size in sizes
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.output_size, config.num_classes)

    def direction_weights(self, layer: int, direction: int) -> dict[str, nn.Parameter]:
        """The ``LSTM_PARAMETERS`` of one direction (0 forward, 1 backward) of layer ``layer``:
        ``weight_ih (4H, W)``, ``weight_hh (4H, H)``, ``bias_ih``, ``bias_hh`` ``(4H,)``, torch
        gate order (i, f, g, o)."""
        if self.config.per_direction:
            module, suffix = self._lstm(layer, direction), ""
        else:
            module, suffix = self._lstm(layer), "_reverse" if direction else ""
        return {name: getattr(module, f"{name}_l0{suffix}") for name in LSTM_PARAMETERS}

    def _lstm(self, layer: int, direction: int | None = None) -> nn.LSTM:
        """``layers[layer]`` when stacked; its ``direction`` (0 or 1) per direction."""
        module = self.layers[layer]
        if direction is not None:
            module = cast(nn.ModuleList, module)[direction]
        return cast(nn.LSTM, module)

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
        run = self._per_direction if self.config.per_direction else self._stacked
        outputs, states = run(inputs, lengths, initial_states)
        top_h = states[-1].h  # (dirs, B, H)
        final = torch.cat(list(top_h), dim=1)  # (B, D), forward first
        logits = self.head(self.dropout(final))
        return ClassifierOutput(logits, torch.softmax(logits, dim=1), outputs, states)

    def _between_layers(self, out: torch.Tensor, n: int) -> torch.Tensor:
        return self.dropout(out) if n + 1 < len(self.layers) else out

    def _stacked(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial_states: InitialStates
    ) -> tuple[torch.Tensor, tuple[LSTMStateTuple, ...]]:
        """Every layer reads the whole output of the layer below: ``(B, T, dirs*H_{n-1})``."""
        layer_input = inputs
        states = []
        for n in range(len(self.layers)):
            hx = None
            if initial_states is not None:
                c0, h0 = initial_states[n]
                hx = (h0, c0)
            out, state = _run_packed(self._lstm(n), layer_input, lengths, hx)
            states.append(state)
            layer_input = self._between_layers(out, n)
        return layer_input, tuple(states)

    def _per_direction(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial_states: InitialStates
    ) -> tuple[torch.Tensor, tuple[LSTMStateTuple, ...]]:
        """Two stacks; the backward one reads each sequence reversed within its own length
        from the bottom to the top, and only its top outputs are put back in input order."""
        device_lengths = lengths.to(inputs.device)
        tops: list[torch.Tensor] = []
        stacks: list[list[LSTMStateTuple]] = []
        for direction in range(2):
            layer_input = reverse_sequence(inputs, device_lengths) if direction else inputs
            states = []
            for n in range(len(self.layers)):
                hx = None
                if initial_states is not None:
                    c0, h0 = initial_states[n]
                    hx = (h0[direction : direction + 1], c0[direction : direction + 1])
                out, state = _run_packed(self._lstm(n, direction), layer_input, lengths, hx)
                states.append(state)
                layer_input = self._between_layers(out, n)
            tops.append(layer_input)
            stacks.append(states)
        # Padding stays in place under reverse_sequence, so it is still zero.
        outputs = torch.cat([tops[0], reverse_sequence(tops[1], device_lengths)], dim=2)
        return outputs, tuple(
            LSTMStateTuple(torch.cat([fw.c, bw.c]), torch.cat([fw.h, bw.h]))
            for fw, bw in zip(*stacks, strict=True)
        )

    # -- the cell-by-cell path -----------------------------------------------------------------
    def to_tf_cells(self) -> tuple[list[BasicLSTMCell], list[BasicLSTMCell]]:
        """``BasicLSTMCell`` copies of every layer (forward cells, backward cells), TF layout."""
        cells: tuple[list[BasicLSTMCell], list[BasicLSTMCell]] = ([], [])
        for n, size in enumerate(self.config.layer_sizes):
            for direction in range(self.config.num_directions):
                weights = {
                    name: param.detach().cpu().numpy()
                    for name, param in self.direction_weights(n, direction).items()
                }
                kernel, bias = torch_to_tf_lstm(**weights, forget_bias=self.config.forget_bias)
                cell = BasicLSTMCell(size, forget_bias=self.config.forget_bias)
                cell.load_tf_weights(kernel, bias)
                cells[direction].append(cell.to(self.head.weight.device))
        return cells

    def load_tf_layers(self, layers: list[list[tuple[Any, Any]]], head: tuple[Any, Any]) -> None:
        """Load TF-layout weights: ``layers[n][direction] = (kernel, bias)`` and
        ``head = (W (D, C), b (C,))``, with the config's ``forget_bias`` folded in. A kernel
        has ``config.layer_input_sizes[n] + H_n`` rows."""
        if len(layers) != len(self.layers):
            raise ValueError(f"expected weights for {len(self.layers)} layers, got {len(layers)}")
        with torch.no_grad():
            for n, directions in enumerate(layers):
                if len(directions) != self.config.num_directions:
                    raise ValueError(
                        f"expected {self.config.num_directions} directions, got {len(directions)}"
                    )
                for direction, (kernel, bias) in enumerate(directions):
                    suffix = "_reverse" if direction else ""
                    converted = tf_to_torch_lstm(kernel, bias, self.config.forget_bias)
                    targets = self.direction_weights(n, direction)
                    for name, array in converted.items():
                        target = targets[name]
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

    Unidirectional: ``dynamic_rnn(MultiRNNCell(cells), ...)``; bidirectional stacked:
    ``stack_bidirectional_dynamic_rnn``; per direction: ``bidirectional_dynamic_rnn`` over one
    ``MultiRNNCell`` per direction. States are returned in ``model``'s ``(dirs, B, H)`` form.
    """
    lengths = _check_batch(inputs, lengths, model.config.input_size).to(inputs.device)
    cells_fw, cells_bw = model.to_tf_cells()
    if model.config.bidirectional:
        if model.config.per_direction:
            (out_fw, out_bw), (states_fw, states_bw) = bidirectional_dynamic_rnn(
                MultiRNNCell(cells_fw), MultiRNNCell(cells_bw), inputs, sequence_length=lengths
            )
            outputs = torch.cat([out_fw, out_bw], dim=2)
        else:
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
