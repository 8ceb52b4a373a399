"""Variable-length sequences as the padded batch every model takes: ``pad_sequences``.

A list of ``(L_b, F)`` sequences becomes ``inputs`` ``(B, T, F)`` float32 and ``lengths``
``(B,)`` int32, the two inputs of ``docs/model-contract.md``, with ``T = max(L_b)`` unless asked
for more. numpy only, and no first-party imports, so every package can use this one helper
without an import pointing the wrong way: ``models.data`` (training batches), ``export``
(verification), ``service.engine.runtime`` (the served batches; the service never imports torch),
``loadtest`` (request bodies; its image copies ``padding/`` beside ``loadtest/``), ``bench`` and
the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pad_sequences"]


def pad_sequences(
    sequences: Sequence[np.ndarray], *, pad_value: float = 0.0, max_time: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``(L_b, F)`` sequences into ``(B, T, F)`` float32 and their lengths ``(B,)`` int32.

    ``T`` is the longest ``L_b``, or ``max_time`` (``ValueError`` if shorter than the longest);
    every step ``t >= L_b`` of row ``b`` holds ``pad_value``. ``F`` is that of the first
    sequence; one of another width raises ``ValueError``, as does an empty list.
    """
    if not len(sequences):
        raise ValueError("no sequences to pad")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int32, count=len(sequences))
    longest = int(lengths.max())
    time = longest if max_time is None else max_time
    if time < longest:
        raise ValueError(f"max_time {time} is shorter than the longest sequence ({longest})")
    first = np.shape(sequences[0])
    if len(first) != 2:
        raise ValueError(f"sequence 0: expected (L, F), got shape {first}")
    for b, sequence in enumerate(sequences):
        if np.ndim(sequence) != 2 or np.shape(sequence)[1] != first[1]:  # numpy would broadcast
            raise ValueError(f"sequence {b}: expected (L, {first[1]}), got {np.shape(sequence)}")
    shape = (len(sequences), time, first[1])
    # np.zeros for the common case: it is cheaper than filling (the OS hands out zeroed pages).
    batch = np.zeros(shape, np.float32) if pad_value == 0 else np.full(shape, pad_value, np.float32)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = sequence
    return batch, lengths
