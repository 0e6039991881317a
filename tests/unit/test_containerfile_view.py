"""Reading an image's files on the host (COPY --from, destinations) and staging COPY layers."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from pathlib import Path

import pytest

from pytest_minicontainer.build._context import Source
from pytest_minicontainer.build._copy import _archive, stage_files
from pytest_minicontainer.build._executor import _chown_commands
from pytest_minicontainer.build._ignore import IgnoreRules
from pytest_minicontainer.build._plan import Step
from pytest_minicontainer.image import Image, ImageConfig
from pytest_minicontainer.images._view import ImageView


def layers(tmp_path: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        d = tmp_path / f"layer{i}"
        d.mkdir()
        out.append(d)
    return out


def xattrs_work(path: Path) -> bool:
    try:
        os.setxattr(path, "user.overlay.opaque", b"y")
    except OSError:
        return False
    return True


def test_upper_layers_win_and_symlinks_resolve_inside_the_image(tmp_path: Path) -> None:
    low, high = layers(tmp_path, 2)
    (low / "usr" / "lib").mkdir(parents=True)
    (low / "usr" / "lib" / "a").write_text("low")
    (low / "lib").symlink_to("usr/lib")
    (high / "usr" / "lib").mkdir(parents=True)
    (high / "usr" / "lib" / "a").write_text("high")
    (high / "abs").symlink_to("/usr/lib/a")
    view = ImageView(Image(digest="sha256:x", layer_dirs=(str(low), str(high))))
    assert view.resolve("/lib/a") == "usr/lib/a"
    assert Path(view.entry("usr/lib/a") or "").read_text() == "high"
    assert view.resolve("/abs") == "usr/lib/a"  # absolute links point into the image, not the host
    assert view.resolve("/abs", follow_last=False) == "abs"
    assert view.resolve("/nothing/here") is None
    assert view.listdir("usr/lib") == ["a"]
    assert view.resolve_parent("/lib/new/dir") == "usr/lib/new/dir"


def test_opaque_directories_hide_lower_entries(tmp_path: Path) -> None:
    low, high = layers(tmp_path, 2)
    (low / "d").mkdir()
    (low / "d" / "old").write_text("old")
    (high / "d").mkdir()
    (high / "d" / "new").write_text("new")
    if not xattrs_work(high / "d"):
        pytest.skip(f"the filesystem of {tmp_path} has no user xattrs: set TMPDIR to an ext4/xfs/tmpfs path")
    view = ImageView(Image(digest="sha256:x", layer_dirs=(str(low), str(high))))
    assert view.listdir("d") == ["new"]
    assert view.entry("d/old") is None


def test_whiteouts_delete_names(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a whiteout (a 0:0 character device) needs real root: run this test as root")
    low, high = layers(tmp_path, 2)
    (low / "gone").write_text("x")
    (low / "kept").write_text("x")
    os.mknod(high / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    view = ImageView(Image(digest="sha256:x", layer_dirs=(str(low), str(high))))
    assert view.entry("gone") is None
    assert view.listdir("") == ["kept"]


def test_host_dirs_are_the_bottom_layer(tmp_path: Path) -> None:
    (layer,) = layers(tmp_path, 1)
    (layer / "etc").mkdir()
    view = ImageView(Image(digest="sha256:x", layer_dirs=(str(layer),), host_dirs=("/etc",)))
    assert view.entry("etc/passwd") == "/etc/passwd"
    assert "passwd" in view.listdir("etc")


def test_copy_follows_symlinked_destinations_and_keeps_existing_modes(tmp_path: Path) -> None:
    (base,) = layers(tmp_path, 1)
    (base / "usr" / "lib").mkdir(parents=True)
    (base / "usr" / "lib").chmod(0o750)
    (base / "lib").symlink_to("usr/lib")
    ctx = tmp_path / "ctx"
    (ctx / "tree" / "sub").mkdir(parents=True)
    (ctx / "tree" / "sub" / "f").write_text("f")
    (ctx / "tree" / "link").symlink_to("sub/f")
    from pytest_minicontainer.build._context import Source

    step = Step(1, "COPY", "", ImageConfig(), sources=[Source(str(ctx / "tree"), "tree")], dest="/lib/pkg",
                chmod=None)
    out = tmp_path / "out"
    out.mkdir()
    view = ImageView(Image(digest="sha256:x", layer_dirs=(str(base),)))
    owned = stage_files(step, out, view, source_view=None, ignore=IgnoreRules(), owner=None,
                        scratch=lambda: tmp_path)
    assert owned == []  # nothing to chown without --chown
    assert not (out / "lib").exists()
    assert (out / "usr" / "lib" / "pkg" / "sub" / "f").read_text() == "f"
    assert os.readlink(out / "usr" / "lib" / "pkg" / "link") == "sub/f"
    assert (out / "usr" / "lib").stat().st_mode & 0o777 == 0o750


def _base_with_local_share(tmp_path: Path) -> ImageView:
    (base,) = layers(tmp_path, 1)
    (base / "usr" / "local" / "share").mkdir(parents=True)
    (base / "usr" / "local" / "share" / "base.txt").write_text("base")
    return ImageView(Image(digest="sha256:x", layer_dirs=(str(base),)))


def _scratch(tmp_path: Path) -> Path:
    n = len(list(tmp_path.glob("scratch-*")))
    (tmp_path / f"scratch-{n}").mkdir()
    return tmp_path / f"scratch-{n}"


def test_chown_covers_the_copied_entries_and_created_dirs_only(tmp_path: Path) -> None:
    view = _base_with_local_share(tmp_path)
    ctx = tmp_path / "ctx"
    (ctx / "dir" / "share").mkdir(parents=True)
    (ctx / "dir" / "share" / "new.txt").write_text("new")
    (ctx / "dir" / "top.txt").write_text("top")
    with tarfile.open(ctx / "t.tar", "w") as tar:
        tar.add(ctx / "dir" / "top.txt", arcname="lib/x")
    owner = (os.getuid(), os.getgid())  # as root applied (a no-op), rootless recorded: the list is the same

    def staged(kind: str, source: str, dest: str) -> list[str]:
        step = Step(1, kind, "", ImageConfig(), sources=[Source(str(ctx / source), source)], dest=dest,
                    dest_is_dir=True, chown="x")
        out = _scratch(tmp_path)
        return stage_files(step, out, view, source_view=None, ignore=IgnoreRules(), owner=owner,
                           scratch=lambda: _scratch(tmp_path))

    owned = staged("COPY", "dir", "/usr/local/")
    assert sorted(owned) == ["usr/local/share", "usr/local/share/new.txt", "usr/local/top.txt"]
    assert sorted(staged("COPY", "dir", "/opt/new/")) == [
        "opt", "opt/new", "opt/new/share", "opt/new/share/new.txt", "opt/new/top.txt"]
    assert sorted(staged("ADD", "t.tar", "/usr/local/")) == ["usr/local/lib", "usr/local/lib/x"]
    assert sorted(staged("COPY", "dir/top.txt", "/usr/local/share/")) == ["usr/local/share/top.txt"]

    # rootless: one chown -R for what is new to the image, single entries for the rest
    assert _chown_commands((1000, 1000), [*owned, "opt", "opt/new", "opt/new/a", "opt-b"], view) == [
        ["chown", "-hR", "1000:1000", "/opt", "/opt-b", "/usr/local/share/new.txt", "/usr/local/top.txt"],
        ["chown", "-h", "1000:1000", "/usr/local/share"]]


def test_long_chown_lists_are_split(tmp_path: Path) -> None:
    view = _base_with_local_share(tmp_path)
    owned = [f"usr/local/share/{'f' * 200}{n}" for n in range(1000)]
    commands = _chown_commands((5, 6), owned, view)
    assert len(commands) > 1
    assert sorted(p for c in commands for p in c[3:]) == sorted("/" + o for o in owned)
    assert all(sum(len(p) + 1 for p in c) < 128 * 1024 for c in commands)


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.LNKTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def test_add_takes_only_real_tar_archives(tmp_path: Path) -> None:
    tar = _tar({"a/" + "long" * 40: b"x"})
    cases = {
        "plain.tar": (tar, "tar"),
        "t.tar.gz": (gzip.compress(tar), "gzip"),
        "t.tar.bz2": (bz2.compress(tar), "bzip2"),
        "t.tar.xz": (lzma.compress(tar), "xz"),
        "zeros.img": (b"\0" * 2048 + b"hello", None),  # tarfile.is_tarfile says yes to this
        "empty": (b"", None),
        "text.gz": (gzip.compress(b"not a tar\n" * 100), None),
        "text.bz2": (bz2.compress(b"x" * 1000), None),
        "bad.gz": (b"\x1f\x8b\x08garbage", None),
        "text": (b"a" * 1024, None),
        "bad-checksum.tar": (tar[:148] + b"0000000\0" + tar[156:], None),
    }
    try:
        import zstandard  # the optional extra
    except ImportError:
        pass
    else:
        cases["t.tar.zst"] = (zstandard.ZstdCompressor().compress(tar), "zstd")
        cases["text.zst"] = (zstandard.ZstdCompressor().compress(b"x" * 1000), None)
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert _archive(str(tmp_path / name)) == expected, name


def test_add_extracts_whiteout_names_as_ordinary_files(tmp_path: Path) -> None:
    (base,) = layers(tmp_path, 1)
    (base / "etc").mkdir()
    (base / "etc" / "passwd").write_text("root")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "wh.tar").write_bytes(_tar({"etc/.wh.passwd": b"w", "etc/.wh..wh..opq": b"o", ".wh.dir/f": b"f",
                                       "etc/new": b"n"}, links={"etc/hard": "etc/.wh.passwd"}))
    step = Step(1, "ADD", "", ImageConfig(), sources=[Source(str(ctx / "wh.tar"), "wh.tar")], dest="/",
                dest_is_dir=True)
    out = tmp_path / "out"
    out.mkdir()
    stage_files(step, out, ImageView(Image(digest="sha256:x", layer_dirs=(str(base),))), source_view=None,
                ignore=IgnoreRules(), owner=None, scratch=lambda: _scratch(tmp_path))
    assert sorted(os.listdir(out / "etc")) == [".wh..wh..opq", ".wh.passwd", "hard", "new"]
    assert (out / "etc" / ".wh.passwd").read_text() == "w"
    assert (out / "etc" / "hard").read_text() == "w"
    assert (out / ".wh.dir" / "f").read_text() == "f"
    assert not any(stat.S_ISCHR(os.lstat(os.path.join(d, n)).st_mode)
                   for d, dirs, files in os.walk(out) for n in dirs + files)
    with pytest.raises(OSError):
        os.getxattr(out / "etc", "user.overlay.opaque")
