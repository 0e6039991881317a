"""Copying a writable layer (``runtime.trees.copy_tree``): what it keeps, and what it never follows."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_minicontainer.runtime import trees


def test_types_modes_xattrs_whiteouts_and_hard_links_are_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "e" / "f").write_text("x")
    os.link(src / "d" / "e" / "f", src / "hard")
    os.setxattr(src / "d" / "e" / "f", "user.note", b"1")
    os.setxattr(src / "d" / "e", "user.overlay.opaque", b"y")
    (src / "link").symlink_to("/etc/passwd")
    os.mkfifo(src / "fifo")
    if os.geteuid() == 0:  # an overlayfs whiteout: a 0:0 character device
        os.mknod(src / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (src / "d").chmod(0o555)
    trees.copy_tree(str(src), str(tmp_path / "dst"))
    dst = tmp_path / "dst"
    assert (dst / "d" / "e" / "f").read_text() == "x"
    assert (dst / "hard").stat().st_ino == (dst / "d" / "e" / "f").stat().st_ino
    assert os.getxattr(dst / "d" / "e" / "f", "user.note") == b"1"
    assert os.getxattr(dst / "d" / "e", "user.overlay.opaque") == b"y"
    assert os.readlink(dst / "link") == "/etc/passwd"
    assert stat.S_ISFIFO((dst / "fifo").lstat().st_mode)
    assert stat.S_IMODE((dst / "d").stat().st_mode) == 0o555
    if os.geteuid() == 0:
        assert (dst / "gone").lstat().st_rdev == 0 and stat.S_ISCHR((dst / "gone").lstat().st_mode)
    (dst / "d").chmod(0o755)
    (src / "d").chmod(0o755)


def _swap_after_first_look(monkeypatch: pytest.MonkeyPatch, victim: str, swap: Callable[[], None]) -> None:
    """Run ``swap`` right after the copy first looks at ``victim``: a container process racing it."""
    done = []

    def hooked(real: Callable[..., Any]) -> Callable[..., Any]:
        def look(path: Any, *args: Any, **kwargs: Any) -> Any:
            result = real(path, *args, **kwargs)
            if not done and os.fsdecode(path).endswith(victim):
                done.append(True)
                swap()
            return result
        return look

    monkeypatch.setattr(os, "stat", hooked(os.stat))
    monkeypatch.setattr(os, "lstat", hooked(os.lstat))


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_an_entry_swapped_for_a_symlink_mid_copy_is_not_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The layer belongs to a container, whose processes may replace a file or a directory by a
    link to the host's files between the copy's look and its open: the copy must never
    read through it (it copies the link, or nothing)."""
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "key").write_text("host's secret")
    src = tmp_path / "src"
    src.mkdir()
    victim = src / "victim"
    if kind == "file":
        victim.write_text("harmless")
        target = secret / "key"
    else:
        victim.mkdir()
        (victim / "a").write_text("harmless")
        target = secret

    def swap() -> None:
        if victim.is_dir():  # a directory cannot be renamed over: moved away (the listing has been read)
            victim.rename(tmp_path / "moved-away")
        swapped = src / "swapped"
        swapped.symlink_to(target)
        os.replace(swapped, victim)

    _swap_after_first_look(monkeypatch, "victim", swap)
    trees.copy_tree(str(src), str(tmp_path / "dst"))
    monkeypatch.undo()
    copied = [p for p in (tmp_path / "dst").rglob("*") if not p.is_symlink() and p.is_file()]
    assert all("secret" not in p.read_text() for p in copied), copied
    assert not (tmp_path / "dst" / "victim" / "key").exists() or (tmp_path / "dst" / "victim").is_symlink()


def test_diff_does_not_list_a_host_directory_swapped_in_mid_walk(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``diff()`` walks the writable layer from the host: a directory a container process swaps
    for a symlink after the walk listed its parent must not lead the walk into the host."""
    from pytest_minicontainer import _diff

    secret = tmp_path / "host-dir"
    secret.mkdir()
    (secret / "host-secret-name").write_text("x")
    upper = tmp_path / "upper"
    (upper / "victim").mkdir(parents=True)
    (upper / "victim" / "a").write_text("x")
    real_scandir = os.scandir
    swapped = []

    def scandir(path: Any = ".") -> Any:
        if len(swapped) == 1:  # "victim" was looked at and is about to be listed: the container swaps
            (upper / "victim").rename(tmp_path / "moved")
            (upper / "victim").symlink_to(secret)
        swapped.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = _diff.changes(str(upper), [], [], [])
    monkeypatch.undo()
    assert all("host-secret-name" not in path for _kind, path in found), found
    assert ("A", "/victim") in found and len(swapped) == 2


def test_every_function_the_namespace_may_run_exists() -> None:
    import importlib

    from pytest_minicontainer._namespace_calls import ALLOWED

    for module, function in ALLOWED:
        assert callable(getattr(importlib.import_module(module), function)), (module, function)
