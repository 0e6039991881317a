"""The tree walkers (remove, copy, digest) on deep and wide trees, as properties (issue 14, finding 3).

Every walker is a loop over directory descriptors: no recursion, no paths longer than one
name, so any depth works; symlinks are never followed; directories without permission are
opened up only by remove_tree (the tree is going anyway).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_minicontainer import _rmtree
from pytest_minicontainer._rmtree import remove_tree
from pytest_minicontainer.runtime.trees import copy_tree
from pytest_minicontainer.store._treehash import tree_digest
from tests.conftest import nested_dirs

Tree = dict[str, Union[bytes, str, "Tree"]]  # bytes: a file; str: a symlink's target; dict: a directory

names = st.text(alphabet="abcxyz.-_", min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))
leaves = st.one_of(st.binary(max_size=64), st.sampled_from(["../outside", "/etc/passwd", "x", "../../.."]))
trees: st.SearchStrategy[Tree] = st.recursive(
    st.dictionaries(names, leaves, max_size=4),
    lambda children: st.dictionaries(names, st.one_of(leaves, children), max_size=4),
    max_leaves=40,
)


def make(root: Path, tree: Tree, chain: int = 0) -> None:
    """Write ``tree`` below ``root``, then a chain of ``chain`` nested directories (by descriptors)."""
    root.mkdir()
    todo: list[tuple[Path, Tree]] = [(root, tree)]
    while todo:
        where, content = todo.pop()
        for name, value in content.items():
            if isinstance(value, dict):
                (where / name).mkdir()
                todo.append((where / name, value))
            elif isinstance(value, str):
                (where / name).symlink_to(value)
            else:
                (where / name).write_bytes(value)
    nested_dirs(root, chain, "d")


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory the trees' symlinks point at: no walker may touch it."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "keep").write_text("keep")
        yield Path(d)


settings_ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings_
@given(tree=trees, chain=st.integers(0, 40), max_depth=st.integers(1, 6))
def test_remove_tree_removes_any_tree_and_nothing_else(tree: Tree, chain: int, max_depth: int, outside: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_rmtree, "MAX_DEPTH", max_depth)  # parking of deep subtrees, exercised
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "t"
        make(root, tree, chain)
        (root / "out").symlink_to(outside)
        remove_tree(root)
        assert os.listdir(d) == []
    assert (outside / "keep").read_text() == "keep"


@settings_
@given(tree=trees, chain=st.integers(0, 40))
def test_copy_tree_copies_exactly(tree: Tree, chain: int, outside: Path) -> None:
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "src", Path(d) / "dst"
        make(src, tree, chain)
        (src / "out").symlink_to(outside)
        copy_tree(str(src), str(dst))
        assert tree_digest(dst) == tree_digest(src)
        assert os.readlink(dst / "out") == str(outside)
    assert sorted(os.listdir(outside)) == ["keep"]


def test_very_deep_trees(tmp_path: Path) -> None:
    """Deeper than Python's recursion limit, than 1024 descriptors and than PATH_MAX can name."""
    depth = 3000
    try:
        make(tmp_path / "src", {"f": b"top"}, depth)
        copy_tree(str(tmp_path / "src"), str(tmp_path / "dst"))  # raises its own descriptor limit
        assert tree_digest(tmp_path / "dst") == tree_digest(tmp_path / "src")
        remove_tree(tmp_path / "src")
        remove_tree(tmp_path / "dst")
        assert os.listdir(tmp_path) == []
    finally:  # pytest's own temp-dir cleanup recurses: leave it nothing deep, also on failure
        remove_tree(tmp_path / "src")
        remove_tree(tmp_path / "dst")


def test_remove_tree_opens_up_directories_without_permission(tmp_path: Path) -> None:
    make(tmp_path / "t", {"ro": {"f": b"x", "sub": {"g": b"y"}}, "none": {"h": b"z"}})
    os.chmod(tmp_path / "t" / "ro" / "sub", 0o500)
    os.chmod(tmp_path / "t" / "ro", 0o555)
    os.chmod(tmp_path / "t" / "none", 0o000)
    remove_tree(tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_remove_tree_of_a_symlink_or_file_removes_only_it(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "link").symlink_to(outside)
    remove_tree(tmp_path / "link")
    remove_tree(tmp_path / "missing")
    (tmp_path / "f").write_text("x")
    remove_tree(tmp_path / "f")
    assert os.listdir(tmp_path) == [] and (outside / "keep").exists()


def test_copy_keeps_modes_of_read_only_directories(tmp_path: Path) -> None:
    make(tmp_path / "src", {"ro": {"f": b"x"}})
    os.chmod(tmp_path / "src" / "ro", 0o555)
    copy_tree(str(tmp_path / "src"), str(tmp_path / "dst"))
    assert stat.S_IMODE(os.stat(tmp_path / "dst" / "ro").st_mode) == 0o555
    assert (tmp_path / "dst" / "ro" / "f").read_bytes() == b"x"
    for root in ("src", "dst"):
        os.chmod(tmp_path / root / "ro", 0o755)
    shutil.rmtree(tmp_path / "dst")
