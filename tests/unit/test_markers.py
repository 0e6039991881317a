"""The ``compose`` marker's reading (``markers.compose_spec``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_minicontainer.markers import compose_spec


def test_compose_spec_anchors_a_relative_path_and_checks_its_options(tmp_path: Path) -> None:
    """The compose marker, as the fixture and the look-ahead both read it: one value that compares
    equal for the same marker (so a stack started ahead is taken only by a test asking the same)."""
    spec = compose_spec(pytest.mark.compose("stack", services="db", env={"B": "2", "A": "1"}).mark, tmp_path)
    assert spec.path == str(tmp_path / "stack")
    assert spec.services == ("db",)
    assert spec.env == (("A", "1"), ("B", "2"))
    assert spec == compose_spec(pytest.mark.compose(path=str(tmp_path / "stack"), services=["db"],
                                                    env={"A": "1", "B": "2"}).mark, Path("/elsewhere"))
    assert compose_spec(pytest.mark.compose("/abs").mark, tmp_path).services is None
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        compose_spec(pytest.mark.compose("x", service="db").mark, tmp_path)
    with pytest.raises(TypeError, match="give the compose file"):
        compose_spec(pytest.mark.compose().mark, tmp_path)
