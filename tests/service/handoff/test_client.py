"""``RemoteBatcher``'s admission and choice of engine (``service.handoff.client``), over engine
clients whose state is set by hand (no engine needed): 503 when no engine can run the model,
429 when every one that can is full, and each request to the least loaded engine."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from service.errors import Overloaded, Unavailable
from service.handoff.client import EngineClient, RemoteBatcher
from service.handoff.messages import Description, ModelStatus
from service.handoff.remote import described_models

MODEL = ("m", "1")


class RecordingClient(EngineClient):
    """An engine client that records what it is asked to submit instead of sending it."""

    def set_state(self, *, up: bool, ready: bool = True, depth: int = 0) -> None:
        self._connected = up
        self._last_pong = time.monotonic() if up else -1e9
        self.status = {MODEL: ModelStatus(*MODEL, ready, depth)}

    def submit(
        self, model, version, sequences, initial_states, output_names, deadline, stream=None
    ):  # type: ignore[no-untyped-def, override]
        self.submitted.append(len(sequences))
        return []


@pytest.fixture
def engines() -> Iterator[list[RecordingClient]]:
    made = [RecordingClient(f"ipc:///nowhere-{k}") for k in range(2)]
    for client in made:
        client.submitted = []  # type: ignore[attr-defined]
    yield made
    for client in made:
        client._monitor.close()
        client._socket.close()
        client._context.term()


def sequences(n: int) -> list[np.ndarray]:
    return [np.zeros((3, 2), np.float32)] * n


def test_no_ready_engine_is_503_with_retry_after(engines: list[RecordingClient]) -> None:
    batcher = RemoteBatcher(*MODEL, engines, max_queue=10)
    engines[0].set_state(up=False)
    engines[1].set_state(up=True, ready=False)
    assert not batcher.healthy
    with pytest.raises(Unavailable) as refused:
        batcher.check_admission()
    assert refused.value.headers == {"Retry-After": "1"}


def test_429_only_when_every_ready_engine_reported_a_full_queue(
    engines: list[RecordingClient],
) -> None:
    batcher = RemoteBatcher(*MODEL, engines, max_queue=10)
    engines[0].set_state(up=True, depth=10)
    engines[1].set_state(up=True, depth=7)
    # The depths are as of the last pong: what might fit is left to the engine to decide.
    batcher.check_admission(4)
    engines[1].set_state(up=True, depth=10)
    with pytest.raises(Overloaded, match="10 sequences waiting"):
        batcher.check_admission(1)
    assert batcher.queue_depth == 20


def test_each_request_goes_to_the_least_loaded_ready_engine(
    engines: list[RecordingClient],
) -> None:
    batcher = RemoteBatcher(*MODEL, engines, max_queue=100)
    engines[0].set_state(up=True, depth=5)
    engines[1].set_state(up=True, depth=1)
    batcher.submit(sequences(2), [None, None], frozenset({"probs"}), time.monotonic() + 1)
    engines[1].set_state(up=False)  # gone: only the busier one is left
    batcher.submit(sequences(1), [None], frozenset({"probs"}), time.monotonic() + 1)
    assert engines[1].submitted == [2]  # type: ignore[attr-defined]
    assert engines[0].submitted == [1]  # type: ignore[attr-defined]


def test_a_model_is_described_by_the_first_engine_that_loaded_it() -> None:
    failed = {"name": "m", "version": "1", "spec": None, "provider": None, "error": "OOM"}
    loaded = {"name": "m", "version": "1", "spec": {"x": 1}, "provider": "cuda", "error": None}
    other = {"name": "n", "version": "2", "spec": None, "provider": None, "error": "bad file"}
    models = described_models(
        [Description("gpu0", [failed, other]), Description("gpu1", [loaded, other])]
    )
    assert models == [loaded, other]  # one GPU's failure does not hide the other's model
