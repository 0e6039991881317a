"""Shared set-up for the examples: a tiny busybox image built from the host's /bin/busybox.

Nothing here downloads anything, so the examples run offline.  Two ways to use the image are
shown: the ``busybox_rootfs`` fixture hands tests a directory to start with ``rootfs:DIR``,
and the ``pytest_minicontainer_resolve_image`` hook below lets any test simply say
``"busybox"`` where an image reference goes (a marker, ``container_factory``, a parametrize).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
_ROOTFS = pytest.StashKey[Path]()


def make_busybox_rootfs(root: Path) -> Path:
    """Lay out a minimal root filesystem: busybox, one link per applet, /etc/passwd."""
    if not os.access(BUSYBOX, os.X_OK):
        pytest.skip(f"these examples need a static busybox at {BUSYBOX}: apt-get install busybox-static")
    for d in ("bin", "etc", "tmp", "root", "proc", "dev", "sys"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    # Files only this image has: examples change them, and the names exist nowhere on the host.
    (root / "etc" / "example-motd").write_text("built by examples/conftest.py\n")
    (root / "etc" / "example.conf").write_text("colour = blue\n")
    return root


def _busybox_dir(config: pytest.Config) -> Path:
    """Build the image once per pytest process (xdist workers each build their own: it is cheap)."""
    if _ROOTFS not in config.stash:
        tmp = Path(tempfile.mkdtemp(prefix="minicontainer-example-"))
        config.add_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
        config.stash[_ROOTFS] = make_busybox_rootfs(tmp / "rootfs")
    return config.stash[_ROOTFS]


@pytest.fixture(scope="session")
def busybox_rootfs(pytestconfig: pytest.Config) -> Path:
    """The directory of the busybox root filesystem."""
    return _busybox_dir(pytestconfig)


@pytest.hookimpl(optionalhook=True)  # the conftest must load without the plugin too (-p no:minicontainer)
def pytest_minicontainer_resolve_image(config: pytest.Config, engine: Any, reference: str) -> str | None:
    """Let tests say ``"busybox"``: it resolves to the rootfs built above."""
    if reference == "busybox":
        return f"rootfs:{_busybox_dir(config)}"
    return None
