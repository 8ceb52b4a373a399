"""``python -m service`` as a real process on a free port, for the tests that need a server over
TCP (end to end, the load tester, ``export.from_tf``'s served model).

``bench.servers.RunningServer`` does the same job for the benchmarks; the tests keep their own so
that no package's tests depend on ``bench``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0


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
    own. The process's stdout and stderr are kept for ``stop()``.

    ``stop()`` sends SIGTERM and returns what the server printed; it may also be called after the
    test has stopped the process itself.
    """

    def __init__(self, repo: Path, *flags: str, log_level: str | None = None) -> None:
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
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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

    def stop(self) -> str:
        """SIGTERM; what the server printed. A server still running 30 s later is killed and
        the test fails (``RuntimeError``): shutting down is part of what is tested."""
        hung = False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                hung = True
                self.process.kill()
                self.process.wait(10)
        output = self.process.stdout.read() if self.process.stdout else ""
        if hung:
            raise RuntimeError(f"server still running 30 s after SIGTERM (killed):\n{output}")
        return output
