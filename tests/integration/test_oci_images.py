"""Images written by real tools (umoci, skopeo), unpacked by us and by ``umoci unpack``.

The merged view of our layer directories (applied as overlayfs would: whiteout devices
delete, the opaque xattr hides lower content) must equal the tree ``umoci unpack`` writes:
names, types, modes, link targets, contents, and owners when running as root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minicontainer.images import resolve
from pytest_minicontainer.store import Store
from tests.imagetools import build_umoci_image, merge_layers, run, snapshot, umoci_unpack

ROOT = os.geteuid() == 0
BUSYBOX = "/bin/busybox"
Built = tuple[Path, str, dict[str, object]]  # layout, tag, the tree `umoci unpack` makes


def _need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed; install it with `apt-get install {package}`")


@pytest.fixture(scope="module")
def umoci_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, dict[str, object]]]:
    """(layout, tag, the tree `umoci unpack` makes of it)."""
    _need("umoci", "umoci")
    if not os.path.exists(BUSYBOX):
        pytest.skip(f"{BUSYBOX} is missing; install it with `apt-get install busybox-static`")
    work = tmp_path_factory.mktemp("umoci")
    layout, tag = build_umoci_image(work, BUSYBOX)
    reference = snapshot(umoci_unpack(layout, tag, work / "reference"), owners=ROOT)
    yield layout, tag, reference


def skopeo(*args: str | os.PathLike[str]) -> None:
    _need("skopeo", "skopeo")
    run("skopeo", "--insecure-policy", "copy", "-q", *args)


def assert_same_tree(layer_dirs: tuple[str, ...], reference: dict[str, object]) -> None:
    ours = merge_layers(layer_dirs, owners=ROOT)
    diff = {k: (ours.get(k), reference.get(k))
            for k in set(ours) | set(reference) if ours.get(k) != reference.get(k)}
    assert diff == {}


def test_umoci_image_has_the_interesting_cases(umoci_image: Built) -> None:
    """Guards the fixture: the cases the comparison is about are really in the image."""
    _, _, ref = umoci_image
    assert ref["usr/bin/su"][1] == 0o4755  # type: ignore[index]
    assert ref["tmp"][1] == 0o1777  # type: ignore[index]
    assert ref["bin/ls"][:3] == ("symlink", 0, "/bin/busybox")  # type: ignore[index]
    assert ref["etc/replaced"][0] == "symlink"  # type: ignore[index]
    assert ref["opt/app/sub"][0] == "file"  # type: ignore[index]
    assert "etc/gone" not in ref and "old" not in ref and "opt/app/x" not in ref
    assert sorted(k for k in ref if k.startswith("var/cache/")) == ["var/cache/apt", "var/cache/apt/c"]


def test_oci_layout_matches_umoci_unpack(umoci_image: Built, store: Store) -> None:
    layout, tag, reference = umoci_image
    image = resolve(store, f"oci:{layout}:{tag}")
    assert len(image.layer_dirs) == 4
    assert_same_tree(image.layer_dirs, reference)
    assert image.config.cmd == ("/bin/sh",)
    assert image.config.env_dict["HELLO"] == "world"
    assert image.config.workdir == "/tmp"
    merged_dirs = [Path(d) for d in image.layer_dirs]
    # hard links inside a layer stay hard links
    first = merged_dirs[0]
    assert os.lstat(first / "usr/bin/su").st_ino == os.lstat(first / "usr/bin/su-link").st_ino
    assert os.lstat(merged_dirs[1] / "etc/new").st_ino == os.lstat(merged_dirs[1] / "etc/new-link").st_ino


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_skopeo_archives_match_umoci_unpack(umoci_image: Built, store: Store,
                                            tmp_path: Path, transport: str) -> None:
    layout, tag, reference = umoci_image
    archive = tmp_path / f"{transport}.tar"
    name = "example/umoci:v3" if transport == "docker-archive" else tag
    skopeo(f"oci:{layout}:{tag}", f"{transport}:{archive}:{name}")
    image = resolve(store, f"{transport}:{archive}:{name}")
    assert_same_tree(image.layer_dirs, reference)
    if transport == "docker-archive":
        assert image.tags == ("example/umoci:v3",)
        assert resolve(store, "example/umoci:v3").digest == image.digest


def test_skopeo_zstd_layout(umoci_image: Built, store: Store, tmp_path: Path) -> None:
    pytest.importorskip("zstandard", reason="zstandard is missing: pip install 'pytest-minicontainer[zstd]'")
    layout, tag, reference = umoci_image
    out = tmp_path / "zstd-layout"
    skopeo("--dest-compress-format", "zstd", "--dest-compress", f"oci:{layout}:{tag}", f"oci:{out}:{tag}")
    image = resolve(store, f"oci:{out}:{tag}")
    assert_same_tree(image.layer_dirs, reference)


def test_same_image_three_ways_shares_layers(umoci_image: Built,
                                             store: Store, tmp_path: Path) -> None:
    layout, tag, _ = umoci_image
    skopeo(f"oci:{layout}:{tag}", f"docker-archive:{tmp_path / 'd.tar'}:x/y:z")
    skopeo(f"oci:{layout}:{tag}", f"oci-archive:{tmp_path / 'o.tar'}:{tag}")
    dirs = {resolve(store, ref).layer_dirs for ref in
            (f"oci:{layout}:{tag}", f"docker-archive:{tmp_path / 'd.tar'}",
             f"oci-archive:{tmp_path / 'o.tar'}")}
    assert len(dirs) == 1  # the same diff ids: unpacked once
    assert len(list((store.root / "layers").iterdir())) == 4


def test_rootfs_tarball_made_by_gnu_tar(umoci_image: Built, store: Store,
                                        tmp_path: Path) -> None:
    layout, tag, reference = umoci_image
    rootfs = umoci_unpack(layout, tag, tmp_path / "bundle")
    tarball = tmp_path / "rootfs.tar.gz"
    run("tar", "-C", rootfs, "--numeric-owner", "-czf", tarball, ".")
    image = resolve(store, f"rootfs:{tarball}")
    assert_same_tree(image.layer_dirs, reference)


_LIST_TREE = r"""
for top in /bin /etc /opt /tmp /usr /var; do find "$top"; done | while read -r p; do
  own=$(stat -c %u:%g "$p")
  if [ -L "$p" ]; then echo "$p|symlink|0|$(readlink "$p")|$own"
  elif [ -d "$p" ]; then echo "$p|dir|$(stat -c %a "$p")||$own"
  elif [ -p "$p" ]; then echo "$p|fifo|$(stat -c %a "$p")||$own"
  elif [ -f "$p" ]; then echo "$p|file|$(stat -c %a "$p")|$(sha256sum "$p" | cut -d' ' -f1)|$own"
  else echo "$p|other|$(stat -c %a "$p")||$own"; fi
done
"""


def test_container_sees_the_same_tree(umoci_image: Built, tmp_path: Path) -> None:
    """The tree inside a running container (overlayfs over our layers) equals umoci's unpack."""
    from pytest_minicontainer import engine as engine_mod
    from pytest_minicontainer.errors import RuntimeUnavailable

    layout, tag, reference = umoci_image
    try:
        with engine_mod.Engine(store=tmp_path / "store") as engine:
            image = engine.image(f"oci:{layout}:{tag}")
            with engine.run(image) as container:
                out = container.exec(["/bin/sh", "-c", _LIST_TREE]).stdout
    except RuntimeUnavailable as exc:
        pytest.skip(f"containers cannot run on this host: {exc}")
    inside: dict[str, object] = {}
    for line in out.splitlines():
        path, kind, mode, extra, owner = line.split("|")
        entry: tuple[object, ...] = (kind, int(mode, 8), extra)
        if ROOT:
            uid, gid = owner.split(":")
            entry = (*entry, int(uid), int(gid))
        inside[path.lstrip("/")] = entry
    # the runtime's own, as Docker's: /etc/mtab and /etc/hosts in a layer under the container's
    # (images._init_layer), where the image has none
    assert inside.pop("etc/mtab", None) == ("symlink", 0, "/proc/self/mounts", *((0, 0) if ROOT else ()))
    if "etc/hosts" not in reference:
        assert inside.pop("etc/hosts", ("?",))[:2] == ("file", 0o644)
    tops = ("bin", "etc", "opt", "tmp", "usr", "var")
    expected = {k: v for k, v in reference.items() if k.split("/")[0] in tops}
    diff = {k: (inside.get(k), expected.get(k))
            for k in set(inside) | set(expected) if inside.get(k) != expected.get(k)}
    assert diff == {}
