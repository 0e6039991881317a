"""A container from a root filesystem the test suite builds itself (see conftest.py).

``rootfs:DIR`` runs any directory as an image; overriding the ``container_image`` fixture
makes every ``container`` in this module use it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_minicontainer import Container


@pytest.fixture
def container_image(busybox_rootfs: Path) -> str:
    return f"rootfs:{busybox_rootfs}"


def test_only_busybox_is_inside(container: Container) -> None:
    assert container.read_text("/etc/example-motd") == "built by examples/conftest.py\n"
    assert container.exec(["test", "-e", "/usr/bin/python3"]).returncode == 1


def test_changes_are_per_container(container: Container, busybox_rootfs: Path) -> None:
    container.exec("rm /etc/example-motd && echo 'colour = red' > /etc/example.conf", check=True)
    changes = {(c.kind, c.path) for c in container.diff()}
    assert changes >= {("D", "/etc/example-motd"), ("C", "/etc/example.conf")}
    # The image is untouched.
    assert (busybox_rootfs / "etc" / "example-motd").exists()
    assert (busybox_rootfs / "etc" / "example.conf").read_text() == "colour = blue\n"
