"""A container that makes a very deep tree must not break its Engine or its store (issue 14, finding 3).

A 1500-deep directory made in a container made commit(), diff() and the zygote's delete
raise RecursionError inside the zygote, which died: every later container, and every later
session's stale-scratch cleanup on that store, then failed with "the runtime helper is gone".
"""

from __future__ import annotations

from pathlib import Path

from pytest_minicontainer import Engine
from pytest_minicontainer._rmtree import remove_tree
from tests.conftest import nested_dirs

DEPTH = 2000  # deeper than Python's recursion limit and than the usual 1024 open descriptors
MAKE_DEEP = (f"cd / && mkdir deep && cd deep && i=0; while [ $i -lt {DEPTH} ]; do mkdir a && cd a; i=$((i+1)); done;"
             " echo leaf > f")
LEAF = "/deep" + "/a" * DEPTH + "/f"


def test_a_deep_tree_is_diffed_committed_and_removed(tmp_path: Path, busybox_rootfs: Path) -> None:
    store = tmp_path / "store"
    try:
        with Engine(store=store) as engine:
            with engine.run(f"rootfs:{busybox_rootfs}", command=()) as c:
                c.exec(MAKE_DEEP, check=True, timeout=120)
                changed = {(ch.kind, ch.path) for ch in c.diff()}
                assert ("A", "/deep") in changed and ("A", LEAF) in changed
                assert len(changed) == DEPTH + 2
                image = c.commit()
            # the zygote removed that container's writable layer and is still there
            with engine.run(image, command=()) as clone:
                assert clone.exec(["cat", LEAF.lstrip("/")], workdir="/").stdout == "leaf\n"
            with engine.run(f"rootfs:{busybox_rootfs}", command=()) as other:
                assert other.exec(["echo", "alive"]).stdout == "alive\n"
    finally:
        remove_tree(store)  # pytest's own temp-dir cleanup recurses: leave it nothing deep


def test_a_new_session_removes_a_deep_tree_a_crash_left(tmp_path: Path, busybox_rootfs: Path) -> None:
    store = tmp_path / "store"
    try:
        with Engine(store=store) as engine:
            engine.image(f"rootfs:{busybox_rootfs}")
        dead = store / "run" / "99999999-deadbeef"  # an engine killed by SIGKILL: no lock holder
        dead.mkdir()
        nested_dirs(dead, DEPTH)
        with Engine(store=store) as engine:
            engine.start()  # the runtime starts, and cleans what dead engines left
            assert not dead.exists()
            with engine.run(f"rootfs:{busybox_rootfs}", command=()) as c:
                assert c.exec(["true"]).returncode == 0
    finally:
        remove_tree(store)
