"""The console in a real browser (headless Chromium from Debian's packages, driven by
Selenium; ``tests.support.browser``), against ``python -m service`` over the tiny repository
with examples: the page loads with no console error and asks for nothing but this server, shows
the models, its charts move under load (also with two workers, whose figures the server sums),
the device charts draw a line per device (two stand-in GPUs, in an app served from this
process), "try it" answers the class of a known example, the API key is asked for and only ever
sent as a header, and ``/docs`` and ``/redoc`` render offline.

Skipped, saying why, where selenium, Chromium or chromedriver is missing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from service.engine.loading import LoadedRuntime, onnx_runtime_factory
from service.frontend.app import create_app
from service.settings import Settings
from tests.support.browser import Browser, missing
from tests.support.servers import Server, serve_app
from tests.support.tiny_repository import tiny_settings

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


@contextmanager
def sending(url: str, models: tuple[str, ...], clients: int = 4) -> Iterator[list[int]]:
    """``clients`` threads sending v1 requests (a 9-step and a 3-step sequence each) to every
    model of ``models`` at ``url`` in turn, each answered 200, until the block ends; yields the
    count of requests sent so far."""
    stop = threading.Event()
    sent = [0]
    errors: list[BaseException] = []

    def load() -> None:
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                while not stop.is_set():
                    for model in models:
                        body = {"sequences": [[[0.1] * 5] * 9, [[0.2] * 5] * 3]}
                        answer = http.post(f"/v1/models/{model}/predict", json=body)
                        assert answer.status_code == 200, answer.text
                        sent[0] += 1
        except BaseException as error:  # noqa: BLE001 - raised again in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield sent
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not errors, errors


def coloured_pixels(browser: Browser, chart: str, rgb: tuple[int, int, int]) -> int:
    """How many pixels of the chart ``chart``'s canvas are of the colour ``rgb``."""
    return int(
        browser.driver.execute_script(
            "const c = document.querySelector('#chart-' + arguments[0] + ' canvas');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
            "for (let i = 0; i < d.length; i += 4) if (d[i] === arguments[1] && d[i+1] ==="
            " arguments[2] && d[i+2] === arguments[3]) n++; return n;",
            chart,
            *rgb,
        )
    )


BLUE, RED = (0x25, 0x63, 0xEB), (0xDC, 0x26, 0x26)
"""The palette's first two colours: the first and second model (or device) charted."""


def test_charts_follow_the_servers_figures_under_load(
    server: Server, browser: Browser, tmp_path: Path
) -> None:
    browser.driver.get(server.url + "/")
    browser.wait("window.lstmConsole.polls >= 1", "the first figures")
    with sending(server.url, ("tiny_bi",)) as sent:
        latest = browser.wait(
            "(() => { const f = window.lstmConsole.figures.tiny_bi;"
            " return f && f.rps > 0 && f.sps > f.rps && f.p99 !== null && f.batch >= 1"
            " && f.padding > 0 && f.padding <= 1 && f; })()",
            "requests/s, sequences/s, p99, batch size and padding of tiny_bi",
        )
        # Each chart drew the model's line: its latest figure is there, and the canvas holds
        # pixels of the model's colour (the first colour of the palette).
        chart = json.loads(
            browser.wait("document.getElementById('chart-rps').dataset.latest", "the rps chart")
        )
        assert chart["tiny_bi"][0] > 0
        assert coloured_pixels(browser, "rps", BLUE) > 10
        # The same batches, by the device they ran on: here, the CPU.
        device = browser.wait(
            "(() => { const d = window.lstmConsole.devices.cpu;"
            " return d && d.sps > 0 && d.bps > 0 && d.busy > 0 && d.waitP99 !== null && d; })()",
            "the CPU's sequences/s, batches/s, busy time and queue wait",
        )
        browser.driver.save_screenshot(str(tmp_path / "console-under-load.png"))
    assert sent[0] > 0 and latest["errors"] == 0 and device["failed"] == 0
    assert sorted(device["models"]) == ["tiny_bi", "tiny_uni"]
    assert browser.console_errors() == []


def test_with_two_workers_the_charts_show_the_sum_of_every_process(
    examples_repository: Path, browser: Browser
) -> None:
    # Two frontends and their engine, each writing its own figures (Prometheus's multiprocess
    # files); /metrics sums them, in that mode's exposition, which the console reads alike.
    served = Server(examples_repository, "--workers", "2")
    try:
        browser.driver.get(served.url + "/")
        browser.wait("window.lstmConsole.polls >= 1", "the first figures")
        with sending(served.url, ("tiny_bi",), clients=8):
            browser.wait(
                "(() => { const f = window.lstmConsole.figures.tiny_bi, d ="
                " window.lstmConsole.devices.cpu; return f && f.rps > 0 && f.sps > f.rps"
                " && f.p99 !== null && f.batch >= 1 && d && d.sps > 0; })()",
                "tiny_bi's figures from both frontends and the engine",
            )
        assert browser.console_errors() == []
    finally:
        log = served.stop()
    assert log.count("Application startup complete") == 2, log


def test_the_device_charts_draw_a_line_per_device(
    examples_repository: Path, browser: Browser
) -> None:
    # Two stand-in GPUs, a model on each: the device charts split what the model charts show.
    devices = {"tiny_bi": "cuda:0", "tiny_uni": "cuda:1"}

    def factory(path: Path, name: str, version: str, settings: Settings) -> LoadedRuntime:
        runtime = onnx_runtime_factory(path, name, version, settings)
        runtime.device = devices[name]  # the service's own runtime, on a stand-in GPU
        return runtime

    app = create_app(tiny_settings(examples_repository), factory)
    with serve_app(app) as url:
        browser.driver.get(url + "/")
        browser.wait("window.lstmConsole.polls >= 1", "the first figures")
        # Every client sends twice to tiny_bi for once to tiny_uni: two lines apart.
        with sending(url, ("tiny_bi", "tiny_bi", "tiny_uni")):
            shown = browser.wait(
                "(() => { const both = (p) => ['cuda:0', 'cuda:1'].every((k) => p.devices[k]"
                " && p.devices[k].sps > 0); const c = window.lstmConsole;"
                " return c.history.filter(both).length >= 6 && c.devices; })()",
                "six points of sequences/s on both devices (lines long enough to see)",
            )
            assert coloured_pixels(browser, "device-sps", BLUE) > 10  # cuda:0's line
            assert coloured_pixels(browser, "device-sps", RED) > 10  # cuda:1's line
        legend = browser.driver.execute_script(
            "return [...document.querySelectorAll('#device-legend .legend')]"
            ".map(l => l.textContent)"
        )
        latest = json.loads(
            browser.driver.execute_script(
                "return document.getElementById('chart-device-sps').dataset.latest"
            )
        )
        assert browser.console_errors() == []
    assert legend == ["cuda:0 (tiny_bi)", "cuda:1 (tiny_uni)"]
    assert shown["cuda:0"]["models"] == ["tiny_bi"] and shown["cuda:1"]["models"] == ["tiny_uni"]
    assert set(latest) == {"cuda:0", "cuda:1"} and latest["cuda:0"][0] > 1.3 * latest["cuda:1"][0]


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
