"""Debian root filesystems for the tests that run real servers, built once by ``mmdebstrap``.

A rootfs tarball is built from Debian's packages the first time a test asks for it and kept in
``~/.cache/pytest-minicontainer-testdata`` (a name per command line), so later sessions, and
xdist workers, share it; an environment variable can point at a ready tarball instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

__all__ = ["debian_rootfs"]


def debian_rootfs(name: str, argv: Sequence[str], env_var: str) -> Path:
    """The tarball ``mmdebstrap ARGV TARGET`` makes (``argv`` without the target), built once.

    ``env_var``: a variable naming a ready tarball, which wins.  Skips, naming the fix, when
    mmdebstrap is missing or cannot reach Debian's mirror.
    """
    given = os.environ.get(env_var)
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pytest-minicontainer-testdata"
    key = hashlib.sha256(" ".join(argv).encode()).hexdigest()[:16]
    target = cache / f"{name}-rootfs-{key}.tar"
    if target.exists():
        return target
    how = (f"apt-get install mmdebstrap (it downloads Debian packages from deb.debian.org once; the rootfs is "
           f"cached in {cache}), or point {env_var} at a rootfs tarball built by: {' '.join(argv)} FILE")
    if shutil.which("mmdebstrap") is None:
        pytest.skip(f"a Debian rootfs ({name}) is built with mmdebstrap, which is not installed: {how}")
    from filelock import FileLock

    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # xdist workers build it once between them
        if target.exists():
            return target
        partial = target.with_suffix(".partial.tar")
        mode = [] if os.geteuid() == 0 else ["--mode=unshare"]
        try:
            proc = subprocess.run([*argv[:1], *mode, *argv[1:], str(partial)], capture_output=True, text=True,
                                  timeout=1200)
        except subprocess.TimeoutExpired:
            proc = None
        if proc is None or proc.returncode != 0:
            with contextlib.suppress(OSError):
                partial.unlink()
            tail = "timed out after 20 minutes" if proc is None else (proc.stderr.strip().splitlines() or ["?"])[-1]
            pytest.skip(f"mmdebstrap could not build a Debian rootfs ({name}: {tail}): {how}")
        partial.rename(target)
    return target
