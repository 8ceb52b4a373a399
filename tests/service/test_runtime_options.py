"""ONNX Runtime's CPU memory arena is a setting (on by default: faster, measured in
bench/results/cpu-arena-2026-12-01.md), and the sessions the service builds follow it."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.registry import onnx_runtime_factory
from service.runtime.session import session_options
from service.settings import Settings, settings_from_cli, settings_to_env


def test_session_options_keep_the_arena_unless_told() -> None:
    assert session_options(1).enable_cpu_mem_arena is True
    assert session_options(1, cpu_mem_arena=False).enable_cpu_mem_arena is False


@pytest.mark.parametrize("arena", [True, False])
def test_the_service_session_follows_the_setting(model_repository: Path, arena: bool) -> None:
    settings = Settings(model_repository=model_repository, provider="cpu", ort_cpu_mem_arena=arena)
    path = model_repository / "tiny_uni" / "1" / "model.onnx"
    runtime = onnx_runtime_factory(path, "tiny_uni", "1", settings)
    assert runtime.session.get_session_options().enable_cpu_mem_arena is arena  # type: ignore[attr-defined]


def test_the_arena_is_a_flag_and_reaches_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LSTM_SERVING_ORT_CPU_MEM_ARENA", raising=False)
    assert settings_from_cli([]).ort_cpu_mem_arena is True
    off = settings_from_cli(["--no-ort-cpu-mem-arena"])
    assert off.ort_cpu_mem_arena is False
    for name, value in settings_to_env(off).items():
        monkeypatch.setenv(name, value)
    assert Settings().ort_cpu_mem_arena is False  # what a worker process rebuilds
