"""What the code cites is in the repository: every ``*.md`` document and repository file named in
the packages' sources exists under the repository root (no absolute paths to a machine's
folders), every section cited by name (``README's "X"``, ``docs/serving.md, "X"``) is a heading
of the document named, and the test files the documents cite exist."""

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
SECTION = re.compile(r"""\b(README|docs/[\w.-]+\.md)(?:'s|,) "([^"]+)\"""")
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


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


def _cited_sections() -> list[tuple[str, str, str]]:
    sources = [*SOURCES, *DOCUMENTS]
    return [
        (str(path.relative_to(ROOT)), match.group(1), match.group(2))
        for path in sources
        for match in SECTION.finditer(_text(path))
    ]


@pytest.mark.parametrize(("source", "document", "section"), _cited_sections())
def test_a_cited_section_exists(source: str, document: str, section: str) -> None:
    path = ROOT / ("README.md" if document == "README" else document)
    assert path.is_file(), f"{source} cites {document}, which is not in the repository"
    headings = [
        line.lstrip("#").strip().replace("`", "")
        for line in path.read_text().splitlines()
        if line.startswith("#")
    ]
    wanted = section.replace("`", "")
    assert any(heading.startswith(wanted) for heading in headings), (
        f"{source} cites {document}'s {section!r}, which is not one of its headings"
    )


def test_sections_are_cited() -> None:
    assert _cited_sections(), "no section citation found: the pattern is out of date"


README_TEST_FILE = re.compile(r"`((?:[\w]+/)*test_\w+\.py)`")


def test_the_test_files_the_documents_cite_exist() -> None:
    """The documents name the tests that hold each guarantee, by their path under ``tests/`` or
    under its section's package folder (``api/test_v2.py`` in the service's sections): each name
    must be the end of a real test file's path."""
    text = " ".join(path.read_text() for path in DOCUMENTS)
    tests = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")]
    cited = sorted(set(README_TEST_FILE.findall(text)))
    assert cited, "the documents cite no test file: the pattern is out of date"
    missing = [c for c in cited if not any(t == c or t.endswith("/" + c) for t in tests)]
    assert not missing, f"the documents cite test files that do not exist: {missing}"
