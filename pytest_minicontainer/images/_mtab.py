"""``/etc/mtab`` in every container, as Docker's runtime gives it: a link to ``/proc/self/mounts``.

``mount`` with no arguments, ``df`` and older tools read ``/etc/mtab``; Debian's and most base
images do not ship it (the init system makes it on a real machine).  Docker puts the link in
its "init" layer, a layer under the container's writable one that a commit never saves; here
it is the same: one small layer of the store, stacked on top of the image's layers, so the
link is in no ``diff()``, no ``commit()`` and no build step's layer.

The layer holds an ``etc`` directory, and in an overlay the topmost directory of a path gives
the merged directory its owner and mode: it is added only where the image's ``/etc`` is a real
directory with the owner and mode the layer's has (root's, 0755), and no ``/etc/mtab`` of its
own.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from ..image import Image
from ._view import ImageView

__all__ = ["MTAB_TARGET", "init_layer", "wants_mtab"]

MTAB_TARGET = "/proc/self/mounts"
_NAME = "init-mtab"


def wants_mtab(image: Image) -> bool:
    """Whether containers of ``image`` get the layer with ``/etc/mtab`` (see the module's docstring)."""
    if image.host_dirs or not image.layer_dirs:
        return False
    view = ImageView(image)
    etc = view.entry("etc")
    if etc is None or view.entry("etc/mtab") is not None:
        return False
    st = os.lstat(etc)
    return (stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755
            and (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()))


def init_layer(store_root: Path) -> str:
    """The layer directory (made once per store, atomically): ``etc/mtab -> /proc/self/mounts``."""
    path = store_root / _NAME
    if os.path.islink(path / "etc" / "mtab"):
        return str(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_NAME}-", dir=store_root))
    try:
        (tmp / "etc").mkdir(mode=0o755)
        os.chmod(tmp / "etc", 0o755)
        os.symlink(MTAB_TARGET, tmp / "etc" / "mtab")
        os.chmod(tmp, 0o755)
        with contextlib.suppress(OSError):  # another process made it first
            os.rename(tmp, path)
    finally:
        if tmp.exists():
            with contextlib.suppress(OSError):
                os.unlink(tmp / "etc" / "mtab")
                os.rmdir(tmp / "etc")
                os.rmdir(tmp)
    return str(path)
