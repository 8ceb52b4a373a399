"""The real stack on a real Docker engine: ``python -m pytest -m docker`` (minutes; left out of the
default run). It builds the images with the commands of docs/deployment.md, brings the CPU stack up
with Compose, waits for the image's own HEALTHCHECK, checks V1 and V2 (JSON and binary,
tritonclient) answers against in-process ONNX Runtime on the model files copied out of the
container, runs the load tester's container profile, the scale-out variant behind nginx (every
replica reached, one replica stopped under load without a lost request), ``docker compose stop``
with requests in flight, and the image itself (no torch, non-root, ``--help``). Skips where no
engine answers.

Figures (build time, image size, time to healthy, ...) are printed and written to
``artifacts/docker-e2e.json``; docs/deployment.md's Docker section records them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tests.support.deploy import COMPOSE, COMPOSE_CPU, COMPOSE_SCALE, ROOT, load_compose
from tests.support.servers import poll

pytestmark = pytest.mark.docker

PROJECT = "lstm-serving-e2e"  # not the default name: a developer's own stack is left alone
IMAGE = "lstm-serving:0.1.0"
MODEL = "bilstm"
TOL = 1e-4
HEALTHY_WITHIN_S = 240.0
FIGURES: dict[str, Any] = {}
DEPLOYMENT = (ROOT / "docs" / "deployment.md").read_text()

# The build commands of docs/deployment.md (section "Deployment (Docker)"), run as written.
# Where pip's find-links hold the CPU torch wheel (these development machines: no PyTorch index,
# PyPI only through this machine's CA bundle), the "offline from PyTorch's index" form; elsewhere
# the plain one, which takes torch from PyTorch's CPU index.
HERE_FLAGS = (
    "--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt "
    "--build-context wheels=/opt/wheels --build-arg TORCH_INDEX_URL="
)
BUILDS = {
    "runtime": "docker build -t lstm-serving:0.1.0 .",
    "loadtest": "docker build --target loadtest -t lstm-serving-loadtest:0.1.0 .",
    "lb": "docker build --target lb -t lstm-serving-lb:0.1.0 .",
    "prometheus": "docker build --target prometheus -t lstm-serving-prometheus:0.1.0 .",
}


def _offline_here() -> bool:
    return any(Path("/opt/wheels").glob("torch-2.13.0*.whl"))


def _build_command(plain: str) -> str:
    if not _offline_here():
        return plain
    return plain.replace("docker build ", f"docker build {HERE_FLAGS} ", 1)


def _run(
    command: list[str], timeout: float, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        pytest.fail(f"$ {shlex.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    return _run(["docker", *args], timeout, check).stdout.strip()


class Stack:
    """One Compose project from the given files (``-p lstm-serving-e2e``)."""

    def __init__(self, *files: Path) -> None:
        self.files = files
        self.env = {"SERVER_PUBLISHED_PORT": "0", "DOCKER_BUILDKIT": "1"}

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        command = ["docker", "compose", "-p", PROJECT]
        for path in self.files:
            command += ["-f", str(path)]
        return _run([*command, *args], timeout, check, self.env).stdout.strip()

    def containers(self, service: str) -> list[str]:
        ids = self.compose("ps", "-q", "--all", service).split()
        assert ids, f"no container for {service}"
        return ids

    def ip(self, container: str) -> str:
        return _docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container
        )

    def wait_healthy(self, container: str, timeout_s: float = HEALTHY_WITHIN_S) -> float:
        """Seconds from now until Docker's own health check says healthy (polled, bounded)."""
        start = time.monotonic()
        while True:
            state = json.loads(_docker("inspect", "-f", "{{json .State}}", container))
            health = state.get("Health", {}).get("Status")
            if health == "healthy":
                return time.monotonic() - start
            if not state["Running"] or time.monotonic() - start > timeout_s:
                logs = _docker("logs", "--tail", "60", container, check=False)
                pytest.fail(f"{container} never healthy ({state['Status']}, {health}):\n{logs}")
            time.sleep(1)  # polling Docker's health state, bounded by the deadline

    def down(self) -> None:
        # With every profile: `down` leaves the containers of profiles it was not given.
        profiles = ["--profile", "loadtest", "--profile", "prometheus"]
        self.compose(
            *profiles, "down", "--volumes", "--remove-orphans", "--timeout", "10", check=False
        )


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def engine() -> Iterator[None]:
    try:
        version = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        compose = subprocess.run(
            ["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"no Docker engine reachable: {error}")
    if version.returncode != 0:
        pytest.skip(f"no Docker engine reachable: {version.stderr.strip()[:300]}")
    if compose.returncode != 0:
        pytest.skip(f"no Docker Compose v2 plugin: {compose.stderr.strip()[:300]}")
    FIGURES["engine"] = version.stdout.strip()
    FIGURES["compose"] = compose.stdout.strip()
    yield
    out = ROOT / "artifacts" / "docker-e2e.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(FIGURES, indent=2) + "\n")
    print(f"\ndocker e2e figures ({out}):\n{json.dumps(FIGURES, indent=2)}")


@pytest.fixture(scope="module")
def images(engine: None) -> None:
    for name, plain in BUILDS.items():
        assert plain in DEPLOYMENT, f"docs/deployment.md no longer says `{plain}`"
        command = _build_command(plain)
        if command != plain:
            assert command in DEPLOYMENT, f"docs/deployment.md no longer says `{command}`"
        start = time.monotonic()
        _run(shlex.split(command), timeout=3600, env={"DOCKER_BUILDKIT": "1"})
        FIGURES[f"build_{name}_s"] = round(time.monotonic() - start, 1)
    FIGURES["image_size_bytes"] = int(_docker("image", "inspect", "-f", "{{.Size}}", IMAGE))


@pytest.fixture(scope="module")
def cpu_stack(images: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(COMPOSE, COMPOSE_CPU)
    stack.down()
    try:
        start = time.monotonic()
        stack.compose("up", "-d", "server")
        (server,) = stack.containers("server")
        stack.wait_healthy(server)
        FIGURES["time_to_healthy_s"] = round(time.monotonic() - start, 1)
        yield stack
    finally:
        stack.down()


# -- requests and references --------------------------------------------------------------------
def _post(url: str, body: dict[str, Any], timeout: float = 60) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read(500).decode(errors="replace")}


def _metric(text: str, name: str) -> float:
    """The sum of every sample of ``name`` (all label sets) in Prometheus' text format."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(v) for v in pattern.findall(text))


def _metrics(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        return str(response.read().decode())


class Reference:
    """In-process ONNX Runtime (CPU) on the model file the container serves: one sequence at a
    time, no batching, no padding."""

    def __init__(self, model_file: Path) -> None:
        self.session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
        self.features = int(self.session.get_inputs()[0].shape[-1])

    def run(self, sequence: np.ndarray) -> dict[str, np.ndarray]:
        """``sequence``: ``(L, F)``; returns each output for it, batch axis dropped."""
        names = [o.name for o in self.session.get_outputs()]
        feeds = {
            "inputs": sequence[np.newaxis].astype(np.float32),
            "lengths": np.array([len(sequence)], np.int32),
        }
        out = dict(zip(names, self.session.run(names, feeds), strict=True))
        return {k: (v[:, 0] if k.startswith("final_") else v[0]) for k, v in out.items()}


@pytest.fixture(scope="module")
def reference(cpu_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    target = tmp_path_factory.mktemp("models")
    (server,) = cpu_stack.containers("server")
    _docker("cp", f"{server}:/models/.", str(target))  # the volume the server reads
    return Reference(target / MODEL / "1" / "model.onnx")


def _load(
    send: Callable[[], tuple[int, dict[str, Any]]], clients: int
) -> tuple[threading.Event, list[Future[list[int]]]]:
    """``clients`` threads calling ``send`` until the event is set; each returns its statuses."""
    stop = threading.Event()

    def loop() -> list[int]:
        statuses: list[int] = []
        while not stop.is_set():
            statuses.append(send()[0])
        return statuses

    pool = ThreadPoolExecutor(clients)
    futures = [pool.submit(loop) for _ in range(clients)]
    pool.shutdown(wait=False)
    return stop, futures


# -- the tests ----------------------------------------------------------------------------------
def test_v1_and_v2_answers_match_onnx_runtime(cpu_stack: Stack, reference: Reference) -> None:
    import tritonclient.http as triton

    (server,) = cpu_stack.containers("server")
    host = f"{cpu_stack.ip(server)}:8000"
    rng = np.random.default_rng(13)
    lengths = np.array([17, 3, 40], dtype=np.int32)
    batch = rng.standard_normal((3, 40, reference.features)).astype(np.float32)
    sequences = [batch[b, :n] for b, n in enumerate(lengths)]
    expected = [reference.run(s) for s in sequences]

    status, body = _post(
        f"http://{host}/v1/models/{MODEL}/predict",
        {"sequences": [s.tolist() for s in sequences], "return": ["probabilities"]},
    )
    assert status == 200, body
    for result, want in zip(body["results"], expected, strict=True):
        np.testing.assert_allclose(result["probabilities"], want["probs"], atol=TOL)

    client = triton.InferenceServerClient(host)
    assert client.is_server_ready() and client.is_model_ready(MODEL)
    for binary in (False, True):
        inputs = [
            triton.InferInput("inputs", list(batch.shape), "FP32"),
            triton.InferInput("lengths", [len(lengths)], "INT32"),
        ]
        inputs[0].set_data_from_numpy(batch, binary_data=binary)
        inputs[1].set_data_from_numpy(lengths, binary_data=binary)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("probs", "outputs")]
        result = client.infer(MODEL, inputs, outputs=outputs)
        for b, want in enumerate(expected):
            np.testing.assert_allclose(result.as_numpy("probs")[b], want["probs"], atol=TOL)
            np.testing.assert_allclose(
                result.as_numpy("outputs")[b, : lengths[b]], want["outputs"], atol=TOL
            )
    client.close()


def test_the_load_testers_container_profile_runs(cpu_stack: Stack) -> None:
    """``docker compose --profile loadtest run --rm loadtest``, 5 s: every request answered 200
    and its result JSON in ./loadtest-results (the compose file's bind mount)."""
    results = ROOT / "loadtest-results"
    before = set(results.glob("*.json"))
    start = time.monotonic()
    cpu_stack.compose(
        "--profile", "loadtest", "run", "--rm", "loadtest",
        "--url=http://server:8000", f"--model={MODEL}", "--concurrency=8", "--duration=5",
        "--protocol=v2-binary",
        timeout=300,
    )  # fmt: skip
    FIGURES["loadtest_profile_s"] = round(time.monotonic() - start, 1)
    (written,) = set(results.glob("*.json")) - before
    record = json.loads(written.read_text())
    (run,) = record["runs"]
    FIGURES["loadtest"] = {
        "requests": run["requests"],
        "requests_per_s": round(run["requests_per_s"], 1),
        "p50_ms": round(run["latency_ms"]["p50"], 1),
        "p99_ms": round(run["latency_ms"]["p99"], 1),
    }
    assert run["requests"] > 0 and run["failed"] == 0 and not run["transport_errors"], run
    assert record["verification"]["passed"], record["verification"]


def test_the_prometheus_profile_scrapes_the_server(cpu_stack: Stack) -> None:
    """``--profile prometheus``: Debian's Prometheus finds ``server`` through Docker's DNS and
    its scrape of /metrics is up."""
    cpu_stack.env["PROMETHEUS_PUBLISHED_PORT"] = "0"
    cpu_stack.compose("--profile", "prometheus", "up", "-d", "prometheus")
    (prometheus,) = cpu_stack.containers("prometheus")
    url = f"http://{cpu_stack.ip(prometheus)}:9090/api/v1/targets"
    deadline = time.monotonic() + 60
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                targets = json.loads(response.read())["data"]["activeTargets"]
        except OSError:
            targets = []  # not listening yet
        if targets and all(t["health"] == "up" for t in targets):
            break
        time.sleep(1)  # polling Prometheus' own scrape state, bounded by the deadline
    FIGURES["prometheus_targets"] = [(t["scrapeUrl"], t["health"]) for t in targets]
    assert len(targets) == 1 and targets[0]["health"] == "up", targets
    assert targets[0]["scrapeUrl"].endswith(":8000/metrics")


def test_the_runtime_image_itself() -> None:
    """No torch, a non-root user, and ``docker run IMAGE --help`` lists the settings."""
    probe = _docker(
        "run", "--rm", "--entrypoint", "python", IMAGE, "-c",
        "import importlib.util, os; "
        "print(importlib.util.find_spec('torch') is None, os.getuid(), os.getgid())",
    )  # fmt: skip
    no_torch, uid, gid = probe.split()
    assert no_torch == "True" and int(uid) != 0 and int(gid) != 0
    assert _docker("image", "inspect", "-f", "{{.Config.User}}", IMAGE) == "10001:10001"
    usage = _docker("run", "--rm", IMAGE, "--help")
    from service.settings import Settings

    for name in ("max_batch_size", "drain_timeout_s", "provider", "model_repository"):
        assert name in Settings.model_fields
        assert f"--{name.replace('_', '-')}" in usage, usage[:2000]


def test_compose_stop_answers_every_request_in_flight(
    cpu_stack: Stack, reference: Reference
) -> None:
    """``docker compose stop`` (SIGTERM) while a deep queue waits: every request that the server
    had accepted is answered (200, the right numbers), the process exits 0, within the grace."""
    (server,) = cpu_stack.containers("server")
    base = f"http://{cpu_stack.ip(server)}:8000"
    rng = np.random.default_rng(14)
    shape = (300, reference.features)
    requests = [rng.standard_normal(shape).astype(np.float32) for _ in range(32)]
    per_request = 4
    before = _metric(_metrics(base), "lstm_sequences_total")

    def one(sequence: np.ndarray) -> tuple[int, dict[str, Any]]:
        body = {"sequences": [sequence.tolist()] * per_request, "return": ["probabilities"]}
        return _post(f"{base}/v1/models/{MODEL}/predict", body, timeout=90)

    pool = ThreadPoolExecutor(len(requests))
    futures = [pool.submit(one, s) for s in requests]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the server has accepted every request (bounded)
        accepted = _metric(_metrics(base), "lstm_sequences_total") - before
        if accepted >= per_request * len(requests):
            break
        time.sleep(0.05)  # polling the server's own count, bounded by the deadline
    in_flight = sum(not f.done() for f in futures)
    start = time.monotonic()
    cpu_stack.compose("stop", "server", timeout=120)
    stop_s = time.monotonic() - start
    responses = [f.result(timeout=120) for f in futures]
    pool.shutdown()
    state = json.loads(_docker("inspect", "-f", "{{json .State}}", server))
    logs = _docker("logs", "--tail", "30", server, check=False)
    grace = load_compose(COMPOSE)["services"]["server"]["stop_grace_period"]
    FIGURES["stop"] = {
        "in_flight_at_sigterm": in_flight,
        "requests": len(requests),
        "stop_s": round(stop_s, 1),
        "exit_code": state["ExitCode"],
        "stop_grace_period": grace,
    }
    assert in_flight > 0, "every request was answered before the stop: the test proved nothing"
    assert [status for status, _ in responses] == [200] * len(requests), logs
    for sequence, (_, body) in zip(requests, responses, strict=True):
        want = reference.run(sequence)["probs"]
        for result in body["results"]:
            np.testing.assert_allclose(result["probabilities"], want, atol=TOL)
    assert state["ExitCode"] == 0 and not state["OOMKilled"], logs
    assert stop_s < float(grace.removesuffix("s"))


def test_scale_out_reaches_every_replica_and_loses_nothing_when_one_stops(
    images: None, reference: Reference
) -> None:
    stack = Stack(COMPOSE, COMPOSE_SCALE, COMPOSE_CPU)
    stack.env["SERVER_REPLICAS"] = "2"
    stack.down()
    try:
        start = time.monotonic()
        stack.compose("up", "-d", "lb")
        replicas = stack.containers("server")
        assert len(replicas) == 2
        for replica in replicas:
            stack.wait_healthy(replica)
        (lb,) = stack.containers("lb")
        stack.wait_healthy(lb, timeout_s=60)
        FIGURES["scale_time_to_healthy_s"] = round(time.monotonic() - start, 1)
        front = f"http://{stack.ip(lb)}:8000"
        bases = [f"http://{stack.ip(r)}:8000" for r in replicas]
        before = [_metric(_metrics(b), "lstm_requests_total") for b in bases]

        rng = np.random.default_rng(15)
        sequence = rng.standard_normal((50, reference.features)).astype(np.float32)
        body = {"sequences": [sequence.tolist()], "return": ["probabilities"]}
        want = reference.run(sequence)["probs"]
        for _ in range(20):
            status, answer = _post(f"{front}/v1/models/{MODEL}/predict", body)
            assert status == 200, answer
            np.testing.assert_allclose(answer["results"][0]["probabilities"], want, atol=TOL)
        reached = [
            _metric(_metrics(b), "lstm_requests_total") - n
            for b, n in zip(bases, before, strict=True)
        ]
        FIGURES["scale_requests_per_replica"] = reached
        assert all(r > 0 for r in reached), reached

        # One replica stopped (SIGTERM, drained) while 8 clients keep sending through nginx.
        stop, futures = _load(lambda: _post(f"{front}/v1/models/{MODEL}/predict", body), 8)
        stopped, remaining = bases

        def answered(base: str) -> float:
            return _metric(_metrics(base), "lstm_requests_total")

        # Load on the replica to stop, then on the remaining one after the stop: both observed.
        start_count = answered(stopped)
        poll(lambda: answered(stopped) >= start_count + 20, 60, "load on the replica to stop")
        _docker("stop", "--time", "45", replicas[0], timeout=120)
        after_stop = answered(remaining)
        poll(lambda: answered(remaining) >= after_stop + 50, 60, "load after the stop")
        stop.set()
        statuses = [s for f in futures for s in f.result(timeout=120)]
        exit_code = int(_docker("inspect", "-f", "{{.State.ExitCode}}", replicas[0]))
        FIGURES["scale_stop_one_replica"] = {
            "requests": len(statuses),
            "non_200": sorted({s for s in statuses if s != 200}),
            "exit_code": exit_code,
        }
        assert statuses and all(s == 200 for s in statuses), FIGURES["scale_stop_one_replica"]
        assert exit_code == 0
    finally:
        stack.down()
