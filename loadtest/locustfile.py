"""Locust users for the LSTM service, for people who use Locust (it is not a dependency of this
project: ``pip install locust``). The same pre-encoded requests as ``python -m loadtest``.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 32 -r 8 -t 30s

Settings, from environment variables:

* ``LOADTEST_MODEL`` (``bilstm``), ``LOADTEST_PROTOCOL`` (``v2-binary``; or ``v1``, ``v2-json``);
* ``LOADTEST_LENGTHS`` (``10:200``) and ``LOADTEST_SEQUENCES`` (``1``): N, LOW:HIGH or A,B,C;
* ``LOADTEST_FEATURES`` (default: read from ``GET /v2/models/{model}`` at test start);
* ``LOADTEST_SEED`` (``0``), ``LOADTEST_POOL`` (``256`` distinct requests).

Locust's own client is slower than ``loadtest``'s (one process per core: ``--processes -1``);
the server's figures are at ``/metrics`` either way.
"""

from __future__ import annotations

# Locust first: it monkey-patches the standard library (gevent) and must do so before the
# modules below import it.
try:
    from locust import FastHttpUser, constant, events, task
except ImportError:  # locust is optional; this file still imports (and the tests parse it)
    FastHttpUser = None  # type: ignore[assignment,misc]

import os
import random
from typing import Any

from loadtest.distributions import parse_int_distribution
from loadtest.payloads import EncodedRequest, PoolSpec, build_pool
from loadtest.verify import fetch_model_info

_POOL: list[EncodedRequest] = []


def settings_from_env(features: int | None = None) -> PoolSpec:
    """The request pool the users send, from ``LOADTEST_*`` variables."""
    env = os.environ
    features = features or int(env.get("LOADTEST_FEATURES", "0"))
    return PoolSpec(
        protocol=env.get("LOADTEST_PROTOCOL", "v2-binary"),
        model=env.get("LOADTEST_MODEL", "bilstm"),
        features=features,
        lengths=parse_int_distribution(env.get("LOADTEST_LENGTHS", "10:200")),
        sequences_per_request=parse_int_distribution(env.get("LOADTEST_SEQUENCES", "1")),
        size=int(env.get("LOADTEST_POOL", "256")),
        seed=int(env.get("LOADTEST_SEED", "0")),
    )


def prepare_pool(host: str) -> list[EncodedRequest]:
    """Build the pool once per Locust process (features from the server unless given)."""
    features = int(os.environ.get("LOADTEST_FEATURES", "0")) or None
    if features is None:
        model = os.environ.get("LOADTEST_MODEL", "bilstm")
        features = fetch_model_info(host, model).features
    return build_pool(settings_from_env(features))


if FastHttpUser is not None:

    @events.test_start.add_listener
    def _on_test_start(environment: Any, **_: Any) -> None:
        _POOL[:] = prepare_pool(environment.host)

    class LstmUser(FastHttpUser):  # type: ignore[misc,valid-type]
        """Sends the next pooled request as soon as the last one returns (a closed loop)."""

        wait_time = constant(0)

        @task
        def infer(self) -> None:
            request = random.choice(_POOL)
            name = f"{os.environ.get('LOADTEST_PROTOCOL', 'v2-binary')} {request.path}"
            with self.client.post(
                request.path,
                data=request.body,
                headers=request.headers,
                name=name,
                catch_response=True,
            ) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}: {str(response.text)[:200]}")
