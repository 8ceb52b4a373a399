"""Headless Chromium driven by Selenium, for the console's tests (``tests/service/frontend/
console/test_browser.py``): Debian's ``chromium`` and ``chromium-driver`` packages (``apt-get
install chromium chromium-driver``), found on PATH or at ``$CHROMIUM`` / ``$CHROMEDRIVER``; never
a downloaded browser (Selenium Manager is not asked: the driver's path is given).

``missing()`` says why the browser tests cannot run here (or None); ``Browser`` is one browser
with its console log and network log kept, so a test can say what the page printed and which
URLs it asked for.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")


def _executable(variable: str, names: tuple[str, ...]) -> str | None:
    given = os.environ.get(variable)
    if given:
        return given if os.access(given, os.X_OK) else None
    return next((p for p in map(shutil.which, names) if p), None)


def chromium() -> str | None:
    return _executable("CHROMIUM", BROWSER_NAMES)


def chromedriver() -> str | None:
    return _executable("CHROMEDRIVER", ("chromedriver",))


def missing() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if chromium() is None:
        return "no Chromium (apt-get install chromium chromium-driver, or set $CHROMIUM)"
    if chromedriver() is None:
        return "no chromedriver (apt-get install chromium-driver, or set $CHROMEDRIVER)"
    return None


class Browser:
    """One headless Chromium window of ``width`` x ``height``; ``quit()`` ends it."""

    def __init__(self, width: int = 1400, height: int = 1600) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(chromium())
        for argument in (
            "--headless=new",
            "--no-sandbox",  # as root in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",  # no update checks or other calls of its own
            "--disable-component-update",
            f"--window-size={width},{height}",
        ):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(str(chromedriver())), options=options)
        self._requested: list[str] = []

    def quit(self) -> None:
        self.driver.quit()

    def console_errors(self) -> list[dict[str, Any]]:
        """The page's console entries of level SEVERE (errors, failed loads) since the last
        call."""
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def requested_urls(self) -> list[str]:
        """Every URL the browser asked for so far (its network log), in order."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self._requested.append(message["params"]["request"]["url"])
        return list(self._requested)

    def request_headers(self) -> list[tuple[str, dict[str, str]]]:
        """``(url, headers)`` of each request since the last call of either."""
        found = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                request = message["params"]["request"]
                self._requested.append(request["url"])
                found.append((request["url"], request.get("headers", {})))
        return found

    def wait(self, script: str, what: str, timeout_s: float = 20.0) -> Any:
        """The first truthy value of the JavaScript expression ``script`` in the page, polled by
        WebDriverWait until ``timeout_s``; the test fails naming ``what``."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout_s, poll_frequency=0.1).until(
                lambda d: d.execute_script(f"return ({script});")
            )
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what}") from None
