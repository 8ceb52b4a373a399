"""The ``lstm-serving`` command (``lstm_serving.cli``), run as a process against a real server:
``predict`` reads .npy, .csv and .json and prints the reference classes (or JSON), a server's
error is its one-line message with a non-zero status, and ``serve``/``export``/
``export-defaults``/``loadtest`` are the ``python -m`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from lstm_serving.cli import DELEGATES
from tests.support.ort_reference import Reference
from tests.support.servers import ROOT, Server
from tests.support.tiny_repository import FEATURES, LABELS

pytestmark = pytest.mark.slow
RNG = np.random.default_rng(5)
SEQUENCES = [RNG.normal(size=(n, FEATURES)).astype(np.float32) for n in (6, 11)]


def lstm_serving(*args: str) -> subprocess.CompletedProcess[str]:
    """``lstm-serving ARGS`` (as ``python -m lstm_serving``: the console script runs the same
    ``main``, which ``test_the_console_script_is_the_cli`` checks)."""
    return subprocess.run(
        [sys.executable, "-m", "lstm_serving", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def labels_of(reference: Reference, model: str, sequences: list[np.ndarray]) -> list[str]:
    return [LABELS[int(np.argmax(reference.run(model, s)["probs"]))] for s in sequences]


def write(path: Path, sequences: list[np.ndarray]) -> Path:
    if path.suffix == ".npy":
        np.save(path, sequences[0])
    elif path.suffix == ".csv":
        blocks = ["\n".join(",".join(f"{v:.9g}" for v in step) for step in s) for s in sequences]
        path.write_text("\n\n".join(blocks) + "\n")
    else:
        path.write_text(json.dumps({"sequences": [s.tolist() for s in sequences]}))
    return path


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".json"])
@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_predict_prints_each_class_and_its_probabilities(
    server: Server, reference: Reference, tmp_path: Path, suffix: str, protocol: str
) -> None:
    sequences = SEQUENCES[:1] if suffix == ".npy" else SEQUENCES
    data = write(tmp_path / f"data{suffix}", sequences)
    run = lstm_serving(
        "predict", "--model", "tiny_bi", str(data), "--url", server.url, "--protocol", protocol
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == len(sequences)
    for k, (line, label) in enumerate(
        zip(lines, labels_of(reference, "tiny_bi", sequences), strict=True)
    ):
        assert line.startswith(f"sequence {k}: class {label} (p=")
        assert all(f"{name}=" in line for name in LABELS)


def test_predict_json(server: Server, reference: Reference, tmp_path: Path) -> None:
    data = write(tmp_path / "data.json", SEQUENCES)
    run = lstm_serving("predict", "--model", "tiny_uni", str(data), "--url", server.url, "--json")
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    assert (body["model"], body["version"]) == ("tiny_uni", "1")
    assert [r["label"] for r in body["results"]] == labels_of(reference, "tiny_uni", SEQUENCES)
    for result, s in zip(body["results"], SEQUENCES, strict=True):
        probs = reference.run("tiny_uni", s)["probs"]
        assert list(result["probabilities"]) == list(LABELS)
        np.testing.assert_allclose(list(result["probabilities"].values()), probs, atol=1e-5)


def test_predict_reads_an_examples_file(server: Server, examples_repository: Path) -> None:
    path = examples_repository / "tiny_bi" / "examples.json"
    run = lstm_serving("predict", "--model", "tiny_bi", str(path), "--url", server.url, "--json")
    assert run.returncode == 0, run.stderr
    written = json.loads(path.read_text())["examples"]
    assert [r["label"] for r in json.loads(run.stdout)["results"]] == [e["label"] for e in written]


@pytest.mark.parametrize(
    ("model", "features", "status", "says"),
    [("nope", FEATURES, "HTTP 404, model_not_found", "unknown model 'nope'"),
     ("tiny_bi", FEATURES + 2, "HTTP 422, invalid_input", f"[T, {FEATURES}]")],
)  # fmt: skip
def test_a_server_error_is_its_message_on_one_line(
    server: Server, tmp_path: Path, model: str, features: int, status: str, says: str
) -> None:
    data = tmp_path / "data.npy"
    np.save(data, np.zeros((3, features), np.float32))
    run = lstm_serving("predict", "--model", model, str(data), "--url", server.url)
    assert run.returncode == 1 and run.stdout == ""
    (line,) = run.stderr.splitlines()
    assert line.startswith("lstm-serving: error: ") and says in line and status in line
    assert "Traceback" not in run.stderr


def test_an_unreadable_file_or_no_server_is_one_line_too(tmp_path: Path) -> None:
    missing = lstm_serving("predict", "--model", "m", str(tmp_path / "none.npy"))
    assert missing.returncode == 2 and "none.npy" in missing.stderr
    data = write(tmp_path / "data.npy", SEQUENCES)
    down = lstm_serving("predict", "--model", "m", str(data), "--url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "http://127.0.0.1:9" in down.stderr
    for run in (missing, down):
        assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr


def test_models_lists_what_the_server_serves(server: Server) -> None:
    run = lstm_serving("models", "--url", server.url)
    assert run.returncode == 0, run.stderr
    assert [line.split()[:3] for line in run.stdout.splitlines()] == [
        ["tiny_bi", "v1", "ready"],
        ["tiny_uni", "v1", "ready"],
    ]


@pytest.mark.parametrize("name", sorted(DELEGATES))
def test_the_tool_commands_are_the_python_m_commands(name: str) -> None:
    """The same help (their flags and their own prog name) as ``python -m ...``."""
    same, _ = DELEGATES[name]
    module = same.removeprefix("python -m ")
    direct = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True
    )
    delegated = lstm_serving(name, "--help")
    assert direct.returncode == delegated.returncode == 0, delegated.stderr
    assert delegated.stdout == direct.stdout and "usage:" in direct.stdout


def test_the_console_script_is_the_cli() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"lstm-serving": "lstm_serving.cli:main"}


def test_the_installed_script_answers_as_the_module_does(server: Server) -> None:
    # pip install puts the script beside the interpreter (the virtualenv's bin/): where the
    # package is installed, as the README's commands do, it must be there and run the CLI.
    script = Path(sys.executable).parent / "lstm-serving"
    if not script.exists():
        pytest.skip(f"the package is not installed for {sys.executable} (no {script})")
    run = subprocess.run(
        [str(script), "models", "--url", server.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == lstm_serving("models", "--url", server.url).stdout
    assert "tiny_bi" in run.stdout
