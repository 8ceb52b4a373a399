"""Fixtures: a small model repository exported through export/, an in-process ORT reference,
and the app served through its ASGI interface with its lifespan."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from service.app import create_app
from service.registry import LoadedRuntime, onnx_runtime_factory
from service.settings import Settings
from tests.conftest import FEATURES, LABELS  # noqa: F401 (re-exported for the tests)


class Reference:
    """Each sequence run alone through in-process ORT: what the server must return."""

    def __init__(
        self, repo: Path, names: tuple[str, ...] | list[str] = ("tiny_bi", "tiny_uni")
    ) -> None:
        self.sessions = {
            name: ort.InferenceSession(
                str(repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
            )
            for name in names
        }

    def run(self, model: str, sequence: np.ndarray, **states: np.ndarray) -> dict[str, np.ndarray]:
        session = self.sessions[model]
        feeds = {
            "inputs": sequence[np.newaxis].astype(np.float32),
            "lengths": np.array([len(sequence)], np.int32),
            **{k: v[:, np.newaxis] for k, v in states.items()},
        }
        names = [o.name for o in session.get_outputs()]
        out = dict(zip(names, session.run(names, feeds), strict=True))
        return {k: (v[:, 0] if k.startswith("final_") else v[0]) for k, v in out.items()}


@pytest.fixture(scope="session")
def reference(model_repository: Path) -> Reference:
    return Reference(model_repository)


def small_settings(repo: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_repository": repo,
        "provider": "cpu",
        "warmup_batch_sizes": [1, 2],
        "warmup_lengths": [3],
        "max_sequence_length": 300,
        "max_batch_tokens": 4096,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class GatedRuntime:
    """A real runtime whose runs wait for ``gate`` (to hold batches in flight in tests)."""

    def __init__(self, inner: LoadedRuntime, gate: threading.Event) -> None:
        self.inner = inner
        self.gate = gate
        self.spec = inner.spec
        self.provider = inner.provider
        self.on_gpu = inner.on_gpu
        self.started = threading.Semaphore(0)
        self.batches: list[list[int]] = []  # lengths of every batch run

    def warmup(self, batch_sizes: list[int], lengths: list[int]) -> float:
        return self.inner.warmup(batch_sizes, lengths)

    def run_batch(self, sequences, initial_states, output_names):  # type: ignore[no-untyped-def]
        self.started.release()
        assert self.gate.wait(20), "the test never opened the gate"
        self.batches.append([len(s) for s in sequences])
        return self.inner.run_batch(sequences, initial_states, output_names)


def gated_factory(gate: threading.Event, made: list[GatedRuntime]) -> Callable[..., LoadedRuntime]:
    def factory(path: Path, name: str, version: str, settings: Settings) -> LoadedRuntime:
        runtime = GatedRuntime(onnx_runtime_factory(path, name, version, settings), gate)
        made.append(runtime)
        return runtime  # type: ignore[return-value]

    return factory


@asynccontextmanager
async def app_client(
    settings: Settings, factory: Callable[..., LoadedRuntime] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An app with its lifespan running, and an httpx client talking to it over ASGI."""
    app = create_app(settings) if factory is None else create_app(settings, factory)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
async def client(model_repository: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(small_settings(model_repository)) as http:
        yield http
