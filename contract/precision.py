"""The precision a served graph runs in (metadata ``precision``) and where each may run.

Standard library only: the exporter makes the variants (``export.precision``), the service picks
each one's provider by this table (``service.engine.runtime.session``).
"""

from __future__ import annotations

from collections.abc import Mapping

FP32, INT8, FP16 = "fp32", "int8", "fp16"
PRECISIONS = (FP32, INT8, FP16)

SERVED_ON = {FP32: ("cpu", "cuda"), INT8: ("cpu",), FP16: ("cuda",)}
"""Where each precision is served. int8 on the CPU only: its kernels (``DynamicQuantizeLSTM``,
``MatMulInteger``) have no CUDA implementation, so on a GPU server it gets a CPU session of its
own rather than a CUDA one that copies to the CPU at every node. fp16 on CUDA only: on the CPU
provider it is no faster than fp32 (docs/models-and-export.md, "Precision") and less exact."""


class PrecisionError(ValueError):
    """A graph's precision cannot be served on the provider there is."""


def precision_of(metadata: Mapping[str, str]) -> str:
    """The ``precision`` a model's metadata gives (``fp32`` when it gives none: every model
    exported before variants existed, and models exported elsewhere)."""
    precision = metadata.get("precision", FP32)
    if precision not in PRECISIONS:
        raise PrecisionError(f"metadata precision {precision!r} is none of {list(PRECISIONS)}")
    return precision


def variant_name(name: str, precision: str) -> str:
    """The repository name of ``name``'s ``precision`` variant: ``bilstm``, ``bilstm_int8``,
    ``bilstm_fp16``. A name per variant, not a version: the highest version is a model's
    default, and a variant is another model to choose, not a newer one."""
    return name if precision == FP32 else f"{name}_{precision}"
