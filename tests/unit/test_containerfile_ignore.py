""".containerignore / .dockerignore patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_minicontainer.build._ignore import load_ignore, parse_ignore

RULES = parse_ignore("""
# comment
*.pyc
/build
**/__pycache__
docs/*.md
!docs/keep.md
se?ret
""")


@pytest.mark.parametrize(("path", "ignored"), [
    ("a.pyc", True),
    ("sub/a.pyc", False),  # Go's * does not cross directories
    ("build", True),
    ("build/x/y", True),  # a matched directory excludes everything below
    ("src/build", False),
    ("__pycache__/m.pyc", True),
    ("a/b/__pycache__", True),
    ("docs/readme.md", True),
    ("docs/keep.md", False),
    ("secret", True),
    ("seecret", False),
    ("main.py", False),
])
def test_patterns(path: str, ignored: bool) -> None:
    assert RULES.ignored(path) is ignored


def test_containerignore_wins_over_dockerignore(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("a\n")
    assert load_ignore(str(tmp_path)).ignored("a")
    (tmp_path / ".containerignore").write_text("b\n")
    rules = load_ignore(str(tmp_path))
    assert rules.source == ".containerignore"
    assert rules.ignored("b") and not rules.ignored("a")


def test_no_ignore_file(tmp_path: Path) -> None:
    assert not load_ignore(str(tmp_path)).ignored("anything")


@pytest.mark.parametrize(("patterns", "directory", "expected"), [
    ("docs\n!docs/README.md", "docs", True),
    ("docs\n!docs/README.md", "other", False),
    ("docs\n!docs/*/keep", "docs/a", True),
    ("docs\n!docs/*/keep", "docs/a/b", False),
    ("docs\n!docs/*/keep", "docs/a/keep/x", True),  # the exception matches a parent: all below it
    ("docs\n!docs/a*/keep", "docs/b", False),
    ("a/b\n!a/b/c/d", "a/b/c", True),
    ("build\n!**/keep.txt", "build/x/y", True),
    ("build", "build", False),  # no exception at all
    ("*\n!src", "src", True),
    ("*\n!src", "docs", False),
])
def test_may_include_below(patterns: str, directory: str, expected: bool) -> None:
    """Whether an excluded directory must be looked into for ``!`` exceptions (Docker's walk)."""
    assert parse_ignore(patterns).may_include_below(directory) is expected
