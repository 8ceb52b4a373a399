"""The compose files, nginx and Prometheus configs, without Docker: the Compose specification
(check-jsonschema's vendored schema, offline), the merged configurations (``docker compose
config`` where a Compose v2 CLI is installed), and what each service must have."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.settings import Settings
from tests.support.deploy import (
    COMPOSE,
    COMPOSE_CPU,
    COMPOSE_FILES,
    COMPOSE_SCALE,
    NGINX_CONF,
    PROMETHEUS_CONFIG,
    ROOT,
    Reset,
    compose_command,
    dockerfile_stages,
    load_compose,
    run_compose,
    tool,
    without_compose_tags,
)

BASE = load_compose(COMPOSE)
CPU = load_compose(COMPOSE_CPU)
SCALE = load_compose(COMPOSE_SCALE)
SERVER = BASE["services"]["server"]
DEFAULTS = Settings()
VARIANTS = {
    "gpu": [COMPOSE],
    "cpu": [COMPOSE, COMPOSE_CPU],
    "scale": [COMPOSE, COMPOSE_SCALE],
    "scale-cpu": [COMPOSE, COMPOSE_SCALE, COMPOSE_CPU],
}


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(number) * units[unit]
    assert total > 0, duration
    return total


def _check_jsonschema() -> str:
    found = tool("check-jsonschema")
    if found is None:
        pytest.skip("check-jsonschema is not installed (the `test` extra)")
    return found


# -- the Compose specification ------------------------------------------------------------------
def test_compose_files_follow_the_compose_specification(tmp_path: Path) -> None:
    """check-jsonschema's vendored Compose schema (offline). Its YAML reader does not know
    Compose's ``!reset`` tag, so the override files are checked with the tag dropped (the value
    kept); the merge itself is checked by ``docker compose config`` below."""
    checker = _check_jsonschema()
    files = []
    for path in COMPOSE_FILES:
        copy = tmp_path / path.name
        copy.write_text(without_compose_tags(path.read_text()))
        files.append(str(copy))
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_a_wrong_file(tmp_path: Path) -> None:
    checker = _check_jsonschema()
    wrong = tmp_path / "compose.yml"
    wrong.write_text(
        "services:\n  server:\n    image: x:1\n    restart: sometimes\n    portz: []\n"
    )
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(wrong)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0


# A stand-in for the docker CLI: it finds its compose plugin only under $HOME, as a plugin kept in
# ~/.docker/cli-plugins is found. `info` answers as `docker info --format <plugins as JSON>` does.
_DOCKER_WITH_PLUGINS_UNDER_HOME = r"""plugin="$HOME/.docker/cli-plugins/docker-compose"
case "$1" in
info)
    if [ -x "$plugin" ]; then printf '[{"Name": "compose", "Path": "%s"}]\n' "$plugin"
    else echo '[]'; fi
    exit 0 ;;
compose)
    shift
    [ -x "$plugin" ] && exec "$plugin" "$@"
    echo "docker: unknown command: docker compose" >&2
    exit 1 ;;
esac
exit 1"""


def _executable(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_compose_found_under_the_users_home_runs_with_the_tests_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Compose plugin kept in ``~/.docker/cli-plugins`` (where Docker's docs put it) is not
    there for ``docker compose`` under the tests' own ``HOME``: what ``compose_command`` finds
    must run in the environment the tests give it."""
    home = tmp_path / "user"
    plugins = home / ".docker" / "cli-plugins"
    plugins.mkdir(parents=True)
    _executable(
        plugins / "docker-compose",
        'if [ "$*" = "version --short" ]; then echo 2.99.0; else echo "services: {}"; fi',
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "docker", _DOCKER_WITH_PLUGINS_UNDER_HOME)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    command = compose_command()
    assert command is not None
    tests_home = tmp_path / "tests"
    tests_home.mkdir()
    result = run_compose(command, tests_home, "config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "services: {}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_docker_compose_config_merges_each_variant(variant: str, tmp_path: Path) -> None:
    """``docker compose config`` parses, interpolates, merges (``!reset`` included) and validates
    without a Docker engine; its output must follow the schema too."""
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 CLI here (docker compose plugin or docker-compose v2)")
    files = [arg for path in VARIANTS[variant] for arg in ("-f", str(path))]
    result = run_compose(
        command, tmp_path, *files, "--profile", "loadtest", "--profile", "prometheus", "config"
    )
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)
    server = merged["services"]["server"]
    reservations = server.get("deploy", {}).get("resources", {}).get("reservations", {})
    assert bool(reservations.get("devices")) == ("cpu" not in variant)
    provider = server["environment"]["LSTM_SERVING_PROVIDER"]
    assert provider == ("cpu" if "cpu" in variant else "cuda")
    published = {p["published"] for s in merged["services"].values() for p in s.get("ports", [])}
    assert "8000" in published
    if "scale" in variant:
        assert not server.get("ports") and server["deploy"]["replicas"] == 2
        assert merged["services"]["lb"]["ports"][0]["target"] == 8000
        assert "--url=http://lb:8000" in merged["services"]["loadtest"]["command"]
    if shutil.which("check-jsonschema") or tool("check-jsonschema"):
        out = tmp_path / "merged.yml"
        out.write_text(result.stdout)
        checked = subprocess.run(
            [_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert checked.returncode == 0, checked.stdout


def test_own_model_repository_is_a_read_only_bind_mount(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 CLI here (docker compose plugin or docker-compose v2)")
    result = run_compose(
        command, tmp_path, "-f", str(COMPOSE), "config", "server", MODEL_REPOSITORY="./my_models"
    )
    assert result.returncode == 0, result.stderr
    (volume,) = yaml.safe_load(result.stdout)["services"]["server"]["volumes"]
    assert volume["type"] == "bind" and volume["read_only"] is True
    assert volume["source"] == str(ROOT / "my_models") and volume["target"] == "/models"


# -- the server ---------------------------------------------------------------------------------
def test_server_reserves_one_nvidia_gpu() -> None:
    (device,) = SERVER["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert SERVER["environment"]["LSTM_SERVING_PROVIDER"] == "${LSTM_SERVING_PROVIDER:-cuda}"


def test_server_serves_the_model_repository_volume_on_port_8000() -> None:
    assert SERVER["build"]["target"] == "runtime"
    assert SERVER["ports"] == ["${SERVER_PUBLISHED_PORT:-8000}:8000"]
    env = SERVER["environment"]
    assert env["LSTM_SERVING_HOST"] == "0.0.0.0" and env["LSTM_SERVING_PORT"] == "8000"
    assert env["LSTM_SERVING_MODEL_REPOSITORY"] == "/models"
    assert SERVER["volumes"] == ["${MODEL_REPOSITORY:-model-repository}:/models:ro"]
    assert "model-repository" in BASE["volumes"]


def test_fresh_clone_volume_is_seeded_from_the_image_before_the_server_starts() -> None:
    models = BASE["services"]["models"]
    assert models["image"] == SERVER["image"] and models["build"] == SERVER["build"]
    assert SERVER["depends_on"]["models"]["condition"] == "service_completed_successfully"
    assert models["volumes"] == ["model-repository:/seed"]  # not /models: that is the image's
    assert "cp -R /models/. /seed/" in models["command"][0]
    assert models["restart"] == "no" and "deploy" not in models


def test_server_health_stop_and_restart() -> None:
    health = SERVER["healthcheck"]
    assert health["test"] == ["CMD", "python", "/opt/lstm-serving/healthcheck.py"]
    assert _seconds(health["start_period"]) >= 60  # CUDA start-up and warm-up
    assert SERVER["stop_signal"] == "SIGTERM"
    drain = float(SERVER["environment"]["LSTM_SERVING_DRAIN_TIMEOUT_S"])
    # uvicorn's wait (the drain timeout), then the batchers' close
    # (service.frontend.app.BATCHER_CLOSE_S).
    from service.frontend.app import BATCHER_CLOSE_S

    assert _seconds(SERVER["stop_grace_period"]) > drain + BATCHER_CLOSE_S
    assert SERVER["restart"] == "unless-stopped"
    assert SERVER["init"] is True


def test_every_setting_in_the_compose_files_exists() -> None:
    """Settings ignore unknown variables, so a misspelt one would silently do nothing."""
    names: set[str] = set()
    for data in (BASE, CPU, SCALE):
        for service in data["services"].values():
            names |= {
                k.removeprefix("LSTM_SERVING_")
                for k in service.get("environment", {})
                if k.startswith("LSTM_SERVING_")
            }
    unknown = {n for n in names if n.lower() not in Settings.model_fields}
    assert names and not unknown, f"not settings: {sorted(unknown)}"


def test_compose_settings_agree_with_the_service_limits() -> None:
    env = SERVER["environment"]
    assert int(env["LSTM_SERVING_MAX_BODY_BYTES"]) == DEFAULTS.max_body_bytes
    # Fixed values must be valid settings (pydantic applies the same validators as at start-up).
    fixed = {
        k.removeprefix("LSTM_SERVING_").lower(): v
        for k, v in env.items()
        if isinstance(v, str) and "${" not in v
    }
    Settings.model_validate(fixed)


def test_images_are_pinned() -> None:
    for data in (BASE, CPU, SCALE):
        for name, service in data["services"].items():
            image = service.get("image")
            if image is not None:
                assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", image), f"{name}: {image}"
                assert not image.endswith(":latest")


# -- profiles: loadtest and prometheus ----------------------------------------------------------
def test_loadtest_runs_only_when_asked_against_a_healthy_server() -> None:
    loadtest = BASE["services"]["loadtest"]
    assert loadtest["profiles"] == ["loadtest"]
    assert loadtest["build"]["target"] == "loadtest"
    assert loadtest["depends_on"]["server"]["condition"] == "service_healthy"
    assert "--url=http://server:8000" in loadtest["command"]
    assert loadtest["restart"] == "no"


@pytest.mark.parametrize("data", [BASE, SCALE], ids=["base", "scale"])
def test_loadtest_command_is_accepted_by_the_load_tester(data: dict[str, Any]) -> None:
    cli = pytest.importorskip("loadtest.cli", reason="the loadtest package is not here")
    args = cli.build_parser().parse_args(data["services"]["loadtest"]["command"])
    assert args.model == "bilstm" and args.concurrency == 64 and args.duration == 30
    assert args.protocol == "v2-binary"


def test_prometheus_scrapes_every_server_replica() -> None:
    prometheus = BASE["services"]["prometheus"]
    assert prometheus["profiles"] == ["prometheus"]
    assert prometheus["build"] == {"context": ".", "target": "prometheus"}  # Debian's package
    assert "prometheus" in dockerfile_stages()
    assert (
        "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in (prometheus["volumes"])
    )
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["server"] and sd["type"] == "A" and sd["port"] == 8000
    assert _seconds(config["global"]["scrape_timeout"]) < _seconds(
        config["global"]["scrape_interval"]
    )


# -- variants: CPU and scale-out ----------------------------------------------------------------
def test_cpu_variant_drops_the_gpu() -> None:
    server = CPU["services"]["server"]
    assert server["environment"] == {
        "LSTM_SERVING_PROVIDER": "cpu",
        "LSTM_SERVING_WORKERS": "${LSTM_SERVING_WORKERS:-1}",  # on the CPU, ORT is the limit
    }
    devices = server["deploy"]["resources"]["reservations"]["devices"]
    assert isinstance(devices, Reset) and devices == []


def test_scale_variant_puts_replicas_behind_nginx() -> None:
    server = SCALE["services"]["server"]
    assert isinstance(server["ports"], Reset)  # only the load balancer publishes 8000
    assert server["deploy"]["replicas"] == "${SERVER_REPLICAS:-2}"
    lb = SCALE["services"]["lb"]
    # No image can be pulled on a build machine without a registry: nginx is built from Debian.
    assert lb["build"] == {"context": ".", "target": "lb"}
    assert "lb" in dockerfile_stages()
    assert lb["ports"] == SERVER["ports"]
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    assert lb["depends_on"]["server"]["condition"] == "service_healthy"
    assert SCALE["services"]["loadtest"]["depends_on"]["lb"]["condition"] == "service_healthy"


def _nginx_directives() -> list[list[str]]:
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())
    return [statement.split() for statement in re.split(r"[;{}]", text) if statement.strip()]


def test_nginx_resolves_every_replica_and_limits() -> None:
    directives = _nginx_directives()

    def values(name: str) -> list[list[str]]:
        return [d[1:] for d in directives if d[0] == name]

    # nginx 1.22 (Debian 12): a variable in proxy_pass, resolved through Docker's DNS per request
    # (an upstream's `server ... resolve` needs 1.27.3+).
    assert ["user", "www-data"] in [d[:2] for d in directives]
    assert ["$replicas", "server:8000"] in values("set")
    assert ["http://$backend"] in values("proxy_pass")
    (resolver,) = values("resolver")
    assert resolver[0] == "127.0.0.11" and "ipv6=off" in resolver
    assert ["1.1"] in values("proxy_http_version")
    assert ["8000"] in values("listen")
    (size,) = values("client_max_body_size")
    assert size == ["32m"] and 32 * 1024 * 1024 == DEFAULTS.max_body_bytes
    (read_timeout,) = values("proxy_read_timeout")
    assert _seconds(read_timeout[0]) > float(
        SERVER["environment"]["LSTM_SERVING_REQUEST_TIMEOUT_S"]
    )
    (retry,) = values("proxy_next_upstream")
    assert "http_503" in retry and "http_429" not in retry


def _nginx_blocks(name: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each ``name ... { ... }`` block of nginx.conf (without nested blocks): its arguments and
    its directives."""
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())
    return [
        (head.split()[1:], [s.split() for s in body.split(";") if s.strip()])
        for head, body in re.findall(r"(\b" + name + r"\s[^{;]*)\{([^{}]*)\}", text)
    ]


def test_nginx_hashes_streams_by_sequence_id_and_balances_the_rest() -> None:
    """A request with X-Sequence-Id goes to `streams`, hashed consistently by the header, so a
    stream's chunks reach the replica holding its state; one without it keeps the per-request
    resolution (the map's "" entry). The header is the one the Kubernetes Ingress hashes."""
    ((args, upstream),) = _nginx_blocks("upstream")
    assert args == ["streams"]
    assert ["hash", "$http_x_sequence_id", "consistent"] in upstream
    assert ["server", "server:8000"] in upstream
    ((args, entries),) = _nginx_blocks("map")
    assert args == ["$http_x_sequence_id", "$backend"]
    assert dict(entries) == {'""': "$replicas", "default": "streams"}
    ingress = (ROOT / "deploy" / "k8s" / "base" / "ingress.yaml").read_text()
    assert 'upstream-hash-by: "$http_x_sequence_id"' in ingress


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    """``nginx -t`` where an nginx is installed (the image's is Debian 12's 1.22). ``user
    www-data`` needs root, so it is dropped for this check."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed here")
    # The replicas' name resolves only in the compose network: an address stands in for it.
    config = (
        NGINX_CONF.read_text()
        .replace("user www-data;", "")
        .replace("server server:8000;", "server 127.0.0.1:8000;")
    )
    (tmp_path / "nginx.conf").write_text(config)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g",
         f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;"],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


class _Named(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_nginx_sends_each_stream_to_one_replica(tmp_path: Path) -> None:
    """The real nginx with this config, two stand-in replicas on this machine: every request of
    a stream reaches one replica, different streams spread over both, and requests without the
    header take the per-request path (here an upstream of both, for Docker's DNS)."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed here")
    replicas = []
    for name in ("a", "b"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        replicas.append(server)
    servers = "".join(f"server 127.0.0.1:{r.server_address[1]}; " for r in replicas)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = (
        NGINX_CONF.read_text()
        .replace("user www-data;", "")
        .replace("server server:8000;", servers)
        .replace("listen 8000;", f"listen 127.0.0.1:{port};")
        .replace("set $replicas server:8000;", "set $replicas everyone;")
        .replace(
            "upstream streams {", f"upstream everyone {{ {servers} }}\n    upstream streams {{"
        )
    )
    (tmp_path / "nginx.conf").write_text(config)
    process = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g",
         f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;"],
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http_client:
            for _ in range(100):  # until nginx listens
                try:
                    http_client.get("/")
                    break
                except httpx.TransportError:
                    process.poll()
                    assert process.returncode is None, (tmp_path / "error.log").read_text()
                    threading.Event().wait(0.05)

            def replica(headers: dict[str, str]) -> str:
                return http_client.get("/v2/models/lstm/infer", headers=headers).text

            homes = {}
            for stream in range(20):
                seen = {replica({"X-Sequence-Id": f"sensor-{stream}"}) for _ in range(5)}
                assert len(seen) == 1, f"stream {stream} reached {seen}"
                homes[stream] = seen.pop()
            assert set(homes.values()) == {"a", "b"}
            plain = [replica({}) for _ in range(10)]
            assert set(plain) == {"a", "b"}  # round-robin: both, not one hashed ""
    finally:
        process.terminate()
        process.wait(timeout=10)
        for server in replicas:
            server.shutdown()
