"""Who owns a temporary directory: an flock held for as long as its process lives.

The kernel drops an flock when the last descriptor of its open file goes away, i.e. when
the owner exits, however it exits (SIGKILL included).  So "can I take the lock without
waiting?" answers "is the owner dead?" with no pid files to go stale or pids to be reused.
The lock file sits *next to* the directory (``NAME.owner``), not inside it, because the
directory itself is renamed into ``layers/`` when it is finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["OwnerLock", "owner_alive"]

SUFFIX = ".owner"


class OwnerLock:
    """Hold the owner lock of ``directory`` until :meth:`release`."""

    def __init__(self, directory: Path) -> None:
        self.path = directory.with_name(directory.name + SUFFIX)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self, *, remove: bool = True) -> None:
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


def owner_alive(directory: Path) -> bool:
    """True while a live process holds the owner lock of ``directory``."""
    lock = directory.with_name(directory.name + SUFFIX)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
