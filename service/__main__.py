"""``python -m service [--flags]``: serve the model repository (``--help`` lists every setting)."""

from __future__ import annotations

import logging
import math
import os
import tempfile

import uvicorn

from service.app import create_app
from service.logs import configure_logging
from service.settings import settings_from_cli, settings_to_env


def main() -> None:
    settings = settings_from_cli()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.model_repository.is_dir():
        logging.getLogger("service").error(
            "model repository %s does not exist: run `python -m export.defaults` to build the "
            "default models, or pass --model-repository",
            settings.model_repository,
        )
        raise SystemExit(2)
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        # uvicorn's own wait for the requests in flight; 0 means none (never "forever").
        "timeout_graceful_shutdown": math.ceil(settings.drain_timeout_s),
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings), workers=1, **common)  # type: ignore[arg-type]
        return
    # Workers are new processes: they rebuild the settings from the environment, and write
    # their metrics where /metrics (in any worker) can sum them.
    os.environ.update(settings_to_env(settings))
    with tempfile.TemporaryDirectory(prefix="lstm-serving-metrics-") as metrics_dir:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
        uvicorn.run(
            "service.app:create_app_from_env",
            factory=True,
            workers=settings.workers,
            **common,  # type: ignore[arg-type]
        )


if __name__ == "__main__":
    main()
