"""Print the requirements of pyproject.toml, one a line, for ``pip install -r``.

    python docker/requirements.py pyproject.toml               # [project].dependencies
    python docker/requirements.py pyproject.toml train export  # ... plus those extras

The Docker image installs dependencies from this list before it copies the code, so that a code
change does not reinstall them (the code goes in afterwards with ``pip install --no-deps``). An
extra that names this project (``lstm-serving[train]``) is expanded; an unknown extra is an error.
Standard library only (``tomllib``: Python 3.11+).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SELF_REFERENCE = re.compile(r"^\s*([A-Za-z0-9._-]+)\s*\[([^\]]*)\]\s*$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """``[project].dependencies`` plus each extra's requirements, self-references expanded."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    own_name = _normalise(project["name"])
    found: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()
    pending = list(extras)
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(
                f"{pyproject}: no extra {extra!r} (has: {', '.join(sorted(optional)) or 'none'})"
            )
        seen.add(extra)
        for requirement in optional[extra]:
            match = SELF_REFERENCE.match(requirement)
            if match and _normalise(match.group(1)) == own_name:
                pending.extend(e.strip() for e in match.group(2).split(",") if e.strip())
            else:
                found.append(requirement)
    return list(dict.fromkeys(found))  # first occurrence wins, order kept


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    for line in requirements(Path(argv[0]), argv[1:]):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
