"""The console's routes: ``/`` (the page), ``/static/...`` (its script, styles and the vendored
documentation assets), ``/docs`` (Swagger UI) and ``/redoc``, all served from the package."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from service import __version__
from service.frontend.console.page import render_page

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"
"""Everything under it is a file of the package, the same for every caller: open even when an
API key is set, so that the page can load before it asks for the key."""

PAGE_PATH = "/"
SWAGGER_UI_PATH = "/docs"
REDOC_PATH = "/redoc"
DOCS_PATHS = (SWAGGER_UI_PATH, REDOC_PATH)
"""The documentation pages; with the app's ``openapi_url``, what ``api_key_protects_docs``
closes (``frontend/auth.py``)."""

SWAGGER_UI_VERSION = "5.35.0"
REDOC_VERSION = "2.5.4"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page loads nothing from anywhere but this service (the browser enforces it)."""


def install_console(app: FastAPI) -> None:
    """Add the console, the static files and the offline documentation pages to ``app`` (built
    with ``docs_url=None, redoc_url=None``, so these replace FastAPI's CDN-backed pages)."""
    app.mount(STATIC_PREFIX.rstrip("/"), StaticFiles(directory=STATIC_DIR), name="static")
    vendor = f"{STATIC_PREFIX}vendor"

    @app.get(PAGE_PATH, include_in_schema=False)
    async def console(request: Request) -> HTMLResponse:
        ctx = getattr(request.app.state, "context", None)
        html = render_page(ctx, __version__, STATIC_PREFIX)
        headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-store"}
        return HTMLResponse(html, headers=headers)

    @app.get(SWAGGER_UI_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=str(app.openapi_url),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{vendor}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{vendor}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{vendor}/swagger-ui/favicon-32x32.png",
            # validatorUrl null: no badge fetched from validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=str(app.openapi_url),
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{vendor}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{vendor}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
