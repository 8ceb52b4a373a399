"""``python -m service`` as a real process on a free port, for the tests that need a server over
TCP (end to end, processes and workers, the load tester, ``export.from_tf``'s served model), and
what those tests read back from one (``metric``, ``poll``); and ``serve_app``, an app built in
the test's own process (with runtimes only a test makes) served over TCP for a browser.

``bench.servers.RunningServer`` does the same job for the benchmarks; the tests keep their own so
that no package's tests depend on ``bench``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import httpx
import uvicorn
from starlette.types import ASGIApp

from loadtest.prom import parse_metrics

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
T = TypeVar("T")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    # bench.servers.free_port is the same; see the module's docstring for why it is not used.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``python -m service`` over ``repo`` on a free port of 127.0.0.1 (``url``), on the CPU with
    one warm-up shape and text logs, plus ``flags``; ready (``/v2/health/ready`` answered 200)
    once the constructor returns. ``log_level`` adds ``--log-level``; by default the service's
    own. ``env`` is added to this process's environment for the server's. The process's stdout
    and stderr are kept for ``stop()``.

    The server runs in a process group of its own, so that ``kill()`` ends its workers too
    (``--workers``). ``stop()`` sends SIGTERM and returns what the server printed; it may also be
    called after the test has stopped the process itself. ``process.returncode`` is its exit
    status then.
    """

    def __init__(
        self,
        repo: Path,
        *flags: str,
        log_level: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "service",
            "--model-repository", str(repo),
            "--port", str(self.port),
            "--provider", "cpu",
            "--warmup-batch-sizes", "[1]",
            "--warmup-lengths", "[4]",
            "--log-format", "text",
            *(("--log-level", log_level) if log_level else ()),
            *flags,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env} if env else None,
            start_new_session=True,  # its own process group: kill() ends its workers too
        )
        self._wait_ready(READY_TIMEOUT_S)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.stop()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling a readiness condition, bounded by the deadline
        raise RuntimeError(f"server did not become ready in {timeout_s:g} s:\n{self.stop()}")

    def metrics(self) -> str:
        """What ``/metrics`` says now (Prometheus text)."""
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def stop(self, timeout_s: float = 30.0) -> str:
        """SIGTERM; what the server printed. A server still running ``timeout_s`` later is
        killed and the test fails (``RuntimeError``): shutting down is part of what is tested."""
        hung = False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                hung = True
                self.kill()
        output = self.process.stdout.read() if self.process.stdout else ""
        if hung:
            raise RuntimeError(
                f"server still running {timeout_s:g} s after SIGTERM (killed):\n{output}"
            )
        return output

    def kill(self) -> None:
        """SIGKILL to whatever is left of the server (its process group: the supervisor and its
        workers), for a test's clean-up; nothing if it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


def metric(text: str, name: str, default: float | None = None) -> float:
    """The value of ``name`` in the metrics ``text``: a sample name with the labels asked for,
    as Prometheus prints them (``lstm_queue_depth{model="wide"}``), summed over every series
    that has those labels (whatever others it has: ``device``, or a worker's). ``default`` if
    none is there yet (a labelled series appears with its first value), else ``AssertionError``.
    """
    sample, _, rest = name.partition("{")
    wanted = dict(LABEL.findall(rest))
    found = parse_metrics(text).select(sample, **wanted)
    if found:
        return sum(value for _, value in found)
    if default is not None:
        return default
    raise AssertionError(f"{name} not in metrics")


def poll(condition: Callable[[], T], timeout_s: float, what: str) -> T:
    """``condition()``'s first true value, polled until ``timeout_s`` (a bounded deadline);
    ``AssertionError`` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)  # polling an observable condition, bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def serve_app(app: ASGIApp) -> Iterator[str]:
    """``app`` served by uvicorn in a thread of this process on a free port of 127.0.0.1; its
    URL once it is up (lifespan done, socket bound). Stopped, its lifespan ended, after."""
    port = free_port()
    # No log_config, no log_level: uvicorn would configure this process's logging for good.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level=None)
    server = uvicorn.Server(config)  # off the main thread it installs no signal handlers
    thread = threading.Thread(target=server.run, name="serve_app", daemon=True)
    thread.start()
    try:
        poll(lambda: server.started or not thread.is_alive(), READY_TIMEOUT_S, "the app to start")
        if not server.started:
            raise RuntimeError("the app stopped before it started (see its log)")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
