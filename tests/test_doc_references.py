"""What the code cites is in the repository: every ``*.md`` document and repository file named in
the packages' sources exists under the repository root (no absolute paths to a machine's
folders), and every README section cited by name is a heading of the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "contract",
    "models",
    "export",
    "tf1_checkpoint",
    "padding",
    "service",
    "loadtest",
    "bench",
    "lstm_serving",
)
SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
DOCUMENT = re.compile(r"[\w./~-]+\.md\b")
# With "tests" a test file cited by its path (tests/loadtest/conftest.py) is read as that path,
# not as a package's file (loadtest/conftest.py).
REPO_FILE = re.compile(
    r"\b(?:tests|docs|bench|contract|export|tf1_checkpoint|padding|service|models|loadtest|deploy|docker)/"
    r"[\w./-]+\.\w+"
)
README_SECTION = re.compile(r"""README's "([^"]+)\"""")


def _text(path: Path) -> str:
    return " ".join(path.read_text().split())  # a citation may wrap across lines


def _cited(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    return [
        (str(path.relative_to(ROOT)), match.group(1) if pattern.groups else match.group(0))
        for path in SOURCES
        for match in pattern.finditer(_text(path))
    ]


def test_the_sources_were_found() -> None:
    assert (
        ROOT / "export" / "verify.py" in SOURCES and ROOT / "bench" / "http_ceiling.py" in SOURCES
    )


@pytest.mark.parametrize(("source", "cited"), sorted({*_cited(DOCUMENT), *_cited(REPO_FILE)}))
def test_a_cited_file_is_in_the_repository(source: str, cited: str) -> None:
    assert not cited.startswith(("/", "~")), (
        f"{source} names a path outside the repository: {cited}"
    )
    assert (ROOT / cited).is_file(), f"{source} cites {cited}, which is not in the repository"


@pytest.mark.parametrize(("source", "section"), _cited(README_SECTION))
def test_a_cited_readme_section_exists(source: str, section: str) -> None:
    headings = [
        line.lstrip("#").strip().replace("`", "")
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("#")
    ]
    wanted = section.replace("`", "")
    assert any(heading.startswith(wanted) for heading in headings), (
        f"{source} cites the README's {section!r}, which is not one of its headings"
    )


README_TEST_FILE = re.compile(r"`((?:[\w]+/)*test_\w+\.py)`")


def test_the_test_files_the_readme_cites_exist() -> None:
    """The README names the tests that hold each guarantee, by their path under ``tests/`` or
    under its section's package folder (``api/test_v2.py`` in the service's sections): each name
    must be the end of a real test file's path."""
    readme = (ROOT / "README.md").read_text()
    tests = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")]
    cited = sorted(set(README_TEST_FILE.findall(readme)))
    assert cited, "the README cites no test file: the pattern is out of date"
    missing = [c for c in cited if not any(t == c or t.endswith("/" + c) for t in tests)]
    assert not missing, f"the README cites test files that do not exist: {missing}"
