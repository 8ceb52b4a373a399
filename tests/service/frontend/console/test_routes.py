"""The console's routes through the app's ASGI interface: the page, its assets and the offline
documentation pages (every asset served from the package, none from elsewhere), the examples
route, and which of them the API key guards (the documentation: only with
``api_key_protects_docs``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from service.frontend.app import create_app
from service.frontend.console.routes import REDOC_VERSION, STATIC_DIR, SWAGGER_UI_VERSION
from tests.support.service_app import app_client
from tests.support.tiny_repository import tiny_settings

pytestmark = pytest.mark.anyio
KEY = "console-test-key"
PAGES = ("/", "/docs", "/redoc")
DOCS = ("/docs", "/redoc", "/openapi.json")


def assets_of(html: str) -> list[str]:
    """Every ``src``/``href`` of a page that is not an in-page anchor."""
    return [
        url
        for url in re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
        if not url.startswith("#")
    ]


async def test_the_page_is_html_under_a_strict_content_security_policy(
    examples_repository: Path,
) -> None:
    async with app_client(tiny_settings(examples_repository)) as http:
        page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy and "unsafe" not in policy
    assert 'data-auth="none"' in page.text
    assert "<script>" not in page.text  # no inline script: the policy would refuse it


@pytest.mark.parametrize("page", PAGES)
async def test_every_asset_of_a_page_is_served_here(examples_repository: Path, page: str) -> None:
    async with app_client(tiny_settings(examples_repository)) as http:
        html = (await http.get(page)).text
        assets = assets_of(html)
        assert assets, f"{page} references no asset"
        local = [a for a in assets if a.startswith("/static/")]
        other = [a for a in assets if a not in local and not a.startswith(("data:", "/"))]
        assert not other, f"{page} loads from elsewhere: {other}"
        assert local, f"{page} loads no asset of the package"
        for asset in local:
            response = await http.get(asset)
            assert response.status_code == 200 and response.content, asset
            file = STATIC_DIR / asset.removeprefix("/static/")
            assert response.content == file.read_bytes(), asset


async def test_a_static_path_outside_the_folder_is_not_served(examples_repository: Path) -> None:
    async with app_client(tiny_settings(examples_repository)) as http:
        response = await http.get("/static/../routes.py")
        assert response.status_code == 404


async def test_examples_route_returns_what_the_export_wrote(examples_repository: Path) -> None:
    written = json.loads((examples_repository / "tiny_bi" / "examples.json").read_text())
    async with app_client(tiny_settings(examples_repository)) as http:
        body = (await http.get("/v1/models/tiny_bi/examples")).json()
        unknown = await http.get("/v1/models/nope/examples")
        schema = (await http.get("/openapi.json")).json()
    assert body["model"] == "tiny_bi" and body["source"] == written["source"]
    assert body["examples"] == written["examples"]
    assert unknown.status_code == 404 and unknown.json()["error_type"] == "model_not_found"
    assert "/v1/models/{name}/examples" in schema["paths"]


async def test_a_model_without_examples_has_an_empty_list(model_repository: Path) -> None:
    async with app_client(tiny_settings(model_repository)) as http:
        response = await http.get("/v1/models/tiny_uni/examples")
    assert response.status_code == 200
    assert response.json() == {"model": "tiny_uni", "source": None, "examples": []}


async def test_with_an_api_key_the_page_assets_and_docs_are_open_and_the_data_is_not(
    examples_repository: Path,
) -> None:
    async with app_client(tiny_settings(examples_repository, api_key=KEY)) as http:
        page = await http.get("/")
        script = await http.get("/static/console/console.js")
        docs = {path: await http.get(path) for path in DOCS}
        refused = [
            (await http.get(path)).status_code
            for path in ("/v1/models", "/v1/models/tiny_bi/examples")
        ]
        predict = await http.post("/v1/models/tiny_bi/predict", json={"sequences": [[[0.1] * 5]]})
        refused.append(predict.status_code)
        examples = await http.get(
            "/v1/models/tiny_bi/examples", headers={"Authorization": f"Bearer {KEY}"}
        )
    assert page.status_code == 200 and 'data-auth="required"' in page.text
    assert KEY not in page.text
    assert script.status_code == 200
    assert {path: r.status_code for path, r in docs.items()} == dict.fromkeys(DOCS, 200)
    # The schema describes the API's shape only: it names no model this service serves.
    schema = docs["/openapi.json"].text
    assert "/v1/models/{name}/predict" in schema
    assert "tiny_bi" not in schema and "tiny_uni" not in schema and KEY not in schema
    assert refused == [401, 401, 401]
    assert examples.status_code == 200 and examples.json()["examples"]


async def test_api_key_protects_docs_closes_the_documentation(examples_repository: Path) -> None:
    settings = tiny_settings(examples_repository, api_key=KEY, api_key_protects_docs=True)
    async with app_client(settings) as http:
        refused = [(await http.get(path)).status_code for path in DOCS]
        page = await http.get("/")
        schema = await http.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    assert refused == [401, 401, 401]
    assert page.status_code == 200  # the console's page stays open: it asks for the key
    assert schema.status_code == 200 and "securitySchemes" in schema.json()["components"]


async def test_the_console_comes_after_the_inference_routes(examples_repository: Path) -> None:
    """Inference answers as before: the console's routes are matched after every API route, and
    inference requests are answered by the fast path before any route is matched."""
    paths = [getattr(r, "path", "") for r in create_app(tiny_settings(examples_repository)).routes]
    assert paths.index("/") > paths.index("/v2/models/{name}/infer")
    assert paths.index("/static") > paths.index("/v1/models/{name}/predict")
    async with app_client(tiny_settings(examples_repository)) as http:
        response = await http.post("/v1/models/tiny_bi/predict", json={"sequences": [[[0.1] * 5]]})
    assert response.status_code == 200


def test_the_vendored_assets_are_noted_with_version_and_license() -> None:
    notes = (STATIC_DIR / "vendor" / "README.md").read_text()
    assert f"| {SWAGGER_UI_VERSION} |" in notes and f"| {REDOC_VERSION} |" in notes
    for folder in ("swagger-ui", "redoc"):
        assert (STATIC_DIR / "vendor" / folder / "LICENSE").is_file()
    bundle = (STATIC_DIR / "vendor" / "swagger-ui" / "swagger-ui-bundle.js").read_text()
    assert SWAGGER_UI_VERSION in bundle
    assert REDOC_VERSION in (STATIC_DIR / "vendor" / "redoc" / "redoc.standalone.js").read_text()
