"""Reading an image's files on the host (COPY --from, destinations) and staging COPY layers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_minicontainer.build._copy import stage_files
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
    targets = stage_files(step, out, view, source_view=None, ignore=IgnoreRules(), owner=None,
                          scratch=lambda: tmp_path)
    assert targets == ["usr/lib/pkg"]
    assert not (out / "lib").exists()
    assert (out / "usr" / "lib" / "pkg" / "sub" / "f").read_text() == "f"
    assert os.readlink(out / "usr" / "lib" / "pkg" / "link") == "sub/f"
    assert (out / "usr" / "lib").stat().st_mode & 0o777 == 0o750
