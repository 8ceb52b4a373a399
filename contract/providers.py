"""Execution-provider choice: use CUDA only where it really loads, and say which one runs.

``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` as available even on a machine with no GPU,
and a session asked for it there logs an error and silently runs on the CPU. So the choice is
checked: no NVIDIA driver means CPU without trying; otherwise the CUDA and cuDNN libraries are
preloaded from the ``nvidia-*`` wheels where installed (``onnxruntime-gpu[cuda,cudnn]``: the
image carries no system CUDA), the session is created with CUDA (with ORT's own logging hushed
for that attempt) and the providers it actually got are read back.
"""

from __future__ import annotations

import ctypes
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from functools import cache
from typing import Literal

import onnxruntime as ort

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ProviderPreference = Literal["auto", "cuda", "cpu"]


def device_name(provider: str, cuda_device_id: int) -> str:
    """Where a session on ``provider`` runs, as the metrics' ``device`` label says it:
    ``cuda:N`` on GPU ``N``, ``cpu`` for the CPU provider (an int8 variant, or no CUDA)."""
    return f"cuda:{cuda_device_id}" if provider == CUDA else "cpu"


# ORT's default logger: 3 = errors only. Warnings such as "some nodes were not assigned to the
# preferred execution providers" are expected for shape ops and are not actionable.
ORT_LOG_SEVERITY = 3


def nvidia_driver_present() -> bool:
    """Whether the CUDA driver library can be loaded (a GPU and its driver are there)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@cache
def preload_cuda_libraries() -> bool:
    """Load CUDA and cuDNN from the ``nvidia-*`` wheels before a CUDA session needs them.

    ``onnxruntime.preload_dlls()`` (ORT's documented way for CUDA/cuDNN from PyPI) dlopens the
    wheels' libraries globally, so the CUDA provider finds them without ``LD_LIBRARY_PATH``; where
    the wheels are absent (a CPU-only image, or system CUDA) the default library paths still
    apply. A failure is logged, never raised: the session creation that follows says whether CUDA
    loaded. Once per process. Returns whether the preload ran without error.
    """
    printed = io.StringIO()
    try:
        with redirect_stdout(printed):  # ORT prints what it loads and its warnings
            ort.preload_dlls()
    except Exception as error:  # noqa: BLE001 - any failure here must leave the CPU path working
        log.warning("preloading the CUDA/cuDNN libraries failed: %s", error)
        return False
    finally:
        for line in printed.getvalue().splitlines():
            if line.strip():
                log.info("preload_dlls: %s", line.strip())
    log.info("CUDA/cuDNN libraries preloaded (onnxruntime.preload_dlls)")
    return True


# TF32 GEMMs (ORT's CUDA default) carry ~1e-3 relative error per step; over 200 steps of a
# trained LSTM that grew to 3e-2 in probabilities on an H100 (bench/results). Exact FP32 costs
# little here, since an LSTM's time goes to per-step launches rather than GEMM throughput.
CUDA_OPTIONS = {"use_tf32": "0"}


class ProviderUnavailableError(RuntimeError):
    """The execution provider asked for cannot run here (e.g. CUDA on a machine without a GPU)."""


def candidate_providers(preference: ProviderPreference) -> list[str]:
    """The providers to ask a session for, best first; ``ProviderUnavailableError`` when
    ``cuda`` is asked for where it cannot load."""
    if preference == "cpu":
        return [CPU]
    cuda_possible = CUDA in ort.get_available_providers() and nvidia_driver_present()
    if preference == "cuda" and not cuda_possible:
        raise ProviderUnavailableError(
            f"provider 'cuda' was asked for, but {CUDA} cannot load here (not in this "
            "onnxruntime build, or no NVIDIA driver); use --provider auto or cpu"
        )
    if not cuda_possible:
        return [CPU]
    preload_cuda_libraries()
    return [CUDA, CPU]


@contextmanager
def quiet_ort_logs() -> Iterator[None]:
    """Hush ORT's logger while a provider that may not load is tried; we report the outcome."""
    ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        ort.set_default_logger_severity(ORT_LOG_SEVERITY)
