"""Turn a TF 1.x checkpoint and a description into an ``LSTMClassifier``.

Shapes: ``F`` input depth, ``H_n`` units of layer ``n``, ``dirs`` 1 or 2, ``D = dirs * H_last``,
``C`` classes. A TF LSTM cell stores ``kernel (in + H, 4H)`` and ``bias (4H,)`` (gate order i, j,
f, o; see ``models.weights``) with ``in = F`` for layer 0 and, above, ``dirs * H_{n-1}`` (layers
reading both directions below: stacked) or ``H_{n-1}`` (one stack per direction); the head is a
dense ``W (D, C)``, ``b (C,)`` applied to the top layer's final ``h`` (fw then bw).

Scopes TF gives the cells by default (``<cell>`` is ``basic_lstm_cell`` or ``lstm_cell``)::

    dynamic_rnn(cell)                  rnn/<cell>
    dynamic_rnn(MultiRNNCell([...]))   rnn/multi_rnn_cell/cell_N/<cell>
    bidirectional_dynamic_rnn(fw, bw)  bidirectional_rnn/fw|bw/<cell>
    stack_bidirectional_dynamic_rnn    stack_bidirectional_rnn/cell_N/bidirectional_rnn/fw|bw/<cell>
    bidirectional_dynamic_rnn(MultiRNNCell([...]), MultiRNNCell([...]))
                                       bidirectional_rnn/fw|bw/multi_rnn_cell/cell_N/<cell>

The last is the ``per_direction`` topology (``models.topology``); when the description does not
say, layer 1's kernel tells: ``H_0 + H_1`` rows per direction, or ``2 H_0 + H_1`` stacked.

Anything the model cannot compute exactly is refused: peepholes, projections, clipping, other
activations, per-cell ``forget_bias`` values, fw/bw cells of different widths, and kernels that
read neither one direction nor both of the layer below. Model variables that the description
does not use are refused too, unless ``ignore_variables`` lists them, since a skipped layer
would silently change the function.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.architectures import LSTMClassifier, LSTMClassifierConfig
from models.topology import PER_DIRECTION, STACKED
from tf1_checkpoint.checkpoint import TFCheckpoint
from tf1_checkpoint.description import (
    CELL_TYPES,
    DIRECTIONS,
    CellDescription,
    ModelDescription,
    load_description,
)
from tf1_checkpoint.errors import MappingError
from tf1_checkpoint.guess import guess_description
from tf1_checkpoint.variables import WEIGHT_NAMES, find_dense_pairs, model_variables

logger = logging.getLogger(__name__)

DescriptionSource = ModelDescription | Mapping[str, Any] | str | Path
_FLOAT_DTYPES = ("float32", "float16", "float64", "bfloat16")


@dataclass(frozen=True)
class MappedWeights:
    """TF-layout arrays ready for ``LSTMClassifier.load_tf_layers``.

    ``layers[n][direction] = (kernel (in + H_n, 4 H_n), bias (4 H_n,))``, ``head = (W (D, C),
    b (C,))``, all float32; ``sources`` names the variables they came from, in the same order.
    """

    config: LSTMClassifierConfig
    layers: list[list[tuple[np.ndarray, np.ndarray]]]
    head: tuple[np.ndarray, np.ndarray]
    sources: tuple[str, ...]


def _open(checkpoint: TFCheckpoint | str | Path) -> TFCheckpoint:
    return checkpoint if isinstance(checkpoint, TFCheckpoint) else TFCheckpoint(checkpoint)


def _float32(checkpoint: TFCheckpoint, name: str) -> np.ndarray:
    dtype = checkpoint.entry(name).dtype
    if dtype not in _FLOAT_DTYPES:
        raise MappingError(f"{name!r} is {dtype}; a model weight must be floating point")
    return checkpoint.read(name).astype(np.float32)


# -- the description's cells, arranged by layer and direction ---------------------------------


def _check_cell(cell: CellDescription, where: str) -> None:
    unsupported = {
        "use_peepholes": cell.use_peepholes,
        "num_proj": cell.num_proj,
        "cell_clip": cell.cell_clip,
        "proj_clip": cell.proj_clip,
    }
    for key, value in unsupported.items():
        if value:
            raise MappingError(
                f"{where}: {key}={value!r} is not supported (LSTMClassifier is a plain LSTM "
                "without peepholes, projection or clipping)"
            )
    if cell.activation != "tanh":
        raise MappingError(f"{where}: activation {cell.activation!r}; only tanh is supported")


def _arrange(description: ModelDescription) -> list[list[CellDescription]]:
    """``[layer][direction]`` cells from the description's flat list."""
    cells = description.cells
    if not description.bidirectional:
        if any(cell.direction == "bw" for cell in cells):
            raise MappingError("a cell has direction 'bw' but 'bidirectional' is false")
        return [[cell] for cell in cells]
    if all(cell.direction is None for cell in cells):
        if any(cell.scope for cell in cells):
            raise MappingError(
                "bidirectional cells with a 'scope' must also name their 'direction' (fw/bw)"
            )
        return [[cell, cell] for cell in cells]
    if any(cell.direction is None for cell in cells):
        raise MappingError("bidirectional: give every cell a 'direction', or none of them")
    forward = [cell for cell in cells if cell.direction == "fw"]
    backward = [cell for cell in cells if cell.direction == "bw"]
    if len(forward) != len(backward):
        raise MappingError(
            f"bidirectional: {len(forward)} forward cell(s) but {len(backward)} backward"
        )
    return [[fw, bw] for fw, bw in zip(forward, backward, strict=True)]


def _default_scopes(
    cell: CellDescription,
    layer: int,
    direction: int,
    bidi: bool,
    layers: int,
    topology: str | None,
) -> list[str]:
    """Where TF puts the cell by default (module docstring); ``topology`` None: either."""
    name = CELL_TYPES[cell.type]
    if not bidi:
        multi = f"rnn/multi_rnn_cell/cell_{layer}/{name}"
        return [f"rnn/{name}", multi] if layers == 1 else [multi]
    way = DIRECTIONS[direction]
    wired = {
        STACKED: f"stack_bidirectional_rnn/cell_{layer}/bidirectional_rnn/{way}/{name}",
        PER_DIRECTION: f"bidirectional_rnn/{way}/multi_rnn_cell/cell_{layer}/{name}",
    }
    scopes = [wired[topology]] if topology else list(wired.values())
    return [f"bidirectional_rnn/{way}/{name}", *scopes] if layers == 1 else scopes


def _find_cell_variables(
    checkpoint: TFCheckpoint, scopes: list[str], where: str
) -> tuple[str, str, str]:
    """``(scope, kernel name, bias name)`` of the first scope that holds a kernel."""
    for scope in scopes:
        for kernel, bias in WEIGHT_NAMES:
            if f"{scope}/{kernel}" in checkpoint:
                if f"{scope}/{bias}" not in checkpoint:
                    raise MappingError(f"{where}: {scope}/{kernel} has no {scope}/{bias}")
                return scope, f"{scope}/{kernel}", f"{scope}/{bias}"
    kernels = [n for n in model_variables(checkpoint) if n.endswith(("/kernel", "/weights"))]
    raise MappingError(
        f"{where}: no LSTM kernel under {' or '.join(scopes)}; set the cell's 'scope' in the "
        f"description (kernels in the checkpoint: {', '.join(kernels) or 'none'})"
    )


def _refuse_extras(checkpoint: TFCheckpoint, scope: str, where: str) -> None:
    """Peephole and projection weights live beside the kernel; their presence means math the
    model does not have, whatever the description says."""
    for gate in ("w_f_diag", "w_i_diag", "w_o_diag"):
        if f"{scope}/{gate}" in checkpoint:
            raise MappingError(
                f"{where}: {scope}/{gate} is a peephole weight (LSTMCell(use_peepholes=True)); "
                "peepholes are not supported"
            )
    for name in ("projection/kernel", "projection/weights"):
        if f"{scope}/{name}" in checkpoint:
            raise MappingError(
                f"{where}: {scope}/{name} is a projection (LSTMCell(num_proj=...)); "
                "projections are not supported"
            )


def _head_names(
    checkpoint: TFCheckpoint, description: ModelDescription, width: int, used: set[str]
) -> tuple[str, str]:
    if (description.head_weights is None) != (description.head_bias is None):
        raise MappingError("give both 'head_weights' and 'head_bias', or neither")
    if description.head_weights is not None and description.head_bias is not None:
        return description.head_weights, description.head_bias
    pairs = find_dense_pairs(model_variables(checkpoint), width, used)
    if len(pairs) != 1:
        found = "; ".join(" + ".join(pair) for pair in pairs) or "none"
        raise MappingError(
            f"cannot tell the dense head (weights ({width}, C), bias (C,)) from the variables "
            f"(candidates: {found}); set 'head_weights' and 'head_bias' in the description"
        )
    return pairs[0]


# -- mapping ---------------------------------------------------------------------------------


def _read_cell(
    checkpoint: TFCheckpoint, cell: CellDescription, scopes: list[str], where: str
) -> tuple[tuple[str, str], np.ndarray, np.ndarray]:
    """``((kernel name, bias name), kernel (rows, 4H), bias (4H,))`` of one cell."""
    _check_cell(cell, where)
    scope, kernel_name, bias_name = _find_cell_variables(checkpoint, scopes, where)
    _refuse_extras(checkpoint, scope, where)
    kernel, bias = _float32(checkpoint, kernel_name), _float32(checkpoint, bias_name)
    if kernel.ndim != 2 or kernel.shape[1] % 4 or bias.shape != (kernel.shape[1],):
        raise MappingError(
            f"{where}: {kernel_name} {list(kernel.shape)} and {bias_name} "
            f"{list(bias.shape)} are not an LSTM kernel (in + H, 4H) and bias (4H,)"
        )
    if cell.num_units is not None and 4 * cell.num_units != kernel.shape[1]:
        raise MappingError(
            f"{where}: the description says {cell.num_units} units, {kernel_name} "
            f"{list(kernel.shape)} has {kernel.shape[1] // 4}"
        )
    return (kernel_name, bias_name), kernel, bias


def _check_rows(kernel: np.ndarray, name: str, where: str, width: int) -> None:
    """``kernel`` must read ``width`` inputs."""
    units = kernel.shape[1] // 4
    if kernel.shape[0] != width + units:
        raise MappingError(
            f"{where}: {name} is {list(kernel.shape)}, expected [{width} + {units}, {4 * units}] "
            f"({width} inputs)"
        )


def _layer_topology(
    kernel: np.ndarray, name: str, where: str, below: int, topology: str | None
) -> str:
    """The topology a bidirectional layer ``n > 0``'s kernel shows (``below`` is ``H_{n-1}``):
    it reads ``H_{n-1}`` inputs per direction or ``2 H_{n-1}`` stacked. A description's
    ``topology`` that the kernel contradicts is refused; one the kernel fits neither way is
    left to ``_check_rows``."""
    inputs = kernel.shape[0] - kernel.shape[1] // 4
    shown = {below: PER_DIRECTION, 2 * below: STACKED}.get(inputs)
    if topology is None:
        if shown is None:
            raise MappingError(
                f"{where}: {name} is {list(kernel.shape)}: it reads {inputs} inputs, neither "
                f"its own direction's layer below ({below}: bidirectional_dynamic_rnn over "
                f"MultiRNNCell stacks) nor both directions ({2 * below}: "
                "stack_bidirectional_dynamic_rnn)"
            )
        return shown
    if shown is not None and shown != topology:
        reads = "only its own direction's" if shown == PER_DIRECTION else "both directions of the"
        raise MappingError(
            f"{where}: {name} reads {reads} layer below ({inputs} inputs), so the topology is "
            f"{shown!r}; the description says {topology!r}"
        )
    return topology


def _read_head(
    checkpoint: TFCheckpoint, description: ModelDescription, width: int, used: set[str]
) -> tuple[tuple[str, str], np.ndarray, np.ndarray]:
    """``((W name, b name), W (D, C), b (C,))``, checked against the description."""
    weights_name, bias_name = _head_names(checkpoint, description, width, used)
    for name in (weights_name, bias_name):
        if name not in checkpoint:
            raise MappingError(f"head variable {name!r} is not in the checkpoint")
    weights, bias = _float32(checkpoint, weights_name), _float32(checkpoint, bias_name)
    if weights.ndim != 2 or weights.shape[0] != width or bias.shape != weights.shape[1:]:
        raise MappingError(
            f"head: {weights_name} {list(weights.shape)} and {bias_name} {list(bias.shape)} "
            f"do not fit ({width}, C) and (C,)"
        )
    classes = weights.shape[1]
    if description.num_classes is not None and description.num_classes != classes:
        raise MappingError(
            f"the description says {description.num_classes} classes, {weights_name} has {classes}"
        )
    if description.labels and len(description.labels) != classes:
        raise MappingError(f"{len(description.labels)} labels for {classes} classes")
    return (weights_name, bias_name), weights, bias


def map_variables(
    checkpoint: TFCheckpoint | str | Path, description: DescriptionSource
) -> MappedWeights:
    """Read and check the weights ``description`` names; raise ``MappingError`` on anything
    the model cannot represent exactly."""
    checkpoint = _open(checkpoint)
    if not isinstance(description, ModelDescription):
        description = load_description(description)
    arranged = _arrange(description)
    bidi = description.bidirectional
    forget_biases = sorted({cell.forget_bias for cell in description.cells})
    if len(forget_biases) != 1:
        raise MappingError(
            f"cells use different forget_bias values {forget_biases}; the model has one"
        )
    if description.topology == PER_DIRECTION and not bidi:
        raise MappingError("topology 'per_direction' is for bidirectional models only")
    topology = description.topology
    layers: list[list[tuple[np.ndarray, np.ndarray]]] = []
    sources: list[str] = []
    sizes: list[int] = []
    input_size = width = description.input_depth
    for n, cells in enumerate(arranged):
        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        for direction, cell in enumerate(cells):
            where = f"layer {n}" + (f" {DIRECTIONS[direction]}" if bidi else "")
            scopes = (
                [cell.scope]
                if cell.scope
                else _default_scopes(cell, n, direction, bidi, len(arranged), topology)
            )
            names, kernel, bias = _read_cell(checkpoint, cell, scopes, where)
            units = kernel.shape[1] // 4
            if pairs and units != sizes[-1]:
                raise MappingError(
                    f"layer {n}: forward cell has {sizes[-1]} units, backward {units}; "
                    "the model needs both directions of a layer to have the same width"
                )
            if width is None:  # layer 0 and no input_depth given: trust the kernel
                input_size = width = kernel.shape[0] - units
                if width <= 0:
                    raise MappingError(f"{where}: {names[0]} {list(kernel.shape)} has no x rows")
            if bidi and n:
                topology = _layer_topology(kernel, names[0], where, sizes[n - 1], topology)
                width = sizes[n - 1] * (1 if topology == PER_DIRECTION else 2)
            _check_rows(kernel, names[0], where, width)
            if not pairs:
                sizes.append(units)
            pairs.append((kernel, bias))
            sources += names
        layers.append(pairs)
        width = sizes[-1] * len(cells)

    assert input_size is not None and width is not None  # set by layer 0
    head_names, weights, head_bias = _read_head(checkpoint, description, width, set(sources))
    sources += head_names
    _refuse_unused(checkpoint, description, set(sources))
    try:
        config = LSTMClassifierConfig(
            input_size=input_size,
            layer_sizes=tuple(sizes),
            num_classes=weights.shape[1],
            bidirectional=bidi,
            labels=description.labels,
            forget_bias=forget_biases[0],
            # With one layer both wirings are the same function, and the model calls it stacked.
            topology=topology if topology and len(sizes) > 1 else STACKED,
        )
    except ValueError as error:
        raise MappingError(str(error)) from error
    return MappedWeights(config, layers, (weights, head_bias), tuple(sources))


def _refuse_unused(checkpoint: TFCheckpoint, description: ModelDescription, used: set[str]) -> None:
    patterns = description.ignore_variables
    unused = [
        name
        for name in model_variables(checkpoint)
        if name not in used and not any(fnmatch.fnmatchcase(name, p) for p in patterns)
    ]
    if unused:
        raise MappingError(
            f"model variables not used by the description: {', '.join(unused)}; if they are not "
            "part of the classifier, list them (or glob patterns) in 'ignore_variables'"
        )


def build_model(
    checkpoint: TFCheckpoint | str | Path, description: DescriptionSource | None = None
) -> LSTMClassifier:
    """An ``LSTMClassifier`` in eval mode holding the checkpoint's weights.

    ``description`` is a ``ModelDescription``, its JSON object or a JSON file; None guesses one
    from the variable names (``guess_description``), assuming ``forget_bias=1.0``.
    """
    checkpoint = _open(checkpoint)
    if description is None:
        description = guess_description(checkpoint)
        for note in description.notes:
            logger.warning("%s: %s", checkpoint.prefix, note)
    mapped = map_variables(checkpoint, description)
    model = LSTMClassifier(mapped.config)
    try:
        model.load_tf_layers(mapped.layers, mapped.head)
    except ValueError as error:  # map_variables checks shapes first; this is a backstop
        raise MappingError(f"{checkpoint.prefix}: {error}") from error
    return model.eval()
