"""The servers a benchmark starts: each its own process on a free port of 127.0.0.1.

* ``service``: ``python -m service``, the product;
* ``naive``: ``python -m bench.naive_server``, one ORT call per request (the baseline);
* ``http-ceiling``: ``python -m bench.http_ceiling``, the service with inference skipped.

``RunningServer`` starts one (``free_port``), waits until it ``is_ready``, reads its CPU time
(its own and its child processes') and memory from ``/proc`` (Linux), and stops it with
SIGTERM. ``served_model_file`` is the ONNX
file the servers serve for a model: its highest version in the repository.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from service.engine.runtime.repository import discover

ServerKind = Literal["service", "naive", "http-ceiling"]
SERVERS: tuple[ServerKind, ...] = ("service", "naive", "http-ceiling")
SERVER_LABELS: dict[ServerKind, str] = {
    "service": "service (length-aware batching)",
    "naive": "naive baseline (one ORT call per request)",
    "http-ceiling": "HTTP ceiling (service, inference skipped)",
}
ROOT = Path(__file__).resolve().parents[1]
"""The checkout: the servers run from it."""
KEPT_LOG_CHARS = 20_000
"""How much of a server's output ``RunningServer.stop()`` keeps for ``log_tail()``."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago. tests/support/servers.py
    keeps its own copy, so that no package's tests depend on bench."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_ready(url: str) -> bool:
    """Whether the server at ``url`` answers ``/v2/health/ready`` with 200."""
    try:
        with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def served_model_file(repository: Path, model: str) -> Path | None:
    """``<repository>/<model>/<highest version>/model.onnx``, as the service finds it; None
    when the repository has no version of ``model``."""
    if not repository.is_dir():
        return None
    versions = [location.path for location in discover(repository) if location.name == model]
    return versions[-1] if versions else None  # discover sorts versions in numeric order


def server_command(
    kind: ServerKind,
    repository: Path,
    port: int,
    extra: Sequence[str] = (),
    provider: str = "cpu",
) -> list[str]:
    """The command line of a ``kind`` server; ``extra`` flags go to the service and the HTTP
    ceiling (the naive baseline has no settings to tune)."""
    common = ["--model-repository", str(repository), "--host", "127.0.0.1", "--port", str(port)]
    service_flags = ["--provider", provider, "--log-format", "text", "--log-level", "warning"]
    service_flags += extra
    if kind == "service":
        return [sys.executable, "-m", "service", *common, *service_flags]
    if kind == "http-ceiling":
        return [sys.executable, "-m", "bench.http_ceiling", *common, *service_flags]
    if kind == "naive":
        return [sys.executable, "-m", "bench.naive_server", *common, "--provider", provider]
    raise ValueError(f"unknown server {kind!r}")


def _descendants_ticks(pid: int) -> int:
    """CPU ticks (user + system, with their reaped children's) of the live processes under
    ``pid``."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        ticks = sum(int(f) for f in fields[11:15])
        children.setdefault(int(fields[1]), []).append((int(entry.name), ticks))
    total, stack = 0, [pid]
    while stack:
        for child, ticks in children.get(stack.pop(), ()):
            total += ticks
            stack.append(child)
    return total


class RunningServer:
    """A ``kind`` server process on a free port, ready when the constructor returns.

    It runs from ``source`` (its working directory, first on its ``PYTHONPATH``): this checkout
    unless another one is to be measured. Its output goes to a temporary log file, removed by
    ``stop()``; ``log_tail()`` reads it, and after ``stop()`` the end that it kept."""

    def __init__(
        self,
        kind: ServerKind,
        repository: Path,
        extra_flags: Sequence[str] = (),
        ready_timeout_s: float = 300.0,
        provider: str = "cpu",
        source: Path = ROOT,
    ) -> None:
        self.kind: ServerKind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._kept_log = ""
        self.log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            "w+", prefix=f"bench-{kind}-", suffix=".log", delete=False
        )
        path = os.pathsep.join(p for p in (str(source), os.environ.get("PYTHONPATH")) if p)
        started = time.monotonic()
        self.process = subprocess.Popen(
            server_command(kind, repository, self.port, extra_flags, provider),
            cwd=source,
            env={**os.environ, "PYTHONPATH": path},
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        while not is_ready(self.url):
            if self.process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"{kind} server exited early:\n{tail}")
            if time.monotonic() - started > ready_timeout_s:
                self.stop()
                raise RuntimeError(f"{kind} server not ready in {ready_timeout_s:g} s")
            time.sleep(0.1)  # polling readiness, bounded by the timeout
        self.startup_s = time.monotonic() - started

    def _proc(self, name: str) -> str | None:
        try:
            return Path(f"/proc/{self.process.pid}/{name}").read_text()
        except OSError:
            return None

    def cpu_s(self) -> float | None:
        """User + system CPU seconds so far of the server process and of every process under
        it (``--workers N``: the supervisor's frontends and engines), those it has reaped
        included (Linux only)."""
        stat = self._proc("stat")
        if stat is None:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        return (ticks + _descendants_ticks(self.process.pid)) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float | None:
        """Resident memory of the server process, MiB (Linux only)."""
        for line in (self._proc("status") or "").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def log_tail(self, chars: int = 2000) -> str:
        """The last ``chars`` characters of the server's output (at most ``KEPT_LOG_CHARS``
        once it is stopped)."""
        if self.log_file.closed:
            return self._kept_log[-chars:]
        self.log_file.flush()
        return Path(self.log_file.name).read_text(errors="replace")[-chars:]

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 60 s; the exit code. What it logged while shutting
        down stays readable with ``log_tail()``."""
        # tests/support/servers.py's Server stops its server the same way: the tests start
        # servers of their own rather than depend on bench.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if not self.log_file.closed:
            self._kept_log = self.log_tail(KEPT_LOG_CHARS)
            self.log_file.close()
            Path(self.log_file.name).unlink(missing_ok=True)
        return self.process.returncode


@contextmanager
def running_server(
    kind: ServerKind,
    repository: Path,
    extra_flags: Sequence[str] = (),
    provider: str = "cpu",
    *,
    ready_timeout_s: float = 300.0,
    source: Path = ROOT,
) -> Iterator[RunningServer]:
    """A ``RunningServer`` (same arguments) for the ``with`` block, stopped when it ends."""
    server = RunningServer(kind, repository, extra_flags, ready_timeout_s, provider, source)
    try:
        yield server
    finally:
        server.stop()
