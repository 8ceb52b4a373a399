"""Length-aware batch formation: which waiting sequences run together.

A pure function over lengths, so it is tested without a runtime or an event loop.

The oldest waiting sequence anchors the batch (so nothing starves); the batch then grows to
the neighbours of the anchor in length order, always taking the one whose length is closest,
while it stays within the size limit, the padded-step budget (``size x longest``) and the
padding-efficiency target (``real steps / padded steps``). A model that takes no lengths gets
exact-length batches: only sequences as long as the anchor join it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPolicy:
    """Bounds on one batch."""

    max_batch_size: int
    max_batch_tokens: int
    """Padded steps: batch size x longest length."""
    padding_efficiency_target: float
    """Least real/padded steps a batch may have once it holds two or more sequences."""
    exact_length: bool = False
    """Only sequences of the anchor's length: for a model without a lengths input, whose
    results padding would change (``ModelSpec.padding_sensitive``)."""


@dataclass(frozen=True)
class Selection:
    indices: list[int]
    """Positions (in the given lengths) of the chosen sequences."""
    full: bool
    """True when a size or token limit stopped growth: waiting longer cannot improve it."""
    real_steps: int
    padded_steps: int


def select_batch(lengths: Sequence[int], anchor: int, policy: BatchPolicy) -> Selection:
    """Choose a batch around ``lengths[anchor]``.

    Args:
        lengths: length of each waiting sequence, in any order.
        anchor: position of the sequence that must be in the batch (the oldest).
        policy: the bounds.
    """
    order = sorted(range(len(lengths)), key=lambda k: (lengths[k], k))
    pos = order.index(anchor)
    lo = hi = pos  # the batch is order[lo : hi + 1]
    shortest = longest = real = lengths[anchor]
    full = False
    while hi - lo + 1 < policy.max_batch_size:
        left = order[lo - 1] if lo > 0 else None
        right = order[hi + 1] if hi + 1 < len(order) else None
        if left is None and right is None:
            break
        # Take the neighbour whose length widens the batch's length range least.
        take_left = right is None or (
            left is not None and shortest - lengths[left] <= lengths[right] - longest
        )
        candidate = left if take_left else right
        assert candidate is not None
        if policy.exact_length and lengths[candidate] != lengths[anchor]:
            break  # the closest neighbour differs, so every one further out does too
        new_short = min(shortest, lengths[candidate])
        new_long = max(longest, lengths[candidate])
        size = hi - lo + 2
        if size * new_long > policy.max_batch_tokens:
            full = True
            break
        if real + lengths[candidate] < policy.padding_efficiency_target * size * new_long:
            break
        shortest, longest, real = new_short, new_long, real + lengths[candidate]
        if take_left:
            lo -= 1
        else:
            hi += 1
    else:
        full = True
    indices = order[lo : hi + 1]
    return Selection(indices, full, real, len(indices) * longest)
