"""The JSON description that says how a TF 1.x checkpoint's variables form an LSTM classifier.

A checkpoint holds weights but not the graph, so the cell types, their order, ``forget_bias``
(added at run time, never saved) and the label names must come from somewhere. The format is
the subset of the ``manifest.json`` files in ``tests/data/tf1`` that matters, so those files work
as descriptions unchanged; every key but ``cells`` is optional, and unknown keys are ignored::

    {
      "cells": [                          # bottom layer first
        {"type": "BasicLSTMCell",         # or "LSTMCell"
         "num_units": 32,                 # optional: taken from the checkpoint
         "forget_bias": 1.0,              # optional, default 1.0 (TF's default); one value
         "scope": "rnn/basic_lstm_cell",  # optional: TF's default for the position
         "direction": "fw"}               # "fw" / "bw"; bidirectional only, optional (below)
      ],
      "bidirectional": false,
      "topology": "per_direction",        # optional, bidirectional only (below)
      "input_depth": 12,                  # optional: from layer 0's kernel
      "num_classes": 9,                   # optional: from the head
      "labels": ["1", "2", "..."],        # optional: "0" ... "C-1"
      "head_weights": "softmax/W",        # optional: softmax/W, else the one dense pair fitting
      "head_bias": "softmax/b",
      "ignore_variables": []              # optional: model variables (globs) left out on purpose
    }

When ``bidirectional`` is true and no cell names a ``direction``, each cell describes one layer
and is used for both directions. ``topology`` says how the layers of a bidirectional stack are
wired: ``"stacked"`` (``stack_bidirectional_dynamic_rnn``: layer ``n`` reads both directions of
layer ``n-1``) or ``"per_direction"`` (``bidirectional_dynamic_rnn`` over two ``MultiRNNCell``
stacks: each direction's layer ``n`` reads only that direction's layer ``n-1``); when it is
left out, the mapping tells them apart by the kernels' shapes. ``LSTMCell`` keys that change
the math (``use_peepholes``, ``num_proj``, ``cell_clip``, ``proj_clip``, an ``activation``
other than tanh) are read so that they can be refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.topology import TOPOLOGIES
from tf1_checkpoint.errors import DescriptionError

CELL_TYPES = {"BasicLSTMCell": "basic_lstm_cell", "LSTMCell": "lstm_cell"}
"""Supported cell classes and the variable scope TF gives them by default."""
DIRECTIONS = ("fw", "bw")


@dataclass(frozen=True)
class CellDescription:
    """One ``tf.nn.rnn_cell`` LSTM cell."""

    type: str = "BasicLSTMCell"
    num_units: int | None = None
    forget_bias: float = 1.0
    scope: str | None = None
    """Variable prefix holding ``kernel`` and ``bias``; None: TF's default for the position."""
    direction: str | None = None
    use_peepholes: bool = False
    num_proj: int | None = None
    cell_clip: float | None = None
    proj_clip: float | None = None
    activation: str = "tanh"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.num_units is not None:
            data["num_units"] = self.num_units
        data["forget_bias"] = self.forget_bias
        if self.scope is not None:
            data["scope"] = self.scope
        if self.direction is not None:
            data["direction"] = self.direction
        if self.use_peepholes:
            data["use_peepholes"] = True
        for key in ("num_proj", "cell_clip", "proj_clip"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.activation != "tanh":
            data["activation"] = self.activation
        return data


@dataclass(frozen=True)
class ModelDescription:
    """How a checkpoint's variables form an ``LSTMClassifier`` (see the module docstring)."""

    cells: tuple[CellDescription, ...]
    bidirectional: bool = False
    topology: str | None = None
    """``TOPOLOGIES``; None: from the kernels' shapes (only bidirectional stacks differ)."""
    input_depth: int | None = None
    num_classes: int | None = None
    labels: tuple[str, ...] = ()
    head_weights: str | None = None
    head_bias: str | None = None
    ignore_variables: tuple[str, ...] = ()
    """Names or glob patterns of model variables that are deliberately left out."""
    notes: tuple[str, ...] = field(default=())
    """What a guessed description could not know (written out, ignored when read)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, loadable by ``load_description``."""
        data: dict[str, Any] = {
            "cells": [cell.to_dict() for cell in self.cells],
            "bidirectional": self.bidirectional,
        }
        optional = {
            "topology": self.topology,
            "input_depth": self.input_depth,
            "num_classes": self.num_classes,
            "labels": list(self.labels) or None,
            "head_weights": self.head_weights,
            "head_bias": self.head_bias,
            "ignore_variables": list(self.ignore_variables) or None,
            "notes": list(self.notes) or None,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        return data


def _typed(data: Mapping[str, Any], key: str, kinds: tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    # bool is an int subclass: refuse true/false where a number is meant.
    is_bool = isinstance(value, bool)
    if value is None or (isinstance(value, kinds) and is_bool == (bool in kinds)):
        return value
    names = "/".join(kind.__name__ for kind in kinds)
    raise DescriptionError(f"description {where}: {key!r} must be {names}, got {value!r}")


def _strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or ()
    if not isinstance(value, list | tuple) or not all(isinstance(x, str) for x in value):
        raise DescriptionError(f"description: {key!r} must be a list of strings")
    return tuple(value)


def _cell(data: Any, number: int) -> CellDescription:
    where = f"cells[{number}]"
    if not isinstance(data, Mapping):
        raise DescriptionError(f"description {where}: expected an object, got {data!r}")
    cell_type = _typed(data, "type", (str,), where) or "BasicLSTMCell"
    cell_type = cell_type.rsplit(".", 1)[-1]  # accept "tf.nn.rnn_cell.LSTMCell"
    if cell_type not in CELL_TYPES:
        raise DescriptionError(
            f"description {where}: cell type {cell_type!r} is not supported; "
            f"supported: {', '.join(CELL_TYPES)}"
        )
    num_units = _typed(data, "num_units", (int,), where)
    if num_units is not None and num_units <= 0:
        raise DescriptionError(f"description {where}: num_units must be positive")
    direction = _typed(data, "direction", (str,), where)
    if direction is not None and direction not in DIRECTIONS:
        raise DescriptionError(f"description {where}: direction must be 'fw' or 'bw'")
    forget_bias = _typed(data, "forget_bias", (int, float), where)
    return CellDescription(
        type=cell_type,
        num_units=num_units,
        forget_bias=1.0 if forget_bias is None else float(forget_bias),
        scope=(_typed(data, "scope", (str,), where) or "").strip("/") or None,
        direction=direction,
        use_peepholes=bool(_typed(data, "use_peepholes", (bool,), where)),
        num_proj=_typed(data, "num_proj", (int,), where),
        cell_clip=_typed(data, "cell_clip", (int, float), where),
        proj_clip=_typed(data, "proj_clip", (int, float), where),
        activation=_typed(data, "activation", (str,), where) or "tanh",
    )


def parse_description(data: Mapping[str, Any]) -> ModelDescription:
    """Validate a description's JSON object (types and values only; the checkpoint is not
    consulted)."""
    if not isinstance(data, Mapping):
        raise DescriptionError(f"description must be a JSON object, got {type(data).__name__}")
    cells = data.get("cells")
    if not isinstance(cells, list) or not cells:
        raise DescriptionError("description: 'cells' must be a non-empty list of cells")
    labels = _strings(data, "labels")
    where = "top level"
    topology = _typed(data, "topology", (str,), where)
    if topology is not None and topology not in TOPOLOGIES:
        raise DescriptionError(
            f"description: 'topology' must be one of {', '.join(TOPOLOGIES)}, got {topology!r}"
        )
    return ModelDescription(
        cells=tuple(_cell(cell, number) for number, cell in enumerate(cells)),
        bidirectional=bool(_typed(data, "bidirectional", (bool,), where)),
        topology=topology,
        input_depth=_typed(data, "input_depth", (int,), where),
        num_classes=_typed(data, "num_classes", (int,), where),
        labels=tuple(labels),
        head_weights=_typed(data, "head_weights", (str,), where),
        head_bias=_typed(data, "head_bias", (str,), where),
        ignore_variables=_strings(data, "ignore_variables"),
    )


def load_description(source: str | Path | Mapping[str, Any]) -> ModelDescription:
    """A description from a JSON file path or an already-parsed object."""
    if isinstance(source, Mapping):
        return parse_description(source)
    path = Path(source)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DescriptionError(f"cannot read description {path}: {error}") from error
    return parse_description(data)
