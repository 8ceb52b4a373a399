"""The console: a page at ``/`` that shows what the service is doing (its models, live charts
from its own ``/metrics``, a "try it" panel), and ``/docs`` and ``/redoc`` with their assets
served locally. Everything it loads comes from this service (``/static/``): it works offline.

Nothing here runs on an inference request: the page and its script call the same public
endpoints any client calls (``/v1/models``, ``/metrics``, ``/v1/models/{name}/predict``).
"""

from service.frontend.console.routes import DOCS_PATHS, PAGE_PATH, STATIC_PREFIX, install_console

__all__ = ["DOCS_PATHS", "PAGE_PATH", "STATIC_PREFIX", "install_console"]
