"""Nested state structures: the small part of ``tf.nest`` that RNN code needs.

A state is a tensor, or a tuple (plain or named, such as ``LSTMStateTuple``) of states.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def map_structure(fn: Callable[..., torch.Tensor], *structures: Any) -> Any:
    """Apply ``fn`` leaf by leaf to structures of the same shape, keeping the structure.

    Named tuples stay named tuples of the same class, so an ``LSTMStateTuple`` maps to one.
    """
    first = structures[0]
    if isinstance(first, torch.Tensor):
        return fn(*structures)
    if isinstance(first, tuple):
        for other in structures[1:]:
            if not isinstance(other, tuple) or len(other) != len(first):
                raise ValueError(
                    f"state structures differ: {type(first).__name__} of {len(first)} vs {other!r}"
                )
        mapped = [map_structure(fn, *items) for items in zip(*structures, strict=True)]
        if hasattr(first, "_fields"):  # a namedtuple: rebuild the same class
            return type(first)(*mapped)
        return tuple(mapped)
    raise TypeError(f"a state is a tensor or a tuple of states, got {type(first).__name__}")


def flatten(structure: Any) -> list[torch.Tensor]:
    """The leaves of a structure in depth-first order."""
    if isinstance(structure, torch.Tensor):
        return [structure]
    leaves: list[torch.Tensor] = []
    for item in structure:
        leaves.extend(flatten(item))
    return leaves
