"""A stored layer directory written back as an OCI layer blob (what a push sends).

The tests unpack what was written with the project's own unpacker and compare trees by the
store's tree digest (names, types, modes, owners, bytes, link targets, whiteouts, opaque
markers), and read the tar with :mod:`tarfile` to see OCI's own names for the markers.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from pytest_minicontainer._rmtree import remove_tree
from pytest_minicontainer.images._export import export_layer
from pytest_minicontainer.images._unpack import OPAQUE_XATTR, unpack_layer
from pytest_minicontainer.store._treehash import tree_digest
from tests.conftest import nested_dirs


def _layer(root: Path) -> Path:
    """A layer with every kind of entry a layer directory holds."""
    (root / "etc/app").mkdir(parents=True)
    (root / "etc/app/conf").write_text("key=value\n")
    (root / "etc/app/conf").chmod(0o640)
    os.link(root / "etc/app/conf", root / "etc/app/hard")
    (root / "etc/link").symlink_to("/etc/app/conf")
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 64)
    (root / "bin/tool").chmod(0o4755)
    os.mknod(root / "bin/gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))  # a whiteout
    (root / "var/cache").mkdir(parents=True)
    os.setxattr(root / "var/cache", OPAQUE_XATTR, b"y")
    (root / "var/cache/fresh").write_text("new\n")
    os.mkfifo(root / "var/pipe")
    os.setxattr(root / "bin/tool", "user.note", b"\xff\x00binary")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "var/sock"))  # a tar cannot hold a socket: left out
    return root


def _need_whiteouts(tmp_path: Path) -> None:
    try:
        os.mknod(tmp_path / "probe", stat.S_IFCHR, os.makedev(0, 0))
    except PermissionError:
        pytest.skip("this kernel refuses an unprivileged 0:0 character device (overlayfs whiteouts need "
                    "Linux 5.8 or root)")
    os.unlink(tmp_path / "probe")


def test_round_trip_keeps_every_entry_and_marker(tmp_path: Path) -> None:
    _need_whiteouts(tmp_path)
    layer = _layer(tmp_path / "layer")
    result = export_layer(str(layer), str(tmp_path / "blob"))
    data = (tmp_path / "blob").read_bytes()
    assert result["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result["size"] == len(data)
    assert result["diff_id"] == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()
    assert result["media_type"] == "application/vnd.oci.image.layer.v1.tar+gzip"

    with tarfile.open(tmp_path / "blob") as tar:
        members = {m.name: m for m in tar}
    assert "bin/.wh.gone" in members and members["bin/.wh.gone"].isreg()
    assert "var/cache/.wh..wh..opq" in members
    assert members["etc/app/hard"].islnk() and members["etc/app/hard"].linkname == "etc/app/conf"
    assert members["bin/tool"].mode == 0o4755
    assert members["bin/tool"].pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape") \
        == b"\xff\x00binary"
    assert "var/sock" not in members and "var/pipe" in members
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    assert all(not any(k.startswith("SCHILY.xattr.user.overlay") for k in m.pax_headers) for m in members.values())

    out = tmp_path / "unpacked"
    out.mkdir()
    with open(tmp_path / "blob", "rb") as blob:
        unpacked = unpack_layer(blob, out, source="test")
    assert unpacked.diff_digest == result["diff_id"]
    os.unlink(layer / "var/sock")
    assert tree_digest(out) == tree_digest(layer)
    assert os.path.samefile(out / "etc/app/conf", out / "etc/app/hard")


def test_the_same_tree_gives_the_same_blob(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    (layer / "a/b").mkdir(parents=True)
    (layer / "a/b/file").write_text("same\n")
    os.utime(layer / "a/b/file", (1_000_000_000.2, 1_000_000_000.2))
    first = export_layer(str(layer), str(tmp_path / "one"))
    os.utime(layer / "a/b/file", (1_000_000_000.7, 1_000_000_000.7))
    assert export_layer(str(layer), str(tmp_path / "two")) == first  # whole seconds: a tar's own resolution
    (layer / "a/b/file").write_text("other\n")
    assert export_layer(str(layer), str(tmp_path / "three"))["digest"] != first["digest"]


def test_owners_the_callers_own_ids_are_root(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "mine").write_text("x")
    if os.geteuid() == 0:
        (layer / "other").write_text("y")
        os.chown(layer / "other", 1234, 4321)
    export_layer(str(layer), str(tmp_path / "blob"))
    with tarfile.open(tmp_path / "blob") as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar}
    assert owners["mine"] == (0, 0)
    if os.geteuid() == 0:
        assert owners["other"] == (1234, 4321)


def test_a_tree_deeper_than_recursion_allows(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    nested_dirs(layer, 1500)
    try:
        result = export_layer(str(layer), str(tmp_path / "blob"))
    finally:
        remove_tree(layer)  # pytest's own cleanup of tmp_path recurses, and would fail on it
    with tarfile.open(tmp_path / "blob") as tar:
        names = [m.name for m in tar]
    assert len(names) == 1500 and names[-1].count("/") == 1499
    assert result["size"] > 0


def test_dest_is_never_overwritten_and_removed_on_failure(tmp_path: Path) -> None:
    (tmp_path / "layer").mkdir()
    (tmp_path / "taken").write_text("keep me")
    with pytest.raises(FileExistsError):
        export_layer(str(tmp_path / "layer"), str(tmp_path / "taken"))
    assert (tmp_path / "taken").read_text() == "keep me"
    with pytest.raises(FileNotFoundError):
        export_layer(str(tmp_path / "missing"), str(tmp_path / "blob"))
    assert not (tmp_path / "blob").exists()
    (tmp_path / "layer").rmdir()
    (tmp_path / "layer").symlink_to(tmp_path)
    with pytest.raises(OSError):  # a layer reached through a symlink is not followed
        export_layer(str(tmp_path / "layer"), str(tmp_path / "blob"))
    assert not (tmp_path / "blob").exists()
