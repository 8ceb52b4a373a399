"""Helpers of the deployment tests: the Dockerfile read into stages and instructions, the compose
files loaded as YAML, ``.dockerignore`` matching, and the command-line tools the checks use."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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


def compose_command() -> list[str] | None:
    """A Docker Compose v2 CLI: ``docker compose`` (the plugin) or ``docker-compose`` v2. Parsing,
    merging and validating (``config``) need no Docker engine."""
    candidates: list[list[str]] = []
    docker = shutil.which("docker")
    if docker:
        candidates.append([docker, "compose"])
    standalone = tool("docker-compose")
    if standalone:
        candidates.append([standalone])
    for command in candidates:
        try:
            result = subprocess.run(
                [*command, "version", "--short"], capture_output=True, text=True, timeout=30
            )
        except OSError:
            continue
        if result.returncode == 0 and result.stdout.strip().lstrip("v").startswith("2."):
            return command
    return None
