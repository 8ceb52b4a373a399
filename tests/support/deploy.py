"""What the deployment tests (``tests/deploy``) read and run: the Dockerfile read into stages and
instructions, the compose files loaded as YAML, ``.dockerignore`` matching, and the command-line
tools the checks use."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
COMPOSE_SCALE = ROOT / "docker-compose.scale.yml"
COMPOSE_FILES = (COMPOSE, COMPOSE_CPU, COMPOSE_SCALE)
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
INSTALL_RUNTIME = ROOT / "docker" / "install-runtime.sh"
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"


# -- Dockerfile ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # continuation lines joined, comments inside them dropped
    line: int


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile, each with its instructions (enough of the syntax for ours:
    backslash continuations, full-line comments, ``FROM image AS name``)."""
    stages: list[Stage] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(p for p in pending if p).partition(" ")
        pending = []
        instruction = Instruction(keyword.upper(), args.strip(), start)
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", instruction.args, re.IGNORECASE)
            assert match, f"unreadable FROM at line {start}: {instruction.args}"
            stages.append(Stage(match.group(2) or str(len(stages)), match.group(1)))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


@cache
def dockerfile_stages() -> dict[str, Stage]:
    return {stage.name: stage for stage in parse_dockerfile(DOCKERFILE.read_text())}


# -- .dockerignore ------------------------------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_excludes(path: str, lines: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative, with ``/``) out of the build context: the last
    pattern that matches the path or one of its parent folders decides; ``!`` re-includes."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = _pattern_regex(line.lstrip("!").strip().strip("/"))
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


# -- compose ------------------------------------------------------------------------------------
class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags: ``!reset`` and ``!override`` keep their value, marked."""


class Reset(list[Any]):
    """A ``!reset`` value (Compose: drop what the files before this one set)."""


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return Reset(loader.construct_sequence(node))
    return Reset()


_ComposeLoader.add_constructor("!reset", _reset)


def load_compose(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=_ComposeLoader)  # a SafeLoader, plus two tags
    assert isinstance(data, dict)
    return data


def without_compose_tags(text: str) -> str:
    """The file with Compose's ``!reset``/``!override`` tags dropped and their values kept, for
    validators whose YAML reader does not know these tags (check-jsonschema's)."""
    return re.sub(r"!(reset|override)\b\s*", "", text)


# -- tools --------------------------------------------------------------------------------------
def tool(name: str) -> str | None:
    """A console script of the test environment (next to this Python), else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


def compose_env(home: Path, **env: str) -> dict[str, str]:
    """The whole environment Compose runs in: a ``HOME`` of the test's own and a system ``PATH``,
    so that no Docker config, ``LSTM_SERVING_*`` variable or ``.env`` of the developer's changes
    what is checked; then ``env``."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), **env}


def run_compose(
    command: list[str], home: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``command`` (from ``compose_command``) with ``args``, an empty ``.env`` file and
    ``compose_env(home, **env)``, in the repository root."""
    empty = home / "empty.env"
    empty.write_text("")
    return subprocess.run(
        [*command, "--env-file", str(empty), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=compose_env(home, **env),
    )


def _compose_plugin(docker: str) -> str | None:
    """Where ``docker`` finds its ``compose`` plugin (``~/.docker/cli-plugins``,
    ``$DOCKER_CONFIG/cli-plugins``, ``cliPluginsExtraDirs``, a system folder): it says so itself,
    without an engine."""
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{json .ClientInfo.Plugins}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        plugins = json.loads(result.stdout.strip().splitlines()[0]) if result.stdout else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    for plugin in plugins if isinstance(plugins, list) else []:
        if isinstance(plugin, dict) and plugin.get("Name") == "compose" and plugin.get("Path"):
            return str(plugin["Path"])
    return None


def compose_command() -> list[str] | None:
    """A Docker Compose v2 CLI that works in ``compose_env`` (any ``HOME``): the ``docker compose``
    plugin's own executable (a v2 plugin runs standalone too), wherever the user keeps it; else
    ``docker compose`` where the plugin lies in a system folder; else ``docker-compose`` v2.
    Each candidate is tried in ``compose_env``, so what is found here runs in the tests. Parsing,
    merging and validating (``config``) need no Docker engine."""
    candidates: list[list[str]] = []
    docker = shutil.which("docker")
    if docker:
        plugin = _compose_plugin(docker)
        if plugin:
            candidates.append([plugin])
        candidates.append([docker, "compose"])
    standalone = tool("docker-compose")
    if standalone:
        candidates.append([standalone])
    with tempfile.TemporaryDirectory() as home:
        for command in candidates:
            try:
                result = subprocess.run(
                    [*command, "version", "--short"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env=compose_env(Path(home)),
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if result.returncode == 0 and result.stdout.strip().lstrip("v").startswith("2."):
                return command
    return None
