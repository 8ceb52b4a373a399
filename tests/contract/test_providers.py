"""Provider choice and the CUDA/cuDNN preload: the preload runs only where CUDA may load, and its
failure on a host without a GPU (or without the CUDA wheels) is logged, never fatal."""

from __future__ import annotations

import logging

import pytest

from contract import providers
from contract.providers import CPU, CUDA, candidate_providers, preload_cuda_libraries


@pytest.fixture(autouse=True)
def _fresh_preload() -> None:
    preload_cuda_libraries.cache_clear()


def _cuda_looks_possible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(providers, "nvidia_driver_present", lambda: True)


def test_cpu_asks_for_no_preload(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(providers.ort, "preload_dlls", lambda: calls.append("x"))
    assert candidate_providers("cpu") == [CPU]
    monkeypatch.setattr(providers, "nvidia_driver_present", lambda: False)
    assert candidate_providers("auto") == [CPU]
    assert calls == []


def test_cuda_preloads_once_before_the_first_session(monkeypatch: pytest.MonkeyPatch) -> None:
    _cuda_looks_possible(monkeypatch)
    calls: list[str] = []
    monkeypatch.setattr(providers.ort, "preload_dlls", lambda: calls.append("x"))
    assert candidate_providers("cuda") == [CUDA, CPU]
    assert candidate_providers("auto") == [CUDA, CPU]
    assert calls == ["x"]


def test_a_failed_preload_is_logged_and_harmless(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _cuda_looks_possible(monkeypatch)

    def broken() -> None:
        print("loading libcudart.so.13")
        raise RuntimeError("Invalid parameter of directory=None")

    monkeypatch.setattr(providers.ort, "preload_dlls", broken)
    with caplog.at_level(logging.INFO, logger=providers.__name__):
        assert candidate_providers("auto") == [CUDA, CPU]  # the session still tries, then CPU
    assert "preloading the CUDA/cuDNN libraries failed" in caplog.text
    assert "preload_dlls: loading libcudart.so.13" in caplog.text
