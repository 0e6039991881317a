"""Shared set-up for the examples: a tiny busybox image built from the host's /bin/busybox.

Nothing here downloads anything, so the examples run offline (the rootfs is laid out by
``pytest_minicontainer.testing.make_busybox_rootfs``).  Two ways to use the image are
shown: the ``busybox_rootfs`` fixture hands tests a directory to start with ``rootfs:DIR``,
and the ``pytest_minicontainer_resolve_image`` hook below lets any test simply say
``"busybox"`` where an image reference goes (a marker, ``container_factory``, a parametrize).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pytest_minicontainer.testing import make_busybox_rootfs

_ROOTFS = pytest.StashKey[Path]()


def _busybox_dir(config: pytest.Config) -> Path:
    """Build the image once per pytest process (xdist workers each build their own: it is cheap)."""
    if _ROOTFS not in config.stash:
        tmp = Path(tempfile.mkdtemp(prefix="minicontainer-example-"))
        config.add_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
        # Files only this image has: examples change them, and the names exist nowhere on the host.
        config.stash[_ROOTFS] = make_busybox_rootfs(tmp / "rootfs", dirs=("proc", "dev", "sys"), files={
            "etc/example-motd": "built by examples/conftest.py\n",
            "etc/example.conf": "colour = blue\n",
        })
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
