"""Unpacking one layer tar into overlayfs format: every entry type, and every hostile case."""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys
import tarfile
from pathlib import Path

import pytest

from pytest_minicontainer.errors import ImageError
from pytest_minicontainer.images import OPAQUE_XATTR, unpack_layer
from pytest_minicontainer.runtime.trees import remove_tree
from pytest_minicontainer.store._treehash import tree_digest
from tests.imagetools import TarBuilder, sha256

ROOT = os.geteuid() == 0


def unpack(blob: bytes, dest: Path, name: str = "layer.tar") -> None:
    dest.mkdir(exist_ok=True)
    unpack_layer(io.BytesIO(blob), dest, source=name)


def kind(path: Path) -> str:
    st = os.lstat(path)
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"), (stat.S_ISREG, "file"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chardev")):
        if test(st.st_mode):
            return name
    return "other"


def is_whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """(layer dir, sentinel dir next to it): nothing may ever appear in the sentinel dir."""
    sentinel = tmp_path / "outside"
    sentinel.mkdir()
    (sentinel / "keep").write_text("untouched")
    return tmp_path / "layer", sentinel


def assert_untouched(sentinel: Path) -> None:
    assert sorted(p.name for p in sentinel.iterdir()) == ["keep"]
    assert (sentinel / "keep").read_text() == "untouched"


@pytest.mark.parametrize("compression", ["tar", "gzip", "zstd"])
def test_entry_types_modes_and_times(tmp_path: Path, compression: str) -> None:
    blob = (TarBuilder(mtime=1_500_000_000)
            .dir("etc", 0o755).file("etc/hostname", b"box\n", 0o644)
            .file("bin/su", b"#!setuid", 0o4755).file("bin/wall", b"x", 0o2755)
            .dir("tmp", 0o1777).dir("ro", 0o555).file("ro/inside", b"r", 0o444)
            .symlink("bin/sh", "/bin/busybox").symlink("etc/rel", "../bin/su")
            .hardlink("bin/su2", "bin/su").fifo("run/fifo", 0o620)
            .chardev("dev/null", 1, 3)
            .bytes(compression))
    dest = tmp_path / "l"
    dest.mkdir()
    result = unpack_layer(io.BytesIO(blob), dest, source="x")
    assert result.compression == compression
    assert result.blob_digest == sha256(blob)
    assert (dest / "etc/hostname").read_bytes() == b"box\n"
    assert stat.S_IMODE(os.lstat(dest / "bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(dest / "bin/wall").st_mode) & 0o2000 or not ROOT
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(dest / "ro").st_mode) == 0o555
    assert os.readlink(dest / "bin/sh") == "/bin/busybox"  # absolute target kept verbatim
    assert os.readlink(dest / "etc/rel") == "../bin/su"
    assert os.lstat(dest / "bin/su2").st_ino == os.lstat(dest / "bin/su").st_ino
    assert kind(dest / "run/fifo") == "fifo"
    assert os.lstat(dest / "etc/hostname").st_mtime == 1_500_000_000
    assert os.lstat(dest / "bin/sh").st_mtime == 1_500_000_000
    assert os.lstat(dest / "etc").st_mtime == 1_500_000_000  # set after its children
    if ROOT:
        assert kind(dest / "dev/null") == "chardev"
    else:
        assert not (dest / "dev/null").exists()  # device nodes skipped rootless
    os.chmod(dest / "ro", 0o755)


def test_ownership_kept_as_root_squashed_otherwise(tmp_path: Path) -> None:
    blob = TarBuilder().file("f", b"x", 0o4750, uid=1234, gid=5678).dir("d", uid=42, gid=43).bytes()
    unpack(blob, tmp_path / "l")
    st = os.lstat(tmp_path / "l/f")
    if ROOT:
        assert (st.st_uid, st.st_gid) == (1234, 5678)
        assert (os.lstat(tmp_path / "l/d").st_uid, os.lstat(tmp_path / "l/d").st_gid) == (42, 43)
        assert stat.S_IMODE(st.st_mode) == 0o4750  # chown before chmod keeps setuid
    else:
        assert st.st_uid == os.geteuid()
        assert stat.S_IMODE(st.st_mode) & 0o4000


def test_owners_not_given_are_returned_for_the_store(tmp_path: Path) -> None:
    """Unprivileged, non-root owners come back in the result (the store sets them where mapped);
    an entry the layer later replaces or removes is not in the list."""
    blob = (TarBuilder().dir("d", uid=42, gid=43).file("d/f", b"x", 0o600, uid=1000, gid=1000)
            .file("root-owned", b"r").file("gone/x", b"1", uid=7, gid=7).file("gone", b"now a file")
            .symlink("link", "d/f").bytes())
    (tmp_path / "l").mkdir()
    result = unpack_layer(io.BytesIO(blob), tmp_path / "l", source="layer.tar", is_root=False)
    assert sorted(result.owners) == [("d", 42, 43), ("d/f", 1000, 1000)]
    if ROOT:  # root gives them itself: nothing is left for the store
        (tmp_path / "r").mkdir()
        as_root = unpack_layer(io.BytesIO(blob), tmp_path / "r", source="layer.tar", is_root=True)
        assert as_root.owners == () and os.lstat(tmp_path / "r/d/f").st_uid == 1000


def test_whiteouts_become_devices_and_opaque_dirs_an_xattr(tmp_path: Path) -> None:
    blob = (TarBuilder().whiteout("etc/gone").opaque("var/lib").file("var/lib/new", b"n")
            .file(".wh..wh.plnk/123", b"aufs").bytes())
    unpack(blob, tmp_path / "l")
    layer = tmp_path / "l"
    assert is_whiteout(layer / "etc/gone")
    assert is_opaque(layer / "var/lib")
    assert not is_opaque(layer / "var")
    assert (layer / "var/lib/new").read_bytes() == b"n"
    assert not (layer / ".wh..wh.plnk").exists()
    assert sorted(os.listdir(layer / "var/lib")) == ["new"]  # the marker itself is not a file


def test_directory_over_directory_merges_other_types_replace(tmp_path: Path) -> None:
    blob = (TarBuilder()
            .dir("d", 0o700).file("d/a", b"a").dir("d", 0o750)        # merge, last mode wins
            .file("f", b"old").symlink("f", "/new")                    # symlink replaces file
            .dir("x").file("x/child", b"c").file("x", b"now a file")   # file replaces dir
            .file("y", b"file").dir("y").file("y/z", b"z")             # dir replaces file
            .bytes())
    unpack(blob, tmp_path / "l")
    layer = tmp_path / "l"
    assert (layer / "d/a").read_bytes() == b"a"
    assert stat.S_IMODE(os.lstat(layer / "d").st_mode) == 0o750
    assert os.readlink(layer / "f") == "/new"
    assert (layer / "x").read_bytes() == b"now a file"
    assert (layer / "y/z").read_bytes() == b"z"


def test_whiteout_then_recreate_in_same_layer_is_opaque(tmp_path: Path) -> None:
    unpack(TarBuilder().whiteout("d").dir("d").file("d/new", b"n").bytes(), tmp_path / "l")
    assert kind(tmp_path / "l/d") == "dir"
    assert is_opaque(tmp_path / "l/d")


def test_implicit_parents_and_root_entry(tmp_path: Path) -> None:
    unpack(TarBuilder().dir("./", 0o755).file("./a/b/c/file", b"deep").bytes(), tmp_path / "l")
    assert (tmp_path / "l/a/b/c/file").read_bytes() == b"deep"
    assert stat.S_IMODE(os.lstat(tmp_path / "l/a/b").st_mode) == 0o755


def test_empty_layer(tmp_path: Path) -> None:
    unpack(TarBuilder().bytes("gzip"), tmp_path / "l")
    assert os.listdir(tmp_path / "l") == []


def test_large_file_streams(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"tail"
    unpack(TarBuilder().file("big", data).bytes("gzip"), tmp_path / "l")
    assert (tmp_path / "l/big").read_bytes() == data


def test_diff_id_is_digest_of_the_uncompressed_tar(tmp_path: Path) -> None:
    raw = TarBuilder().file("a", b"a").bytes()
    dest = tmp_path / "l"
    dest.mkdir()
    result = unpack_layer(io.BytesIO(gzip.compress(raw)), dest, source="x")
    assert result.diff_digest == sha256(raw)


def test_zstd_without_the_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = TarBuilder().file("a", b"a").bytes("zstd")
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(ImageError, match=r"pytest-minicontainer\[zstd\]"):
        unpack(blob, tmp_path / "l")


# -- hostile and broken layers ---------------------------------------------------------------

HOSTILE = {
    "dotdot": (TarBuilder().file("../outside/evil", b"x"), r"'\.\./outside/evil'.*escapes"),
    "dotdot-nested": (TarBuilder().file("a/../../outside/evil", b"x"), r"escapes"),
    "absolute": (TarBuilder().file("/etc/evil", b"x"), r"'/etc/evil'.*absolute"),
    "symlink-parent-absolute": (
        TarBuilder().symlink("esc", "OUTSIDE").file("esc/evil", b"x"),
        r"'esc/evil'.*parent 'esc'.*symbolic link"),
    "symlink-parent-relative": (
        TarBuilder().symlink("esc", "../outside").file("esc/evil", b"x"), r"parent 'esc'.*symbolic link"),
    "symlink-parent-deep": (
        TarBuilder().dir("a").symlink("a/b", "../../outside").file("a/b/c/evil", b"x"), r"parent 'a/b'"),
    "hardlink-outside": (TarBuilder().hardlink("evil", "../outside/keep"), r"'evil'.*hard link.*escapes"),
    "hardlink-absolute": (TarBuilder().hardlink("evil", "/etc/passwd"), r"hard link.*absolute"),
    "hardlink-not-in-layer": (TarBuilder().hardlink("evil", "etc/passwd"), r"not in the image"),
    "hardlink-through-symlink": (
        TarBuilder().symlink("s", "../outside").hardlink("evil", "s/keep"), r"not in the image"),
    "symlink-loop": (
        TarBuilder().symlink("a", "b").symlink("b", "a").file("a/x", b"x"), r"parent 'a'.*symbolic link"),
    "file-parent": (TarBuilder().file("f", b"x").file("f/g", b"y"), r"parent 'f' is not a directory"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_is_refused_and_nothing_escapes(sandbox: tuple[Path, Path], case: str) -> None:
    layer, sentinel = sandbox
    builder, message = HOSTILE[case]
    blob = builder.bytes()
    if "OUTSIDE" in blob.decode("latin-1"):
        blob = TarBuilder().symlink("esc", str(sentinel)).file("esc/evil", b"x").bytes()
    with pytest.raises(ImageError, match=message) as info:
        unpack(blob, layer, name="hostile.tar")
    assert "hostile.tar" in str(info.value)  # names the file and the member
    assert_untouched(sentinel)


def test_corrupt_gzip(sandbox: tuple[Path, Path]) -> None:
    layer, sentinel = sandbox
    blob = bytearray(TarBuilder().file("a", os.urandom(50000)).bytes("gzip"))
    blob[200:260] = b"\xff" * 60
    with pytest.raises(ImageError, match=r"bad\.tgz.*(corrupt gzip|truncated|diff)"):
        unpack(bytes(blob), layer, name="bad.tgz")
    assert_untouched(sentinel)


def test_truncated_gzip(sandbox: tuple[Path, Path]) -> None:
    layer, _ = sandbox
    blob = TarBuilder().file("a", os.urandom(50000)).bytes("gzip")
    with pytest.raises(ImageError, match=r"cut\.tgz.*corrupt gzip stream: unexpected end"):
        unpack(blob[: len(blob) // 2], layer, name="cut.tgz")


@pytest.mark.parametrize("cut", [700, 2048 + 100, 1000 + 512 * 3])
def test_truncated_tar(sandbox: tuple[Path, Path], cut: int) -> None:
    layer, sentinel = sandbox
    blob = TarBuilder().file("a", b"x" * 1500).file("b", b"y" * 1500).bytes()
    with pytest.raises(ImageError, match=r"cut\.tar.*(truncated|corrupt)"):
        unpack(blob[:cut], layer, name="cut.tar")
    assert_untouched(sentinel)


def test_garbage_after_members_is_refused(tmp_path: Path) -> None:
    blob = TarBuilder().file("a", b"x").bytes()
    blob = blob[:1024] + b"garbage!" * 64 + blob[1024 + 512:]
    with pytest.raises(ImageError, match=r"g\.tar.*(garbage|corrupt)"):
        unpack(blob, tmp_path / "l", name="g.tar")


def test_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"n\.tar.*not a tar archive"):
        unpack(b"hello world" * 100, tmp_path / "l", name="n.tar")


def test_whiteout_below_a_file_of_the_same_layer_is_dropped(sandbox: tuple[Path, Path]) -> None:
    # umoci repack writes exactly this after replacing the directory "sub" with a file
    layer, sentinel = sandbox
    unpack(TarBuilder().file("opt/sub", b"now a file").whiteout("opt/sub/y").bytes(), layer)
    assert (layer / "opt/sub").read_bytes() == b"now a file"
    blob = TarBuilder().symlink("s", str(sentinel)).whiteout("s/keep").bytes()
    unpack(blob, tmp := layer.parent / "l2")
    assert kind(tmp / "s") == "symlink"
    assert_untouched(sentinel)


def test_stream_ending_right_after_file_data_is_complete(tmp_path: Path) -> None:
    # umoci insert writes layers without padding or end blocks; Go's archive/tar accepts them
    blob = TarBuilder().file("a", b"x" * 100).file("b", b"only this").bytes()
    cut = 512 * 3 + len(b"only this")  # header a, data a, header b, data b unpadded
    unpack(blob[:cut], tmp_path / "l")
    assert (tmp_path / "l/b").read_bytes() == b"only this"
    with pytest.raises(ImageError, match="truncated"):
        unpack(blob[:cut + 10], tmp_path / "l2")  # partial padding is not
    unpack(blob[:2048], tmp_path / "l3")  # ends at a header boundary without end blocks
    assert (tmp_path / "l3/b").read_bytes() == b"only this"


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_highly_compressible_data(tmp_path: Path, compression: str) -> None:
    data = b"\0" * (40 << 20) + b"end"  # 40 MiB that compress to a few kB: output is bounded per read
    blob = TarBuilder().file("zeros", data).file("after", b"a").bytes(compression)
    unpack(blob, tmp_path / "l")
    assert os.path.getsize(tmp_path / "l/zeros") == len(data)
    assert (tmp_path / "l/zeros").read_bytes()[-3:] == b"end"


def test_truncated_zstd(tmp_path: Path) -> None:
    blob = TarBuilder().file("a", os.urandom(300_000)).file("b", b"b").bytes("zstd")
    with pytest.raises(ImageError, match=r"z\.tar\.zst.*(truncated|corrupt)"):
        unpack(blob[: len(blob) // 2], tmp_path / "l", name="z.tar.zst")


def test_concatenated_gzip_members(tmp_path: Path) -> None:
    raw = TarBuilder().file("a", b"a" * 3000).file("b", b"b").bytes()
    blob = gzip.compress(raw[:2048]) + gzip.compress(raw[2048:])  # pigz -i style
    unpack(blob, tmp_path / "l")
    assert (tmp_path / "l/b").read_bytes() == b"b"


# -- tar dialects: our reader must understand what real tools write ----------------------------


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_unicode_and_big_ids(tmp_path: Path, fmt: int) -> None:
    deep = "/".join(["directory-with-a-long-name"] * 6) + "/f\u00e9\u00e8-\u2603.txt"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8") as tar:
        info = tarfile.TarInfo(deep)
        info.size = 5
        info.mode = 0o640
        info.mtime = 1_234_567_890
        info.uid = info.gid = 3_000_000  # > 0o7777777: base-256 (GNU) or pax
        tar.addfile(info, io.BytesIO(b"hello"))
        link = tarfile.TarInfo("short")
        link.type = tarfile.LNKTYPE
        link.linkname = deep
        tar.addfile(link)
        sym = tarfile.TarInfo("sym-" + "x" * 120)
        sym.type = tarfile.SYMTYPE
        sym.linkname = "/" + "t" * 150
        tar.addfile(sym)
    dest = tmp_path / "l"
    unpack(buf.getvalue(), dest)
    assert (dest / deep).read_bytes() == b"hello"
    assert os.lstat(dest / "short").st_ino == os.lstat(dest / deep).st_ino
    assert os.readlink(dest / ("sym-" + "x" * 120)) == "/" + "t" * 150
    assert os.lstat(dest / deep).st_mtime == 1_234_567_890
    if ROOT:
        assert os.lstat(dest / deep).st_uid == 3_000_000


def test_global_pax_header_applies_to_following_members(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"mtime": "1000000000"}) as tar:
        info = tarfile.TarInfo("a")
        info.size = 1
        info.mtime = 0
        tar.addfile(info, io.BytesIO(b"a"))
    unpack(buf.getvalue(), tmp_path / "l")
    assert (tmp_path / "l/a").read_bytes() == b"a"


def test_user_xattrs_applied_overlay_xattrs_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("f", "d"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.REGTYPE if name == "f" else tarfile.DIRTYPE
            info.pax_headers = {"SCHILY.xattr.user.note": "kept", "SCHILY.xattr.user.overlay.opaque": "y",
                                "SCHILY.xattr.trusted.overlay.redirect": "/x"}
            tar.addfile(info, io.BytesIO(b""))
    dest = tmp_path / "l"
    unpack(buf.getvalue(), dest)
    for name in ("f", "d"):
        assert os.getxattr(dest / name, "user.note") == b"kept"
        assert not is_opaque(dest / name)  # only .wh..wh..opq may make a directory opaque


def test_gnu_sparse_files_are_refused_clearly(tmp_path: Path) -> None:
    blob = bytearray(TarBuilder().file("sparse", b"").bytes())
    blob[156:157] = b"S"
    checksum = sum(blob[:148]) + 256 + sum(blob[156:512])
    blob[148:156] = f"{checksum:06o}\0 ".encode()
    with pytest.raises(ImageError, match=r"s\.tar.*GNU sparse files are not supported"):
        unpack(bytes(blob), tmp_path / "l", name="s.tar")


def test_gnu_tar_output(tmp_path: Path) -> None:
    """A layer written by GNU tar itself (long names, hard links, a fifo, setuid)."""
    import shutil
    import subprocess

    if shutil.which("tar") is None:
        pytest.skip("GNU tar is missing: apt-get install tar")
    src = tmp_path / "src"
    deep = src / ("d" * 90) / ("e" * 90)
    deep.mkdir(parents=True)
    (deep / ("f" * 120)).write_bytes(b"long")
    os.link(deep / ("f" * 120), src / "hard")
    os.mkfifo(src / "fifo")
    (src / "suid").write_bytes(b"s")
    os.chmod(src / "suid", 0o4711)
    layer = tmp_path / "layer.tar"
    for fmt in ("gnu", "posix", "oldgnu"):
        subprocess.run(["tar", "-C", src, f"--format={fmt}", "-cf", layer, "."], check=True)
        dest = tmp_path / f"out-{fmt}"
        unpack(layer.read_bytes(), dest)
        assert (dest / ("d" * 90) / ("e" * 90) / ("f" * 120)).read_bytes() == b"long"
        assert os.lstat(dest / "hard").st_nlink == 2
        assert kind(dest / "fifo") == "fifo"
        assert stat.S_IMODE(os.lstat(dest / "suid").st_mode) == 0o4711


def test_depth_is_limited_and_deep_trees_are_handled(tmp_path: Path) -> None:
    """256 levels unpack (parents made without recursion), are hashed and removed; deeper is refused."""
    name = "a/" * 255 + "f"
    unpack(TarBuilder().file(name, b"deep").bytes(), tmp_path / "layer")
    assert (tmp_path / "layer" / name).read_bytes() == b"deep"
    assert tree_digest(tmp_path / "layer").startswith("sha256:")
    remove_tree(str(tmp_path / "layer"))
    assert not (tmp_path / "layer").exists()
    with pytest.raises(ImageError, match=r"'(a/){256}f'.*nests 257 levels deep.*at most 256"):
        unpack(TarBuilder().file("a/" * 256 + "f", b"deep").bytes(), tmp_path / "deeper")


def test_a_plain_archive_is_not_a_layer(tmp_path: Path) -> None:
    """ADD of a tar in a Containerfile: ``.wh.`` names are files like any other, and absolute
    names lose their "/" as tar does (an image layer refuses both readings)."""
    blob = (TarBuilder().whiteout("etc/passwd").opaque("etc").file(".wh..wh.aufs", b"a")
            .file("/abs/f", b"abs").hardlink("/abs/g", "/abs/f").bytes())
    dest = tmp_path / "layer"
    dest.mkdir()
    unpack_layer(io.BytesIO(blob), dest, source="add.tar", layer=False)
    assert sorted(p.name for p in (dest / "etc").iterdir()) == [".wh..wh..opq", ".wh.passwd"]
    assert kind(dest / "etc" / ".wh.passwd") == "file" and not is_opaque(dest / "etc")
    assert (dest / ".wh..wh.aufs").read_bytes() == b"a"
    assert (dest / "abs" / "g").read_bytes() == b"abs"
    assert (dest / "abs" / "f").stat().st_ino == (dest / "abs" / "g").stat().st_ino
    with pytest.raises(ImageError, match="absolute"):
        unpack(blob, tmp_path / "as-layer")
