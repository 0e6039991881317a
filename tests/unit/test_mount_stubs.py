"""Mount points in a writable layer (``images._stubs.drop_mount_stubs``): what the runtime
made to mount on goes, what the container wrote stays, and nothing is ever removed through a
symbolic link of the layer (it could lead onto the host)."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_minicontainer.image import Image
from pytest_minicontainer.images._stubs import drop_mount_stubs


def _image(lower: Path) -> Image:
    return Image(digest="sha256:" + "a" * 64, layer_dirs=(str(lower),))


def test_stubs_go_with_the_directories_made_for_them(tmp_path: Path) -> None:
    lower, layer = tmp_path / "lower", tmp_path / "layer"
    (lower / "etc").mkdir(parents=True)
    (lower / "root").mkdir()
    (layer / "etc").mkdir(parents=True)  # a copy-up of /etc, unchanged
    os.chmod(layer / "etc", os.stat(lower / "etc").st_mode)
    (layer / "etc" / "hosts").write_text("")
    (layer / "root" / ".cache" / "tool").mkdir(parents=True)  # a cache mount's target
    (layer / "run" / "secrets").mkdir(parents=True)
    (layer / "run" / "secrets" / "token").write_text("")
    (layer / "run" / "kept").write_text("written by the container\n")
    drop_mount_stubs(layer, _image(lower), ["/etc/hosts", "/root/.cache/tool", "/run/secrets/token"])
    assert not (layer / "etc").exists()  # the copy-up made only for the stub went too
    assert not (layer / "root" / ".cache").exists()
    assert sorted(p.name for p in (layer / "run").iterdir()) == ["kept"]


def test_what_the_container_wrote_or_the_image_has_stays(tmp_path: Path) -> None:
    lower, layer = tmp_path / "lower", tmp_path / "layer"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "resolv.conf").write_text("nameserver 1.1.1.1\n")
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "resolv.conf").write_text("")  # the image has one: not a stub of ours
    (layer / "etc" / "hosts").write_text("10.0.0.1 written\n")
    (layer / "data").mkdir()
    (layer / "data" / "file").write_text("x")
    drop_mount_stubs(layer, _image(lower), ["/etc/resolv.conf", "/etc/hosts", "/data"])
    assert (layer / "etc" / "resolv.conf").exists() and (layer / "etc" / "hosts").read_text()
    assert (layer / "data" / "file").exists()


def test_never_through_a_symlink_of_the_layer(tmp_path: Path) -> None:
    lower, layer, host = tmp_path / "lower", tmp_path / "layer", tmp_path / "host-etc"
    lower.mkdir()
    layer.mkdir()
    host.mkdir()
    (host / "hosts").write_text("")  # an empty file of the host's
    (layer / "etc").symlink_to(host)  # made by a RUN step or a container: leads out of the layer
    (layer / "mnt").symlink_to(host)
    drop_mount_stubs(layer, _image(lower), ["/etc/hosts", "/mnt/hosts"])
    assert (host / "hosts").exists()
