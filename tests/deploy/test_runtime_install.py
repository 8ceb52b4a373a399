"""The runtime image's contents, built without Docker: the Dockerfile's own RUN commands, read
from the file, run against a fresh virtualenv (what catches a dependency missing from the image),
then the service started from it as the image starts it, health-checked, and stopped.

What differs from the image: this machine's Python (the image's is Debian 12's 3.11), pip's
cache and index here, no CUDA and no ORT_EXTRAS (no CUDA/cuDNN wheels; the provider is the CPU),
no CA secret, loopback instead of 0.0.0.0,
a small warm-up grid, and a tiny model repository instead of the trained defaults.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.constraints import read_pins
from tests.support.deploy import ROOT, Instruction, dockerfile_stages
from tests.support.servers import free_port

CONSTRAINTS = ROOT / "docker" / "constraints-runtime.txt"
FEATURES = 5


def test_constraints_pin_every_dependency_within_pyproject_ranges() -> None:
    pins = read_pins(CONSTRAINTS)
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for text in dependencies:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in {CONSTRAINTS.name}: run python docker/lock.py"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy {text}: run python docker/lock.py"
        )
    assert "torch" not in pins


# -- the Dockerfile's commands, run outside Docker ----------------------------------------------
@dataclass
class Runtime:
    root: Path  # stands for the image's /
    venv: Path
    log: str

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        clean = {
            k: v for k, v in os.environ.items() if not k.startswith(("LSTM_SERVING_", "PYTHON"))
        }
        return {
            **clean,
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "VIRTUAL_ENV": str(self.venv),
        }


def _mounts_and_command(run: Instruction) -> tuple[list[dict[str, str]], str]:
    words = run.args.split(" ")
    mounts = []
    while words and words[0].startswith("--mount="):
        options = dict(o.split("=", 1) for o in words.pop(0).removeprefix("--mount=").split(","))
        mounts.append(options)
    return mounts, " ".join(words).strip()


def _run_as_in_dockerfile(
    run: Instruction, root: Path, stage_outputs: dict[str, Path], env: dict[str, str]
) -> str:
    """Run one of the runtime stage's RUN instructions: its bind mounts become copies under
    ``root`` (the image's /), and every absolute path in its command is moved there too."""
    mounts, command = _mounts_and_command(run)
    for mount in mounts:
        if mount["type"] == "secret":  # optional (required=false): not given here
            assert mount.get("required") == "false", mount
            continue
        assert mount["type"] == "bind", mount
        target = root / mount["target"].lstrip("/")
        source = stage_outputs[mount["source"]] if "from" in mount else ROOT / mount["source"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    command = re.sub(r"(^|\s)/", lambda m: f"{m.group(1)}{root}/", command)  # / is root
    result = subprocess.run(
        ["sh", "-c", command], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    output = f"$ {command}\n{result.stdout}{result.stderr}"
    assert result.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    root = tmp_path_factory.mktemp("image")
    venv = root / "opt" / "venv"
    stages = dockerfile_stages()
    runtime_runs = stages["runtime"].all("RUN")
    assert "python3 -m venv /opt/venv" in runtime_runs[0].args
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    image = Runtime(root, venv, "")

    # The build stage's wheel, from a copy of what the build stage copies in.
    src = root / "build-src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    copied = [i.args.split()[0].rstrip("/") for i in stages["build"].all("COPY")]
    packages = [name for name in copied if (ROOT / name / "__init__.py").is_file()]
    assert {"contract", "models", "export", "service"} <= set(packages)
    for name in packages:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    (wheel_run,) = [i for i in stages["build"].all("RUN") if "pip wheel" in i.args]
    dist = root / "build" / "dist"
    # The last command of the RUN (before it: the optional CA secret for pip).
    command = shlex.split(wheel_run.args.split("&& ")[-1].replace("/build/dist", str(dist)))
    assert command[:2] == ["python", "-m"]
    subprocess.run([sys.executable, *command[1:]], cwd=src, check=True, timeout=300)

    # The runtime stage's two install steps, exactly as written in the Dockerfile.
    assert len(runtime_runs) == 3 and all("install-runtime.sh" in r.args for r in runtime_runs[1:])
    for run in runtime_runs[1:]:
        image.log += _run_as_in_dockerfile(run, root, {"/build/dist": dist}, image.env())
    return image


@pytest.mark.slow
def test_install_commands_build_a_runtime_without_torch(runtime: Runtime) -> None:
    assert "No broken requirements found" in runtime.log
    probe = subprocess.run(
        [str(runtime.python), "-c", "import torch"],
        cwd=runtime.root,
        env=runtime.env(),
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr


@pytest.mark.slow
def test_every_installed_package_is_pinned(runtime: Runtime) -> None:
    listing = subprocess.run(
        [str(runtime.python), "-m", "pip", "list", "--format=json"],
        env=runtime.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(listing.stdout)}
    pins = read_pins(CONSTRAINTS)
    for name, version in installed.items():
        if name in ("pip", "setuptools", "wheel", "lstm-serving"):
            continue
        assert pins.get(name) == version, f"{name} {version} is not pinned: python docker/lock.py"


# -- the service, started from the built runtime ------------------------------------------------
def _image_env(root: Path) -> dict[str, str]:
    """The runtime stage's ENV settings, with /models moved under ``root``."""
    text = " ".join(i.args for i in dockerfile_stages()["runtime"].all("ENV"))
    env = dict(re.findall(r"(LSTM_SERVING_[A-Z0-9_]+)=(\S+)", text))
    env["LSTM_SERVING_MODEL_REPOSITORY"] = str(root / env["LSTM_SERVING_MODEL_REPOSITORY"][1:])
    return env


@pytest.fixture(scope="module")
def served(runtime: Runtime) -> Iterator[tuple[subprocess.Popen[str], int, dict[str, str]]]:
    import torch

    from export.exporter import export_model
    from export.verify import VerifySettings
    from models.architectures import LSTMClassifier, LSTMClassifierConfig

    # COPY --from=build /build/model_repository /models (a tiny model instead of the trained one)
    env = {**runtime.env(), **_image_env(runtime.root)}
    models = Path(env["LSTM_SERVING_MODEL_REPOSITORY"])
    torch.manual_seed(0)
    config = LSTMClassifierConfig(FEATURES, (8, 8), 3, bidirectional=True, labels=("a", "b", "c"))
    fast = VerifySettings(max_length=24, batch_size=6, num_batches=2)
    export_model(LSTMClassifier(config), models, "tiny", 1, verify=fast)
    # COPY docker/healthcheck.py /opt/lstm-serving/healthcheck.py; WORKDIR /opt/lstm-serving
    workdir = runtime.root / "opt" / "lstm-serving"
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "docker" / "healthcheck.py", workdir / "healthcheck.py")

    port = free_port()
    env.update(
        LSTM_SERVING_HOST="127.0.0.1",  # the image listens on 0.0.0.0; here loopback only
        LSTM_SERVING_PORT=str(port),
        LSTM_SERVING_WARMUP_BATCH_SIZES="[1]",
        LSTM_SERVING_WARMUP_LENGTHS="[4]",
        LSTM_SERVING_LOG_FORMAT="text",
    )
    (entrypoint,) = dockerfile_stages()["runtime"].all("ENTRYPOINT")
    command = json.loads(entrypoint.args)
    assert command[0] == "python"
    process = subprocess.Popen(
        [str(runtime.python), *command[1:]],
        cwd=workdir,  # not the repository: the code must come from the venv
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, port, env
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def _healthcheck(runtime: Runtime, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (health,) = dockerfile_stages()["runtime"].all("HEALTHCHECK")
    command = json.loads(health.args.split("CMD", 1)[1])
    script = runtime.root / command[1].lstrip("/")
    return subprocess.run(
        [str(runtime.python), str(script)], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.slow
def test_service_starts_from_the_runtime_answers_and_drains(
    runtime: Runtime, served: tuple[subprocess.Popen[str], int, dict[str, str]]
) -> None:
    process, port, env = served
    deadline = time.monotonic() + 90
    while True:  # the image's HEALTHCHECK command, polled as Docker would (bounded)
        check = _healthcheck(runtime, env)
        if check.returncode == 0:
            break
        if process.poll() is not None:
            pytest.fail(f"the service exited:\n{process.stdout.read()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"never healthy: {check.stdout}\n{process.stdout.read()}")  # type: ignore[union-attr]
        time.sleep(0.2)

    where = subprocess.run(
        [str(runtime.python), "-c", "import service; print(service.__file__)"],
        cwd=runtime.root / "opt" / "lstm-serving",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(runtime.venv)

    body = {
        "inputs": [
            {"name": "inputs", "shape": [1, 3, FEATURES], "datatype": "FP32",
             "data": [0.1] * (3 * FEATURES)},
        ],
        "outputs": [{"name": "probs"}],
    }  # fmt: skip
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/tiny/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        (probs,) = json.loads(response.read())["outputs"]
    assert probs["shape"] == [1, 3] and abs(sum(probs["data"]) - 1) < 1e-5

    # The console and the offline documentation pages: their assets are package data of the wheel.
    for page in ("/", "/docs", "/redoc"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=30) as response:
            html = response.read().decode()
        assets = re.findall(r"""(?:src|href)=["'](/static/[^"']+)""", html)
        assert assets, f"{page} references no asset under /static/"
        for asset in assets:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{asset}", timeout=30) as response:
                assert response.status == 200 and response.read(), asset

    process.send_signal(signal.SIGTERM)  # STOPSIGNAL SIGTERM
    assert process.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises it once drained
    log = process.stdout.read()  # type: ignore[union-attr]
    assert "draining" in log and "stopped" in log
    assert _healthcheck(runtime, env).returncode == 1  # gone: unhealthy
