"""What an image's own files can do to the processes that serve its container (issue 14).

Finding 4: ``exec(user=...)`` reads the image's /etc/passwd inside the container; a symlink
to /dev/zero grew pid 1 without bound and a FIFO blocked it for good.  Finding 5: as root,
``read_text`` of an image's symlink to /proc/self/environ returned the test's environment.
Each case must fail with a clear error while the container keeps answering.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minicontainer import Container, ContainerError, Engine

SECRET = "minicontainer-test-secret-5f2c"


@pytest.fixture
def box(engine: Engine, busybox_rootfs: Path) -> Iterator[Container]:
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        yield c


@pytest.mark.parametrize("make", ["ln -sf /dev/zero /etc/passwd", "rm /etc/passwd && mkfifo /etc/passwd",
                                  "ln -sf /dev/zero /etc/group"])
def test_a_passwd_that_is_no_file_is_refused_and_pid1_keeps_answering(box: Container, make: str) -> None:
    box.exec(make, check=True)
    with pytest.raises(ContainerError, match=r"/etc/(passwd|group) is not a regular file[\s\S]*fix:"):
        box.exec(["id"], user="app", timeout=10)
    assert box.exec(["echo", "still here"], timeout=10).stdout == "still here\n"
    # numbers need no table (`id` itself would read the broken file: cat does not)
    status = box.exec(["cat", "/proc/self/status"], user="0:0", timeout=10).stdout
    assert "\nUid:\t0\t" in status


def test_a_huge_passwd_is_refused(box: Container) -> None:
    box.exec("dd if=/dev/zero bs=1M count=17 2>/dev/null | tr '\\0' 'x' > /etc/passwd", check=True)
    with pytest.raises(ContainerError, match="larger than 16 MiB"):
        box.exec(["id"], user="app", timeout=30)
    assert box.exec(["true"], timeout=10).returncode == 0


@pytest.fixture
def fresh_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """An Engine started while the test's environment holds a secret, as a CI job's does."""
    monkeypatch.setenv("CI_TOKEN", SECRET)
    with Engine(store=tmp_path / "store") as e:
        yield e


@pytest.mark.parametrize("target", ["/proc/self/environ", "/proc/1/environ", "/proc/self/maps"])
def test_file_requests_do_not_open_procfs(fresh_engine: Engine, busybox_rootfs: Path, target: str) -> None:
    with fresh_engine.run(f"rootfs:{busybox_rootfs}") as c:
        c.exec(["ln", "-s", target, "/etc/app.conf"], check=True)
        # refused by the check, or earlier by the kernel (rootless, pid 1 is not dumpable)
        for path in ("/etc/app.conf", target):
            with pytest.raises(OSError, match=r"a file of /proc|Permission denied") as refused:
                c.read_bytes(path)
            assert SECRET not in str(refused.value)
        # commands still read procfs as they please
        assert c.exec(["cat", "/proc/self/stat"]).returncode == 0


def _children_environ(pid: int) -> Iterator[bytes]:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    yield f.read()
        except (OSError, ValueError, IndexError):
            continue


def test_the_runtime_does_not_carry_the_tests_environment(fresh_engine: Engine, busybox_rootfs: Path) -> None:
    with fresh_engine.run(f"rootfs:{busybox_rootfs}") as c:
        c.exec(["true"], check=True)
        environs = list(_children_environ(os.getpid()))  # the zygote is this process's child
        assert environs, "the zygote's environment could not be read from /proc"
        assert all(SECRET.encode() not in env for env in environs)
        assert any(b"PATH=" in env for env in environs)
        # what a command asks for is still passed explicitly
        assert c.exec("echo $X", env={"X": "given"}).stdout == "given\n"
