"""``python -m service [--flags]``: serve the model repository (``--help`` lists every setting).

One process by default (``service.frontend.server.DrainingServer``): HTTP and the models
together. With ``--workers N`` (or ``--engine separate``, or several ``--devices``), N HTTP
frontend processes on one listening socket and one engine process per device, under
``service.supervisor``.
The exit status says how the drain went (``service.frontend.server`` lists them).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import uvicorn

from service.exit_status import NO_REPOSITORY
from service.frontend.app import create_app
from service.frontend.server import DrainingServer
from service.logs import configure_logging
from service.settings import settings_from_cli, settings_to_env
from service.supervisor import run_supervised

log = logging.getLogger("service")


def main() -> None:
    settings = settings_from_cli()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.model_repository.is_dir():
        log.error(
            "model repository %s does not exist: run `python -m export.defaults` to build the "
            "default models, or pass --model-repository",
            settings.model_repository,
        )
        raise SystemExit(NO_REPOSITORY)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        # uvicorn's own wait for the requests in flight; 0 means none (never "forever").
        "timeout_graceful_shutdown": math.ceil(settings.drain_timeout_s),
        "limit_concurrency": settings.max_connections or None,
    }
    if not settings.separate_engine and settings.workers == 1:
        server = DrainingServer(uvicorn.Config(create_app(settings), **common))
        server.run()
        raise SystemExit(server.exit_status)
    # Frontends and engines are new processes: they rebuild the settings from the environment,
    # and write their metrics where /metrics (in any frontend) can sum them.
    os.environ.update(settings_to_env(settings))
    with tempfile.TemporaryDirectory(prefix="lstm-serving-") as run_dir:
        metrics_dir = Path(run_dir, "metrics")
        metrics_dir.mkdir()
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
        config = uvicorn.Config("service.frontend.app:create_app_from_env", factory=True, **common)
        status = run_supervised(config, settings, Path(run_dir))
    raise SystemExit(status)


if __name__ == "__main__":
    main()
