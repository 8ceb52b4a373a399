"""The console's HTML: a skeleton that ``static/console.js`` fills from the service's own
endpoints (``/v1/models``, ``/v1/models/{name}/examples``, ``/metrics``)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from string import Template
from typing import Any

_TEMPLATE = Template((Path(__file__).parent / "page.html").read_text(encoding="utf-8"))


def render_page(ctx: Any, version: str, static: str) -> str:
    """The page for the app context ``ctx`` (None while starting): whether an API key is needed
    (the script then asks for it before it calls anything) and the asset paths."""
    needs_key = ctx is not None and ctx.settings.api_key is not None
    return _TEMPLATE.substitute(
        version=escape(version),
        static=escape(static),
        auth="required" if needs_key else "none",
    )
