"""The console in a real browser (headless Chromium from Debian's packages, driven by
Selenium; ``tests.support.browser``), against ``python -m service`` over the tiny repository
with examples: the page loads with no console error and asks for nothing but this server, shows
the models, its charts move under load, "try it" answers the class of a known example, the API
key is asked for and only ever sent as a header, and ``/docs`` and ``/redoc`` render offline.

Skipped, saying why, where selenium, Chromium or chromedriver is missing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.browser import Browser, missing
from tests.support.servers import Server

REASON = missing()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]
KEY = "browser-test-key"


@pytest.fixture(scope="module")
def server(examples_repository: Path) -> Iterator[Server]:
    running = Server(examples_repository)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    opened = Browser()
    try:
        yield opened
    finally:
        opened.quit()


def only_this_server(urls: list[str], server: Server) -> list[str]:
    """The URLs in ``urls`` that are neither this server's nor the page's own data."""
    return [u for u in urls if not u.startswith((server.url + "/", "data:", "blob:"))]


def test_the_page_loads_shows_the_models_and_asks_only_this_server(
    server: Server, browser: Browser
) -> None:
    browser.driver.get(server.url + "/")
    rows = browser.wait(
        "[...document.querySelectorAll('#models tbody tr[data-model]')].map(r => r.dataset.model)"
        ".join() === 'tiny_bi,tiny_uni' && document.querySelectorAll('#models tbody tr')",
        "the models table",
    )
    assert len(rows) == 2
    row = browser.driver.execute_script(
        "return [...document.querySelectorAll('#models tbody tr[data-model=tiny_bi] td')]"
        ".map(c => c.textContent)"
    )
    assert row[1:5] == ["1", "ready", "CPU", "fp32"] and row[5] == "[T, 5]" and row[7] == "3"
    assert row[9].startswith("passed on CPU")  # the export's parity figures, from metadata
    browser.wait("window.lstmConsole.polls >= 2", "two polls of /metrics")
    assert browser.wait("document.getElementById('status').dataset.state", "health") == "ready"
    assert browser.console_errors() == []
    urls = browser.requested_urls()
    assert server.url + "/metrics" in urls and server.url + "/static/console/console.js" in urls
    assert only_this_server(urls, server) == []


def test_charts_follow_the_servers_figures_under_load(
    server: Server, browser: Browser, tmp_path: Path
) -> None:
    browser.driver.get(server.url + "/")
    browser.wait("window.lstmConsole.polls >= 1", "the first figures")
    stop = threading.Event()
    sent = [0]

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                body = {"sequences": [[[0.1] * 5] * 9, [[0.2] * 5] * 3]}
                assert http.post("/v1/models/tiny_bi/predict", json=body).status_code == 200
                sent[0] += 1

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        latest = browser.wait(
            "(() => { const f = window.lstmConsole.figures.tiny_bi;"
            " return f && f.rps > 0 && f.sps > f.rps && f.p99 !== null && f.batch >= 1"
            " && f.padding > 0 && f.padding <= 1 && f; })()",
            "requests/s, sequences/s, p99, batch size and padding of tiny_bi",
        )
        # Each chart drew the model's line: its latest figure is there, and the canvas holds
        # pixels of the model's colour (the first colour of the palette, #2563eb).
        chart = json.loads(
            browser.wait("document.getElementById('chart-rps').dataset.latest", "the rps chart")
        )
        assert chart["tiny_bi"][0] > 0
        coloured = browser.driver.execute_script(
            "const c = document.querySelector('#chart-rps canvas');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
            "for (let i = 0; i < d.length; i += 4) if (d[i] === 0x25 && d[i+1] === 0x63"
            " && d[i+2] === 0xeb) n++; return n;"
        )
        assert coloured > 10
        browser.driver.save_screenshot(str(tmp_path / "console-under-load.png"))
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert sent[0] > 0 and latest["errors"] == 0
    assert browser.console_errors() == []


def test_try_it_answers_the_class_of_a_known_example(
    server: Server, browser: Browser, examples_repository: Path
) -> None:
    examples = json.loads((examples_repository / "tiny_uni" / "examples.json").read_text())
    browser.driver.get(server.url + "/")
    browser.wait("document.getElementById('try-example').dataset.loaded === 'tiny_bi'", "examples")
    browser.driver.execute_script(
        "const s = document.getElementById('try-model'); s.value = 'tiny_uni';"
        "s.dispatchEvent(new Event('change'));"
    )
    browser.wait("document.getElementById('try-example').dataset.loaded === 'tiny_uni'", "examples")
    for index, example in enumerate(examples["examples"]):
        browser.driver.execute_script(
            "const s = document.getElementById('try-example'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('change'));"
            "document.getElementById('try-result').dataset.label = '';"
            "document.getElementById('try-send').click();",
            str(index),
        )
        shown = browser.wait("document.getElementById('try-result').dataset.label", "an answer")
        assert shown == example["label"]
        result = browser.driver.execute_script("return window.lstmConsole.lastResult")
        assert result["trueLabel"] == example["label"] and result["latencyMs"] > 0
        assert abs(sum(result["probabilities"]) - 1) < 1e-5
        assert len(browser.driver.find_elements("css selector", "#try-bars rect")) == 3
    text = browser.driver.find_element("id", "try-result").text
    assert "matches the true label" in text and "round trip" in text
    assert browser.console_errors() == []


def test_a_pasted_sequence_of_the_wrong_size_shows_the_servers_message(
    server: Server, browser: Browser
) -> None:
    browser.driver.get(server.url + "/")
    browser.wait("document.getElementById('try-example').dataset.loaded === 'tiny_bi'", "examples")
    browser.driver.execute_script(
        "document.getElementById('try-sequence').value = '[[1, 2], [3, 4]]';"
        "document.getElementById('try-send').click();"
    )
    error = browser.wait("document.getElementById('try-error').textContent", "the error")
    assert error.startswith("422: ") and "5" in error  # the server's own message


def test_with_an_api_key_the_console_asks_for_it_and_sends_it_only_as_a_header(
    examples_repository: Path, browser: Browser
) -> None:
    keyed = Server(examples_repository, "--api-key", KEY, "--api-key-protects-metrics")
    try:
        browser.driver.get(keyed.url + "/")
        browser.wait("!document.getElementById('auth').hidden", "the API key form")
        assert only_this_server(browser.requested_urls(), keyed) == []
        # Nothing was asked before the key: no 401 in the console.
        assert browser.console_errors() == []
        browser.driver.find_element("id", "api-key").send_keys(KEY)
        browser.driver.find_element("css selector", "#auth button").click()
        browser.wait("window.lstmConsole.polls >= 1", "figures from the protected /metrics")
        browser.wait(
            "document.querySelectorAll('#models tbody tr[data-model]').length === 2", "rows"
        )
        requests = browser.request_headers()
        assert not [url for url, _ in requests if KEY in url]
        authorized = [u for u, h in requests if h.get("Authorization") == f"Bearer {KEY}"]
        assert keyed.url + "/metrics" in authorized and keyed.url + "/v1/models" in authorized
        assert (
            browser.driver.execute_script("return sessionStorage.getItem('lstm-serving-api-key')")
            == KEY
        )
        assert KEY not in browser.driver.current_url
    finally:
        keyed.stop()


@pytest.mark.parametrize(
    ("page", "rendered"),
    [
        ("/docs", "document.querySelector('.swagger-ui .info .title')"),
        (
            "/redoc",
            "[...document.querySelectorAll('h1')].some(h => h.textContent.includes('lstm'))",
        ),
    ],
)
def test_the_documentation_pages_render_offline(
    server: Server, browser: Browser, page: str, rendered: str
) -> None:
    browser.driver.get(server.url + page)
    browser.wait(rendered, f"{page} rendered")
    assert only_this_server(browser.requested_urls(), server) == []
    assert browser.console_errors() == []


def test_with_an_api_key_the_swagger_ui_opens_and_offers_to_authorize(
    examples_repository: Path, browser: Browser
) -> None:
    """A browser cannot send the key to open /docs: the page and its schema are open, and the
    schema's bearer scheme gives Swagger UI its "Authorize" button, so "Try it out" can send it."""
    keyed = Server(examples_repository, "--api-key", KEY)
    try:
        browser.driver.get(keyed.url + "/docs")
        browser.wait("document.querySelector('.swagger-ui .info .title')", "/docs rendered")
        button = browser.wait(
            "document.querySelector('.swagger-ui .auth-wrapper button.authorize')",
            "the Authorize button",
        )
        assert button.text.strip() == "Authorize"
        assert keyed.url + "/openapi.json" in browser.requested_urls()
        assert only_this_server(browser.requested_urls(), keyed) == []
        assert browser.console_errors() == []
    finally:
        keyed.stop()
