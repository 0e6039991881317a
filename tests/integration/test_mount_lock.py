"""Mounts set up for a container hold against its own root (issue 14, finding 2).

Rootless, root in a container had CAP_SYS_ADMIN over its mount namespace: it remounted a
``readonly=True`` bind read-write and rewrote the host's file.  Now every rootless container
runs in a nested user namespace whose mount namespace receives every mount locked (as
bubblewrap does); as root it has no CAP_SYS_ADMIN at all.  Either way nothing can be remounted or
unmounted to uncover what lies below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minicontainer import Container, Engine, Mount


@pytest.fixture
def locked(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> Iterator[tuple[Container, Path]]:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f").write_text("original\n")
    os.chmod(shared, 0o777)  # writable for whoever root in the container is on the host
    os.chmod(shared / "f", 0o666)
    with engine.run(f"rootfs:{busybox_rootfs}", command=(), mounts=[Mount(shared, "/mnt/ro", readonly=True)]) as c:
        yield c, shared


@pytest.mark.parametrize("attack", [
    "mount -o remount,bind,rw /mnt/ro",
    "mount -o remount,rw /mnt/ro",
    "umount /mnt/ro",
    "umount -l /mnt/ro",
    "mount --bind /tmp /mnt/ro",  # stacking is allowed as a mount, but must not make the host file writable
])
def test_a_read_only_bind_stays_read_only(locked: tuple[Container, Path], attack: str) -> None:
    c, shared = locked
    c.exec(attack)  # refused, or harmless: what matters is the host's file
    c.exec("echo rewritten > /mnt/ro/f")
    assert (shared / "f").read_text() == "original\n"


@pytest.mark.parametrize("mask", ["/proc/sys", "/proc/sysrq-trigger", "/proc/kcore"])
def test_masks_over_proc_cannot_be_taken_off(locked: tuple[Container, Path], mask: str) -> None:
    c, _ = locked
    for attack in (f"umount {mask}", f"umount -l {mask}"):
        assert c.exec(attack).returncode != 0, attack


def test_proc_sys_stays_read_only(locked: tuple[Container, Path]) -> None:
    c, _ = locked
    c.exec("mount -o remount,rw /proc/sys")
    out = c.exec("echo 1 > /proc/sys/kernel/ns_last_pid")
    assert out.returncode != 0 and ("Read-only" in out.stderr or "denied" in out.stderr.lower()), out


def test_root_in_the_container_still_binds_low_ports(engine: Engine, busybox_rootfs: Path) -> None:
    cmd = "mkdir -p /www && echo low > /www/index.html && exec httpd -f -p 127.0.0.1:80 -h /www"
    with engine.run(f"rootfs:{busybox_rootfs}", command=cmd) as c:
        c.wait_for_port(80, timeout=30)
        assert c.exec("wget -q -O- http://127.0.0.1:80/").stdout == "low\n"


def test_masks_hold_in_a_container_without_binds(engine: Engine, busybox_rootfs: Path) -> None:
    """Containers without binds (a spare prepared their root ahead) are locked as well."""
    with engine.run(f"rootfs:{busybox_rootfs}", command=()) as c:
        for mask in ("/proc/sys", "/proc/kcore"):
            assert c.exec(f"umount -l {mask}").returncode != 0, mask
        assert c.exec("mount -o remount,rw /proc/sys").returncode != 0
