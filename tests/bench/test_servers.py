"""``bench.servers``: the command of each server, the model file they serve, and a real server
process started, measured and stopped; servers run from another source (a fake ``service``
package), their CPU counted with their child processes', given up on when not ready in time."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from bench.servers import (
    SERVERS,
    RunningServer,
    is_ready,
    running_server,
    served_model_file,
    server_command,
)

FAKE_SERVICE = """
import argparse, http.server, os, signal, sys

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
parser.add_argument("--log-level")
args, _ = parser.parse_known_args()
print("fake service in", os.getcwd(), "at log level", args.log_level, flush=True)


class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v2/health/ready" else 404)
        self.end_headers()


def stop(*_):
    print("fake service stopping", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
http.server.HTTPServer(("127.0.0.1", args.port), Ready).serve_forever()
"""
NEVER_READY = """
import os, pathlib, time

pathlib.Path("pid").write_text(str(os.getpid()))
time.sleep(600)
"""

WITH_A_BUSY_CHILD = (
    FAKE_SERVICE.split("signal.signal")[0]
    + """
import subprocess

BUSY = "import time\\nwhile time.process_time() < 0.5: pass\\ntime.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", BUSY])


def stop(*_):
    child.kill()
    child.wait()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
http.server.HTTPServer(("127.0.0.1", args.port), Ready).serve_forever()
"""
)


def fake_source(root: Path, main: str) -> Path:
    """A checkout whose ``python -m service`` runs ``main``."""
    (root / "service").mkdir(parents=True)
    (root / "service" / "__init__.py").write_text("")
    (root / "service" / "__main__.py").write_text(main)
    return root


def test_each_server_has_its_command(tmp_path: Path) -> None:
    commands = {kind: server_command(kind, tmp_path, 8123, ["--x", "1"]) for kind in SERVERS}
    common = ["--model-repository", str(tmp_path), "--host", "127.0.0.1", "--port", "8123"]
    assert commands["service"][:3] == [sys.executable, "-m", "service"]
    assert commands["http-ceiling"][:3] == [sys.executable, "-m", "bench.http_ceiling"]
    assert commands["naive"] == [sys.executable, "-m", "bench.naive_server", *common,
                                 "--provider", "cpu"]  # fmt: skip
    for kind in ("service", "http-ceiling"):
        assert commands[kind][3:9] == common and commands[kind][-2:] == ["--x", "1"]
    with pytest.raises(ValueError, match="unknown server"):
        server_command("other", tmp_path, 1)  # type: ignore[arg-type]


def test_served_model_file_is_the_highest_version(tmp_path: Path) -> None:
    for version in ("1", "2", "10", "notes"):
        (tmp_path / "m" / version).mkdir(parents=True)
        (tmp_path / "m" / version / "model.onnx").write_bytes(b"")
    (tmp_path / "other" / "30").mkdir(parents=True)
    (tmp_path / "other" / "30" / "model.onnx").write_bytes(b"")
    assert served_model_file(tmp_path, "m") == (tmp_path / "m" / "10" / "model.onnx").resolve()
    assert served_model_file(tmp_path, "absent") is None
    assert served_model_file(tmp_path / "nowhere", "m") is None


@pytest.mark.slow
def test_a_running_server_is_ready_measured_and_stopped(model_repository: Path) -> None:
    server = RunningServer("naive", model_repository, ready_timeout_s=60)
    log_file = Path(server.log_file.name)
    try:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.startup_s > 0
        cpu, rss = server.cpu_s(), server.rss_mib()
        assert cpu is not None and cpu > 0 and rss is not None and rss > 10
    finally:
        code = server.stop()
    # uvicorn re-raises the SIGTERM it handled once it has shut down
    assert code in (0, -signal.SIGTERM) and not log_file.exists()
    assert server.cpu_s() is None and server.stop() == code  # gone; stopping again is harmless


@pytest.mark.slow
def test_running_server_runs_from_its_source_and_keeps_the_end_of_its_log(
    tmp_path: Path,
) -> None:
    source = fake_source(tmp_path / "checkout", FAKE_SERVICE)
    flags = ["--log-level", "debug"]  # after the server's own: the last one counts
    with running_server("service", tmp_path, flags, source=source) as server:
        assert is_ready(server.url)
        log_file = Path(server.log_file.name)
        assert f"fake service in {source} at log level debug" in server.log_tail()
    assert server.process.returncode == 0 and not log_file.exists()
    assert server.log_tail().endswith("fake service stopping\n")
    assert server.log_tail(9) == "stopping\n"


@pytest.mark.slow
def test_the_cpu_of_a_server_counts_the_processes_under_it(tmp_path: Path) -> None:
    source = fake_source(tmp_path / "checkout", WITH_A_BUSY_CHILD)
    with running_server("service", tmp_path, source=source) as server:
        deadline = time.monotonic() + 30
        while (server.cpu_s() or 0.0) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the child's CPU, bounded by the deadline
        assert (server.cpu_s() or 0.0) >= 0.5  # the server itself only waits for requests


@pytest.mark.slow
def test_a_server_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    source = fake_source(tmp_path / "checkout", NEVER_READY)
    with (
        pytest.raises(RuntimeError, match="service server not ready in 2 s"),
        running_server("service", tmp_path, source=source, ready_timeout_s=2),
    ):
        pytest.fail("running_server yielded a server that never became ready")
    pid = int((source / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped
