"""``python -m service [--flags]``: serve the model repository (``--help`` lists every setting)."""

from __future__ import annotations

import logging

import uvicorn

from service.app import create_app
from service.logs import configure_logging
from service.settings import settings_from_cli


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
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        log_config=None,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
    )


if __name__ == "__main__":
    main()
