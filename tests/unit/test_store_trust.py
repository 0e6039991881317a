"""A store another user controls is refused before anything is read from it or made in it.

Issue 14, finding 1: with the store pointed at a directory another user owns or can write
to, root's containers ran that user's planted programs.  Each case is refused with a
StoreError naming the path, the owner or mode, and the fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pytest_minicontainer import Engine, StoreError
from pytest_minicontainer.cli import main
from pytest_minicontainer.store import Store

from .test_store import make_layer, save

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user (nobody) needs root: "
                             "run the suite as root (CI does both)")
as_user = pytest.mark.skipif(os.geteuid() == 0, reason="a root-owned store is only foreign to an ordinary user: "
                             "run the suite as an unprivileged user (CI does both)")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_store_is_the_owners_alone(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "store"
    Store(root)
    assert mode(root) == 0o700
    assert {mode(p) for p in root.iterdir() if p.is_dir()} == {0o700}


def test_tag_file_is_private(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.tag("trust:1", save(store, "a", make_layer(store, {"f": b"x"})).digest)
    assert mode(tmp_path / "store" / "tags.json") == 0o600


def test_an_old_store_open_to_reading_is_closed(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    Store(root)
    assert mode(root) == 0o700


def test_store_root_writable_by_others_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    os.chmod(root, 0o777)
    with pytest.raises(StoreError, match=r"writable by other users \(mode 0777\)[\s\S]*fix: chmod go-w"):
        Store(root)
    assert list(root.iterdir()) == []  # nothing made in it


def test_a_store_directory_replaced_by_a_symlink_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    Store(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.rename(root / "run", tmp_path / "old-run")
    (root / "run").symlink_to(elsewhere)
    with pytest.raises(StoreError, match=r"run is a symlink[\s\S]*fix: remove"):
        Store(root)


def test_a_symlink_in_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # not sticky: anyone may replace the link
    (shared / "store").symlink_to(real)
    with pytest.raises(StoreError, match=f"{shared} is writable by other users"):
        Store(shared / "store")


def test_a_symlink_along_a_trusted_path_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    Store(tmp_path / "link" / "store")
    assert mode(real / "store") == 0o700 and (real / "store" / "layers").is_dir()


@as_root
def test_root_refuses_a_store_another_user_owns(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    os.chown(root, NOBODY, NOBODY)
    with pytest.raises(StoreError, match=r"belongs to (\w+ \()?uid 65534\)?, not to you[\s\S]*fix: use a store"):
        Engine(store=root)
    assert list(root.iterdir()) == []


@as_root
def test_root_refuses_a_store_below_another_users_directory(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(StoreError, match="who could swap what lies below it"):
        Store(theirs / "store")
    assert not (theirs / "store").exists()


@as_root
def test_root_refuses_another_users_symlink_in_a_sticky_directory(tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (sticky / "store").symlink_to(real)
    os.lchown(sticky / "store", NOBODY, NOBODY)
    with pytest.raises(StoreError, match=r"is a symlink of (\w+ \()?uid 65534"):
        Store(sticky / "store")


@as_user
def test_a_root_owned_store_is_a_clear_error_for_a_user(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(StoreError, match=r"/usr/share belongs to root \(uid 0\), not to you"):
        Store(Path("/usr/share"))
    assert main(["--store", "/usr/share", "images"]) != 0
    err = capsys.readouterr().err
    assert "belongs to root (uid 0)" in err and "Traceback" not in err
