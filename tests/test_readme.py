"""The README stays true to the code: every setting documented, the set-up commands exact, their
pins complete, and CI running the test command as a fresh machine would."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from service.settings import Settings
from tests.support.constraints import read_pins

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SERVING = (ROOT / "docs" / "serving.md").read_text()
"""Where the settings table lives (the README links it)."""
CI = (ROOT / ".ci" / "run").read_text()
CONSTRAINTS = ROOT / "constraints" / "dev.txt"
REGENERATE = "run python3 constraints/lock.py"


def settings_table() -> str:
    """The settings table of docs/serving.md as ``service.settings`` defines it: flag, default,
    docstring."""
    rows = ["| flag | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = " ".join((field.description or "").split())
        rows.append(f"| `--{name.replace('_', '-')}` | `{field.default}` | {meaning} |")
    return "\n".join(rows) + "\n"


def test_the_settings_table_is_the_settings() -> None:
    """Every setting, with its default and docstring, exactly as the code has them (on failure,
    paste the table printed below into docs/serving.md)."""
    assert settings_table() in SERVING, "the settings table is stale:\n" + settings_table()


def _readme_commands() -> tuple[str, str]:
    commands = re.findall(r"```bash\n(python3 -m pip install[^\n]+)\n```", README)
    assert len(commands) == 2, commands  # serve, test
    serve, test = commands
    return serve, test


def test_ci_runs_the_readme_test_command() -> None:
    serve, test = _readme_commands()
    assert "python3 -m service" in serve and "export.defaults" in serve
    (in_ci,) = re.findall(r"^readme_test_command='([^']+)'$", CI, re.MULTILINE)
    assert in_ci == test


def test_both_set_up_commands_install_the_pins() -> None:
    for command in _readme_commands():
        assert command.startswith(f"python3 -m pip install -c {CONSTRAINTS.relative_to(ROOT)} -e ")


def test_the_serve_command_installs_what_the_first_request_runs() -> None:
    # The README's first request includes `lstm-serving predict`, whose client needs httpx: a
    # fresh virtualenv with only [train,export] answered "No module named 'httpx'".
    serve, _ = _readme_commands()
    (extras,) = re.findall(r'-e "\.\[([^\]]+)\]"', serve)
    installed = {r.name for r in _pyproject_requirements(extras.split(","))}
    client = {r.name for r in _pyproject_requirements(["client"])}
    assert "lstm-serving predict" in README and client <= installed, (extras, client - installed)


# -- the pins: constraints/dev.txt ---------------------------------------------------------------
def _pyproject_requirements(extras: list[str]) -> list[Requirement]:
    """``[project].dependencies`` and the extras' requirements, this project's own extras that an
    extra names (``lstm-serving[train,...]``) expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    own = canonicalize_name(project["name"])
    found = [Requirement(text) for text in project["dependencies"]]
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == own:
                pending.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def test_pins_lie_within_the_pyproject_ranges() -> None:
    pins = read_pins(CONSTRAINTS)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in _pyproject_requirements(list(project["optional-dependencies"])):
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        assert name in pins, f"{name} is not pinned in {CONSTRAINTS.name}: {REGENERATE}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy {requirement}: {REGENERATE}"
        )
    # A local label (+cpu) would not match the build of the same version on PyPI.
    assert not [f"{n}=={v}" for n, v in pins.items() if Version(v).local]


def _installed_closure(requirements: list[Requirement]) -> tuple[dict[str, str], list[str]]:
    """The distributions that ``requirements`` bring into this environment, with their extras'
    requirements and transitively: (name -> installed version, names required but absent)."""
    installed: dict[str, str] = {}
    absent: list[str] = []
    done: set[tuple[str, str]] = set()
    pending = [r for r in requirements if r.marker is None or r.marker.evaluate()]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        wanted = {""} | set(requirement.extras)
        new = {extra for extra in wanted if (name, extra) not in done}
        if not new:
            continue
        done |= {(name, extra) for extra in new}
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
            continue
        installed[name] = distribution.version
        for text in distribution.requires or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in new):
                pending.append(child)
    return installed, sorted(set(absent))


def test_this_environment_is_the_pinned_one() -> None:
    """Every package of the dev install is pinned, and installed at its pin: what passes here is
    what a fresh machine gets from the README's command. A failure names the packages: install
    with the README's test command, or regenerate the pins after a change to pyproject.toml."""
    pins = read_pins(CONSTRAINTS)
    installed, absent = _installed_closure(_pyproject_requirements(["dev"]))
    assert not absent, f"not installed: {absent} (run the README's test command)"
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"not pinned in {CONSTRAINTS.name}: {unpinned}: {REGENERATE}"
    # ``==2.13.0`` admits the local build 2.13.0+cpu, as pip does.
    other = {
        name: f"{version} installed, {pins[name]} pinned"
        for name, version in installed.items()
        if Version(version).public != Version(pins[name]).public
    }
    assert not other, other


# -- .ci/run, against a stand-in python3 ----------------------------------------------------------
# Logs each call as "<its own path> <args>"; `-m venv DIR` makes DIR/bin/python3 (a copy of itself);
# pytest and ruff format exit with $PYTEST_RC and $FORMAT_RC.
FAKE_PYTHON = r"""#!/bin/sh
echo "$0 $*" >>"$CALLS"
case "$1 $2" in
"-m venv") mkdir -p "$3/bin" && cp "$0" "$3/bin/python3" ;;
"-m pytest")
    [ "$PYTEST_RC" = 5 ] && echo "============ no tests ran in 0.01s ============"
    [ "$PYTEST_RC" = 0 ] && echo "============ 3 passed in 0.01s ============"
    exit "$PYTEST_RC" ;;
"-m ruff") [ "$3" = format ] && exit "$FORMAT_RC" ;;
esac
exit 0
"""


@pytest.mark.parametrize(
    ("pytest_rc", "format_rc", "closing"),
    [(5, 1, "no tests ran in 0.01s"), (0, 0, "3 passed in 0.01s")],
    ids=["no-tests-and-unformatted", "all-pass"],
)
def test_ci_runs_every_check_in_a_fresh_virtualenv(
    tmp_path: Path, pytest_rc: int, format_rc: int, closing: str
) -> None:
    """.ci/run makes its own virtualenv and runs everything with its python3; pytest's exit 5 is
    a failure; ruff and mypy run although pytest failed; the summary names each step and shows
    pytest's closing line."""
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy2(ROOT / ".ci" / "run", clone / ".ci" / "run")
    machine = tmp_path / "machine-bin"
    machine.mkdir()
    (machine / "python3").write_text(FAKE_PYTHON)
    (machine / "python3").chmod(0o755)
    calls = tmp_path / "calls.log"
    venv = tmp_path / "ci-venv"
    result = subprocess.run(
        ["bash", str(clone / ".ci" / "run")],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": f"{machine}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(tmp_path),
            "CI": "true",
            "CI_VENV": str(venv),
            "CALLS": str(calls),
            "PYTEST_RC": str(pytest_rc),
            "FORMAT_RC": str(format_rc),
        },
    )
    output = result.stdout + result.stderr
    fresh = f"{venv}/bin/python3"
    _, test = _readme_commands()
    install = test.split(" && ")[0].removeprefix("python3 ").replace('"', "")  # as sh passes it
    assert calls.read_text().splitlines() == [
        f"{machine}/python3 -m venv {venv}",  # the machine's Python makes the virtualenv, only
        f"{fresh} --version",
        f"{fresh} {install}",
        f"{fresh} -m pytest",
        f"{fresh} -m ruff check .",
        f"{fresh} -m ruff format --check .",
        f"{fresh} -m mypy",
    ], output
    summary = output[output.index("==> summary") :]
    assert closing in summary
    codes = {
        "install": 0,
        "pytest": pytest_rc,
        "ruff check": 0,
        "ruff format --check": format_rc,
        "mypy": 0,
    }
    for step, code in codes.items():
        verdict = "ok" if code == 0 else f"FAILED (exit {code})"
        assert re.search(rf"\n +{re.escape(step)} +{re.escape(verdict)}", summary), summary
    assert result.returncode == (0 if pytest_rc == format_rc == 0 else 1), output
