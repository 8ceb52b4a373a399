"""Open Inference Protocol (KServe V2) request bodies in JSON, as the tests send them
(``tests/service``)."""

from __future__ import annotations

from typing import Any

import numpy as np


def tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    """One input tensor as a V2 JSON body lists it; ``data`` as given (right or wrong)."""
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def v2_json(batch: np.ndarray, lengths: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    """A V2 JSON body: ``inputs`` ``batch`` ``(B, T, F)`` FP32, INT32 ``lengths`` if given, and
    ``extra`` fields (``outputs=[...]``, ``parameters={...}``)."""
    inputs = [tensor("inputs", list(batch.shape), "FP32", batch.ravel().tolist())]
    if lengths is not None:
        inputs.append(tensor("lengths", [len(lengths)], "INT32", lengths))
    return {"inputs": inputs, **extra}
