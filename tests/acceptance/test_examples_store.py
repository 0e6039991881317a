"""The examples leave no image of theirs in the user's store (issue 20, item 5).

They used to leave ``example-app:latest``, ``example-kv-seeded:latest`` and more, and their
untagged commits, in the default store of whoever ran the README's first command.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_minicontainer import Engine

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_examples_leave_no_tags_behind(pytester: pytest.Pytester, containers_available: None,
                                           tmp_path: Path) -> None:
    for example in EXAMPLES.glob("*.py"):
        shutil.copy(example, pytester.path / example.name)
    for project in EXAMPLES.iterdir():  # what the examples read (examples/stack: a compose project)
        if project.is_dir() and not project.name.startswith((".", "__")):
            shutil.copytree(project, pytester.path / project.name)
    store = tmp_path / "store"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--minicontainer-store={store}", timeout=300)
    assert result.ret == 0, result.stdout.str()[-3000:]
    with Engine(store=store) as engine:
        left = engine.store.list_images()
        assert [i.tags for i in left if i.tags] == []  # no example-* tag is left
        assert engine.prune() > 0  # the removed commits' layers are reclaimable
