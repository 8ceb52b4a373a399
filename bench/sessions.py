"""ONNX Runtime sessions opened as the service opens them, for the in-process ceiling
(``bench.ceiling``), the naive baseline (``bench.naive_server``) and the GPU checks
(``bench.gpu_check``, which also opens TF32 sessions to compare): the same session options
(``contract.sessions.session_options``) and, on CUDA, the same FP32 provider options, so
that what differs from the service is what is measured (batching, HTTP), not ORT's settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort

from contract.providers import CPU, CUDA, CUDA_OPTIONS
from contract.sessions import session_options

Provider = Literal["cpu", "cuda"]


def ort_session(
    model_file: Path, intra_op_threads: int, provider: Provider = "cpu", tf32: bool = False
) -> ort.InferenceSession:
    """A session on ``model_file``: all graph optimisations, no spinning threads, FP32 on CUDA
    (TF32 off) unless ``tf32`` (ORT's CUDA default, which the service turns off: for measuring
    what that costs in accuracy and buys in speed; no effect on the CPU). ``RuntimeError`` when
    ``provider`` is ``cuda`` and CUDA did not load (ORT would otherwise run on the CPU without a
    word). ``intra_op_threads`` 0: ORT's default, one thread per physical core."""
    providers: list[Any] = [CPU]
    if provider == "cuda":
        providers.insert(0, (CUDA, {**CUDA_OPTIONS, "use_tf32": "1"} if tf32 else CUDA_OPTIONS))
    options = session_options(intra_op_threads)
    session = ort.InferenceSession(str(model_file), options, providers=providers)
    if provider == "cuda" and session.get_providers()[0] != CUDA:
        raise RuntimeError(f"{model_file}: the CUDA provider did not load")
    return session
