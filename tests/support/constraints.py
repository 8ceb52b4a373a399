"""pip constraints files (``constraints/dev.txt``, ``docker/constraints-runtime.txt``) read
back as the pins they hold."""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name


def read_pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of each ``name==version`` line (comments and blank lines
    skipped)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins
