"""The service's settings (``service.settings``): a flag, an environment variable, and what a
worker process rebuilds from the environment agree."""

from __future__ import annotations

import pytest

from service.settings import Settings, settings_from_cli, settings_to_env


def test_the_arena_is_a_flag_and_reaches_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LSTM_SERVING_ORT_CPU_MEM_ARENA", raising=False)
    assert settings_from_cli([]).ort_cpu_mem_arena is True
    off = settings_from_cli(["--no-ort-cpu-mem-arena"])
    assert off.ort_cpu_mem_arena is False
    for name, value in settings_to_env(off).items():
        monkeypatch.setenv(name, value)
    assert Settings().ort_cpu_mem_arena is False  # what a worker process rebuilds


def test_the_process_model_settings_refuse_what_cannot_work() -> None:
    assert not Settings().separate_engine  # one worker, one device: one process
    assert Settings(workers=2).separate_engine
    assert Settings(devices=[0, 1]).separate_engine
    assert Settings(engine="separate").separate_engine
    assert not Settings(engine="in-process", workers=4).separate_engine
    with pytest.raises(ValueError, match="engine_heartbeat_ms"):
        Settings(engine_heartbeat_ms=1000, engine_timeout_s=2)
    with pytest.raises(ValueError, match="one engine per device"):
        Settings(engine="in-process", devices=[0, 1])
    with pytest.raises(ValueError, match="twice"):
        Settings(devices=[1, 1])
