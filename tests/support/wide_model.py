"""A model slow enough per run that a queue builds while a test looks, the flags that make its
server run one sequence at a time, and the load that fills that queue: for the tests of SIGTERM
drains, workers and load on a real server (``tests/service``: ``test_server.py``,
``test_workers.py``, ``test_e2e.py``).

``MODEL`` (``wide``): bidirectional [96, 96], F = ``FEATURES``, 3 classes, random weights
(seed 1), exported through ``export/``; the ``wide_repository`` fixture of
``tests/service/conftest.py`` holds it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch

from export.exporter import export_model
from models.architectures import LSTMClassifier, LSTMClassifierConfig
from tests.support.servers import Server, metric
from tests.support.tiny_repository import FEATURES

MODEL = "wide"
DEPTH = f'lstm_queue_depth{{model="{MODEL}"}}'
SEQUENCES = f'lstm_sequences_total{{model="{MODEL}"}}'
SLOW = ("--max-batch-size", "1", "--concurrent-batches", "1")
"""One sequence per run, one run at a time: a few requests keep the queue busy for seconds."""
PER_REQUEST = 16
DRAIN_WAIT_S = 90.0
"""How long a test waits for a server of ``MODEL`` to exit after SIGTERM (``Server.stop``)."""


def export_wide_model(repo: Path) -> Path:
    """``MODEL`` as version 1 in ``repo``; returns ``repo``."""
    torch.manual_seed(1)
    config = LSTMClassifierConfig(FEATURES, (96, 96), 3, bidirectional=True)
    export_model(LSTMClassifier(config), repo, MODEL, 1)
    return repo


def send_load(
    server: Server, pool: ThreadPoolExecutor, requests: int = 8, sequences: int = PER_REQUEST
) -> list[Future[int | BaseException]]:
    """``requests`` v1 requests of ``sequences`` sequences of 500 steps each to ``MODEL``, sent
    from ``pool``; each future holds the status code, or the transport error of a request cut
    off (the server closed the connection)."""
    rng = np.random.default_rng(3)
    body = {"sequences": rng.standard_normal((sequences, 500, FEATURES)).round(3).tolist()}

    def one() -> int | BaseException:
        try:
            url = f"{server.url}/v1/models/{MODEL}/predict"
            return httpx.post(url, json=body, timeout=90).status_code
        except httpx.TransportError as error:  # cut off: the server closed the connection
            return error

    return [pool.submit(one) for _ in range(requests)]


def queued(server: Server, total: float) -> bool:
    """Whether ``server`` has accepted ``total`` sequences of ``MODEL`` so far."""
    return metric(server.metrics(), SEQUENCES, default=0) == total
