"""Guess a description from a checkpoint's variable names, for checkpoints saved with TF's
default scopes (see ``tf1_checkpoint.mapping``) or any scope whose last part contains "lstm".

What names cannot tell is defaulted and said in ``ModelDescription.notes``: ``forget_bias``
(assumed 1.0) and the label names.
"""

from __future__ import annotations

import re
from pathlib import Path

from models.topology import PER_DIRECTION, STACKED
from tf1_checkpoint.checkpoint import TFCheckpoint
from tf1_checkpoint.description import DIRECTIONS, CellDescription, ModelDescription
from tf1_checkpoint.errors import MappingError
from tf1_checkpoint.variables import WEIGHT_NAMES, find_dense_pairs, model_variables

_LSTM_KERNEL = re.compile(r"^(?P<scope>(?:.*/)?[^/]*lstm[^/]*)/(?:kernel|weights)$", re.IGNORECASE)
_CELL_INDEX = re.compile(r"^cell_(\d+)$")


def _position(scope: str) -> tuple[tuple[int, int], str]:
    """``((layer, direction), stack)``: the layer is the last ``cell_N`` part (MultiRNNCell or
    stack_bidirectional_rnn), the direction 1 under a ``bw`` part; ``stack`` is the scope with
    those parts and the cell name wildcarded, equal for all cells of one network."""
    parts = scope.split("/")
    indices = [int(m[1]) for m in map(_CELL_INDEX.match, parts) if m]
    stack = "/".join(
        "cell_*" if _CELL_INDEX.match(p) else "*" if p in DIRECTIONS else p for p in parts[:-1]
    )
    return (indices[-1] if indices else 0, int("bw" in parts)), stack


def _guess_cell(checkpoint: TFCheckpoint, scope: str, direction: int, bidi: bool) -> _Guessed:
    """The cell at ``scope`` and its kernel's shape."""
    kernel = next(f"{scope}/{k}" for k, _ in WEIGHT_NAMES if f"{scope}/{k}" in checkpoint)
    shape = checkpoint.entry(kernel).shape
    projections = [f"{scope}/projection/{k}" for k, _ in WEIGHT_NAMES]
    projection = next((name for name in projections if name in checkpoint), None)
    cell = CellDescription(
        type="BasicLSTMCell" if scope.rsplit("/", 1)[-1] == "basic_lstm_cell" else "LSTMCell",
        num_units=shape[1] // 4 if len(shape) == 2 and shape[1] % 4 == 0 else None,
        scope=scope,
        direction=DIRECTIONS[direction] if bidi else None,
        # Recorded so that mapping refuses them with a precise message.
        use_peepholes=f"{scope}/w_f_diag" in checkpoint,
        num_proj=checkpoint.entry(projection).shape[-1] if projection else None,
    )
    return cell, shape


_Guessed = tuple[CellDescription, tuple[int, ...]]
"""A guessed cell and its kernel's shape."""


def _topology(layer_0: _Guessed, layer_1: _Guessed) -> str | None:
    """How a bidirectional stack is wired, from the forward cells of layers 0 and 1: layer 1
    reads ``H_0`` inputs per direction, ``2 H_0`` stacked (None: neither; the mapping says why).
    Names would not do: a ``scope`` may be anything."""
    (below, _), (upper, shape) = layer_0, layer_1
    if not below.num_units or not upper.num_units or len(shape) != 2:
        return None
    inputs = shape[0] - upper.num_units
    return {below.num_units: PER_DIRECTION, 2 * below.num_units: STACKED}.get(inputs)


def guess_description(checkpoint: TFCheckpoint | str | Path) -> ModelDescription:
    """A description inferred from the model variables' names and shapes.

    Raises ``MappingError`` when no LSTM kernel is found, when kernels belong to several
    networks, or when they do not form complete layers; a head that cannot be identified is
    left unset (with a note).
    """
    if not isinstance(checkpoint, TFCheckpoint):
        checkpoint = TFCheckpoint(checkpoint)
    variables = model_variables(checkpoint)
    scopes = [m["scope"] for m in map(_LSTM_KERNEL.match, variables) if m]
    if not scopes:
        raise MappingError(
            "no LSTM kernels found (model variables named '.../*lstm*/kernel'); write a "
            "description with each cell's 'scope'"
        )
    positions = {scope: _position(scope) for scope in scopes}
    stacks = sorted({stack for _, stack in positions.values()})
    if len(stacks) > 1:
        raise MappingError(
            f"kernels of several LSTM networks ({', '.join(stacks)}); write a description "
            "naming the cells' scopes"
        )
    found: dict[tuple[int, int], str] = {}
    for scope, (key, _) in positions.items():
        if key in found:
            raise MappingError(f"two LSTM cells at one position: {found[key]}, {scope}")
        found[key] = scope
    bidi = any(direction for _, direction in found)
    num_layers = 1 + max(layer for layer, _ in found)
    if set(found) != {(n, d) for n in range(num_layers) for d in range(1 + bidi)}:
        raise MappingError(f"LSTM cells do not form complete layers: {sorted(found.values())}")
    # Forward cells bottom-up, then backward cells: the order of the manifest.json files.
    guessed = [
        _guess_cell(checkpoint, found[(layer, direction)], direction, bidi)
        for direction in range(1 + bidi)
        for layer in range(num_layers)
    ]
    cells = tuple(cell for cell, _ in guessed)
    first_cell, first_shape = guessed[0]
    topology = _topology(guessed[0], guessed[1]) if bidi and num_layers > 1 else None
    input_depth = None
    if len(first_shape) == 2 and first_cell.num_units:
        input_depth = first_shape[0] - (first_cell.num_proj or first_cell.num_units)

    notes = [
        "forget_bias is not stored in checkpoints: assumed 1.0 (the default of BasicLSTMCell "
        "and LSTMCell); check the training code",
        "labels are not stored: classes are named '0' ... 'C-1'; set 'labels'",
    ]
    top = cells[-1]
    width = (1 + bidi) * (top.num_proj or top.num_units or 0)
    prefixes = tuple(f"{scope}/" for scope in found.values())
    cell_variables = {name for name in variables if name.startswith(prefixes)}
    pairs = find_dense_pairs(variables, width, cell_variables)
    head: tuple[str | None, str | None] = (None, None)
    num_classes = None
    if len(pairs) == 1:
        head = pairs[0]
        num_classes = variables[head[1]][1][0]
    else:
        notes.append(
            f"no single dense head of input width {width} ({len(pairs)} candidates); set "
            "'head_weights' and 'head_bias'"
        )
    return ModelDescription(
        cells=cells,
        bidirectional=bidi,
        topology=topology,
        input_depth=input_depth,
        num_classes=num_classes,
        head_weights=head[0],
        head_bias=head[1],
        notes=tuple(notes),
    )
