"""The project's own pytest configuration, applied to a user-like test file."""

from __future__ import annotations

from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_skip_reasons_are_shown_without_asking(pytester: pytest.Pytester) -> None:
    """A test skipped for a missing host tool says which one and how to get it, with no -rs."""
    pytester.makepyfile(test_tool="""
        import pytest

        def test_needs_tool():
            pytest.skip("needs umoci: apt-get install umoci")
    """)
    result = pytester.runpytest_subprocess("-c", str(PYPROJECT), "--rootdir", str(pytester.path),
                                           "-p", "no:cacheprovider", "test_tool.py")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_tool.py:4: needs umoci: apt-get install umoci"])
