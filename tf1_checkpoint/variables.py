"""What a checkpoint holds, sorted into model weights and training leftovers, for a user who
writes a description by hand.

A default ``Saver()`` after training also saves optimizer slots (``<var>/Adam``,
``<var>/Adam_1``, ``<var>/Momentum``, ...), Adam's ``beta1_power``/``beta2_power`` and
``global_step``; none of them is part of the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tf1_checkpoint.checkpoint import TFCheckpoint

_SLOT = re.compile(
    r"^(Adam|Momentum|RMSProp|Adagrad|AdagradDA|Adadelta|Ftrl|ProximalAdagrad|Nadam|AMSGrad"
    r"|ExponentialMovingAverage)(_\d+)?$"
)
_OPTIMIZER_SCALAR = re.compile(r"^beta[12]_power(_\d+)?$")
_STEP = re.compile(r"^global_step(_\d+)?$")

ROLES = ("model", "optimizer", "step")
WEIGHT_NAMES = (("kernel", "bias"), ("weights", "biases"))
"""Names of a cell's two weights: TF >= 1.2, and older releases."""
DEFAULT_HEAD = ("softmax/W", "softmax/b")


@dataclass(frozen=True)
class VariableInfo:
    """One stored variable. ``role``: ``"model"`` (weights), ``"optimizer"`` (slots and
    accumulators) or ``"step"`` (``global_step``)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    role: str


def variable_role(name: str, names: set[str] | frozenset[str]) -> str:
    """``"optimizer"``, ``"step"`` or ``"model"`` for the variable ``name`` among ``names``."""
    parent, _, last = name.rpartition("/")
    if (_SLOT.match(last) and parent in names) or _OPTIMIZER_SCALAR.match(last):
        return "optimizer"
    if _STEP.match(last):
        return "step"
    return "model"


def list_variables(checkpoint: TFCheckpoint) -> list[VariableInfo]:
    """Every variable in name order with its dtype, shape and role."""
    variables = checkpoint.variables()
    names = frozenset(variables)
    return [
        VariableInfo(name, dtype, shape, variable_role(name, names))
        for name, (dtype, shape) in sorted(variables.items())
    ]


def model_variables(checkpoint: TFCheckpoint) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` of the variables whose role is ``"model"``."""
    return {
        info.name: (info.dtype, info.shape)
        for info in list_variables(checkpoint)
        if info.role == "model"
    }


def format_variables(infos: list[VariableInfo], include_all: bool = False) -> str:
    """A plain-text table of ``infos``; optimizer and step variables are summarised in one line
    unless ``include_all``."""
    shown = [info for info in infos if include_all or info.role == "model"]
    width = max((len(info.name) for info in shown), default=0)
    lines = [
        f"{info.name:<{width}}  {info.dtype:<8}  {list(info.shape)!s:<12}"
        f"  {'' if info.role == 'model' else info.role}".rstrip()
        for info in shown
    ]
    hidden = len(infos) - len(shown)
    if hidden:
        lines.append(f"(and {hidden} optimizer/step variables, not part of the model)")
    return "\n".join(lines)


def find_dense_pairs(
    variables: Mapping[str, tuple[str, tuple[int, ...]]], width: int, exclude: set[str]
) -> list[tuple[str, str]]:
    """Dense ``(W (width, C), b (C,))`` pairs in one scope among the unused model variables."""
    pairs = []
    for name, (_, shape) in variables.items():
        if name in exclude or len(shape) != 2 or shape[0] != width:
            continue
        parent = name.rpartition("/")[0]
        for other, (_, other_shape) in variables.items():
            if (
                other not in exclude
                and other.rpartition("/")[0] == parent
                and other_shape == (shape[1],)
            ):
                pairs.append((name, other))
    if DEFAULT_HEAD in pairs:
        return [DEFAULT_HEAD]
    return pairs
