"""Where the store keeps what: the directories under its root, made and checked once.

The layout itself is described in :mod:`._store`.  The tags, the exports bookkeeping and the
garbage collector each get this object rather than the :class:`~._store.Store`, so that each
sees the paths it works on and nothing of the others' state.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from ..errors import StoreError
from . import _trust
from ._fs import disk_full
from ._names import digest_hex

__all__ = ["Layout"]


class Layout:
    """The paths of a store rooted at ``root`` (absolute); :meth:`make` creates them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = root / "run"
        self.blobs = root / "blobs" / "sha256"
        self.layers = root / "layers"
        self.images = root / "images"
        self.exports = root / "exports"
        self.sources = root / "sources"
        self.locks = root / "locks"
        self.tmp = root / "tmp"
        self.tags = root / "tags.json"
        self.cache_mounts = root / "build-cache"

    def image_file(self, digest: str) -> Path:
        return self.images / f"{digest_hex(digest)}.json"

    def make(self) -> None:
        """Create the directories, each the caller's alone; StoreError says what is wrong.

        Nothing is read or made before the path is known to be the caller's alone (``_trust``).
        """
        _trust.check_ancestors(self.root)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            real = Path(os.path.realpath(self.root))
            _trust.check_own_dir(real, "root")
            _private(real)
            for d in (self.blobs.parent, self.blobs, self.layers, self.images, self.exports, self.sources,
                      self.locks, self.tmp, self.run):
                d.mkdir(exist_ok=True)
                _trust.check_own_dir(d)
                _private(d)
            _trust.check_own_dir(self.tags, "tag file")
        except StoreError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(self.root) from exc
            raise StoreError(f"cannot create the image store at {self.root}: {exc.strerror}"
                             " (choose another location or fix its permissions)") from exc


def _private(path: Path) -> None:
    """Make one of the store's directories the owner's alone (0700).

    Layers and containers' writable layers hold what images and tests put there, set-user-ID
    programs included, on a filesystem mounted without ``nosuid``: reachable by other users
    of the machine, root's would let any of them run a program as root.  Docker keeps its
    directory closed the same way.  A directory of someone else's is left as it is.
    """
    st = path.stat()
    if st.st_uid == os.geteuid() and st.st_mode & 0o077:
        with contextlib.suppress(OSError):
            path.chmod(0o700)
