"""pytest_minicontainer.testing.make_busybox_rootfs: the one busybox image of the tests and the examples."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pytest_minicontainer.testing import make_busybox_rootfs


def test_users_files_and_dirs_are_laid_out(tmp_path: Path) -> None:
    root = make_busybox_rootfs(tmp_path / "rootfs", users={"app": 1000}, files={"data/keep.txt": "original\n"},
                               dirs=("proc",))
    assert root == tmp_path / "rootfs"
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert (root / "etc" / "passwd").read_text() == ("root:x:0:0:root:/root:/bin/sh\n"
                                                     "app:x:1000:1000:app:/home/app:/bin/sh\n")
    assert (root / "etc" / "group").read_text() == "root:x:0:\napp:x:1000:\n"
    assert (root / "home" / "app").is_dir() and (root / "proc").is_dir()
    assert (root / "data" / "keep.txt").read_text() == "original\n"
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777


def test_root_alone_by_default(tmp_path: Path) -> None:
    root = make_busybox_rootfs(tmp_path / "rootfs")
    assert (root / "etc" / "passwd").read_text() == "root:x:0:0:root:/root:/bin/sh\n"
    assert not (root / "home").exists()
