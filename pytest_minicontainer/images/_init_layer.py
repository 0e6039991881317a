"""Files Docker's runtime gives every container that an image may not ship: ``/etc/mtab`` and
``/etc/hosts``.

``/etc/mtab`` (a link to ``/proc/self/mounts``) is what ``mount`` with no arguments, ``df`` and
older tools read; ``/etc/hosts`` (``localhost`` on the loopback addresses) is what lets
clients and setup tools reach "localhost" (``mariadb-install-db`` refuses to run without it).
Debian's and most minimal base images (debootstrap, mmdebstrap) ship neither: on a real
machine the system makes them, under Docker its runtime does.  Docker puts them in its "init"
layer, under the container's writable one, which no commit saves; here it is the same: a
small layer of the store on top of the image's layers, so neither is in a ``diff()``, a
``commit()`` or a build step's layer.  A container on a network gets that network's hosts file
mounted over it.

An image's own ``/etc/mtab`` or ``/etc/hosts`` is kept (the layer has only what the image
lacks).  The layer holds an ``etc`` directory, and in an overlay the topmost directory of a
path gives the merged directory its owner and mode: the layer is added only where the image's
``/etc`` is a real directory with the layer's owner and mode (root's, 0755).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from ..image import Image
from ._view import ImageView

__all__ = ["LOCAL_HOSTS", "MTAB_TARGET", "init_files", "init_layer"]

MTAB_TARGET = "/proc/self/mounts"
# what Docker writes for a container without a network of its own
LOCAL_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
               "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
_FILES = ("hosts", "mtab")


def init_files(image: Image) -> tuple[str, ...]:
    """Which of ``hosts`` and ``mtab`` containers of ``image`` get from the init layer (maybe none)."""
    if image.host_dirs or not image.layer_dirs:
        return ()
    view = ImageView(image)
    etc = view.entry("etc")
    if etc is None:
        return ()
    st = os.lstat(etc)
    if not (stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755
            and (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())):
        return ()
    return tuple(name for name in _FILES if view.entry(f"etc/{name}") is None)


def init_layer(store_root: Path, files: tuple[str, ...]) -> str:
    """The layer directory with ``files`` (made once per store and set of files, atomically)."""
    path = store_root / f"init-{'-'.join(files)}"
    if os.path.isdir(path / "etc"):
        return str(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=store_root))
    try:
        (tmp / "etc").mkdir(mode=0o755)
        os.chmod(tmp / "etc", 0o755)
        if "mtab" in files:
            os.symlink(MTAB_TARGET, tmp / "etc" / "mtab")
        if "hosts" in files:
            (tmp / "etc" / "hosts").write_text(LOCAL_HOSTS)
            os.chmod(tmp / "etc" / "hosts", 0o644)
        os.chmod(tmp, 0o755)
        with contextlib.suppress(OSError):  # another process made it first
            os.rename(tmp, path)
    finally:
        if tmp.exists():
            with contextlib.suppress(OSError):
                for name in files:
                    os.unlink(tmp / "etc" / name)
                os.rmdir(tmp / "etc")
                os.rmdir(tmp)
    return str(path)
