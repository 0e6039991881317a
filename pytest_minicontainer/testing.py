"""Helpers for tests that need an image without a registry: a tiny root filesystem from busybox.

A directory laid out by :func:`make_busybox_rootfs` is an image as ``rootfs:DIR`` (the host's
static busybox, one link per applet, ``/etc/passwd`` and ``/etc/group``), made in a few
milliseconds and offline.  The project's own tests and its examples use it; the examples run
from an installed wheel, outside the checkout, so it lives in the package rather than in a
``conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

__all__ = ["BUSYBOX", "make_busybox_rootfs"]

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def make_busybox_rootfs(root: Path, *, users: Mapping[str, int] | None = None,
                        files: Mapping[str, str] | None = None, dirs: Iterable[str] = ()) -> Path:
    """Lay out a minimal root filesystem at ``root`` and return it.

    ``users``: name -> id of users (and their groups) besides root, each with a home in
    ``/home/NAME``; ``files``: relative path -> text of files only this image has; ``dirs``:
    further empty directories.  Skips the calling test when there is no executable busybox
    (a dynamically linked one would not run without its libraries inside).
    """
    if not os.access(BUSYBOX, os.X_OK):
        pytest.skip(f"needs a static busybox at {BUSYBOX}: apt-get install busybox-static")
    users = dict(users or {})
    for d in ("bin", "etc", "tmp", "root", *(f"home/{name}" for name in users), *dirs):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    passwd = "root:x:0:0:root:/root:/bin/sh\n"
    passwd += "".join(f"{name}:x:{uid}:{uid}:{name}:/home/{name}:/bin/sh\n" for name, uid in users.items())
    group = "root:x:0:\n" + "".join(f"{name}:x:{uid}:\n" for name, uid in users.items())
    (root / "etc" / "passwd").write_text(passwd)
    (root / "etc" / "group").write_text(group)
    for rel, text in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
