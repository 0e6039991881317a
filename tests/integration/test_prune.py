"""Reclaiming space (issue 20, items 1 and 2): untagged commits of ended sessions, remove, prune --all.

A user's store grew by every `-n 2` run: untagged ``commit()``s were never reclaimed and
``prune`` said "0B reclaimed".  Rootless stores held trees of subordinate ids their owner
could not delete.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from pytest_minicontainer import Engine, ImageNotFound
from pytest_minicontainer.cli import main


def _commit_some(engine: Engine, rootfs: Path, n: int, tag: str | None = None) -> list[str]:
    digests = []
    for i in range(n):
        with engine.run(f"rootfs:{rootfs}", command=()) as c:
            c.exec(f"dd if=/dev/urandom of=/data{i} bs=64k count=16 2>/dev/null", check=True)
            digests.append(c.commit(tag).digest if tag else c.commit().digest)
    return digests


def _digests(engine: Engine) -> set[str]:
    return {i.digest for i in engine.store.list_images()}


def test_untagged_commits_are_reclaimed_once_their_session_ended(tmp_path: Path, busybox_rootfs: Path) -> None:
    store = tmp_path / "store"
    with Engine(store=store) as first:
        untagged = _commit_some(first, busybox_rootfs, 3)
        kept = _commit_some(first, busybox_rootfs, 1, tag="keep:1")
        with Engine(store=store) as other:  # while the first session runs, its work is safe
            other.prune()
            assert set(untagged) <= _digests(other)
    with Engine(store=store) as later:
        freed = later.prune()
        assert freed >= 3 * (1 << 20)  # three 1 MiB layers, said truthfully
        left = _digests(later)
        assert not set(untagged) & left and set(kept) <= left
        assert later.prune() < (1 << 20)  # nothing more of that size to find


def test_engine_remove_removes_one_image(tmp_path: Path, busybox_rootfs: Path) -> None:
    with Engine(store=tmp_path / "store") as engine:
        a, b = _commit_some(engine, busybox_rootfs, 1, tag="a:1")[0], _commit_some(engine, busybox_rootfs, 1, "b:1")[0]
        engine.remove(engine.image("a:1"))
        with pytest.raises(ImageNotFound):
            engine.image("a:1", pull="never")  # never ask Docker Hub for it
        assert a not in _digests(engine) and b in _digests(engine)
        assert engine.prune() >= (1 << 20)  # its layer went with the next prune


def _owned_rootfs(path: Path) -> Path:
    """A rootfs tarball with files of uid 1000 (subordinate ids on the host, rootless)."""
    with tarfile.open(path, "w") as tar:
        for name, uid in (("home", 1000), ("home/app", 1000), ("home/app/f", 1000), ("etc", 0)):
            info = tarfile.TarInfo(name)
            info.uid = info.gid = uid
            if name.endswith("f"):
                info.size = 3
                tar.addfile(info, io.BytesIO(b"abc"))
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o500  # not even writable by its owner
                tar.addfile(info)
    return path


def test_prune_all_leaves_a_store_its_owner_can_delete(tmp_path: Path, busybox_rootfs: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    with Engine(store=store) as engine:
        engine.image(f"rootfs:{_owned_rootfs(tmp_path / 'owned.tar')}")
        _commit_some(engine, busybox_rootfs, 1, tag="tagged:1")
        # a RUN --mount=type=cache directory with a file of another id and a read-only directory
        engine.build(f"FROM rootfs:{busybox_rootfs}\nRUN --mount=type=cache,target=/c touch /c/f && "
                     "(chown 1000 /c/f 2>/dev/null; mkdir -p /c/d/e && chmod 500 /c/d)\n", tmp_path)
        assert any(engine.store.cache_mounts.iterdir())
    assert main(["--store", str(store), "prune", "--all"]) == 0
    assert "Total reclaimed space" in capsys.readouterr().out
    with Engine(store=store) as engine:
        assert engine.store.list_images() == []
    shutil.rmtree(store)  # as its owner, without any help
    assert not store.exists()
