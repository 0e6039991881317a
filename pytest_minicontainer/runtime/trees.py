"""Remove and copy directory trees the way a container's writable layer needs.

A writable layer holds overlayfs's own files (whiteouts are 0:0 character devices, opaque
directories carry ``user.overlay.opaque``, the work directory has mode 000), possibly owned by
ids only the user namespace maps.  These helpers run in the zygote, inside that namespace,
where such trees can be read and removed; ``shutil`` would skip devices and xattrs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat

__all__ = ["copy_tree", "remove_tree"]


def remove_tree(path: str) -> None:
    """Remove ``path`` entirely; directories without write or search permission included."""

    def fix(func: object, p: str, _exc: object) -> None:
        parent = os.path.dirname(p)
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o700)
        with contextlib.suppress(OSError):
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)

    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=fix)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _copy_xattrs(src: str, dst: str) -> None:
    with contextlib.suppress(OSError):
        for name in os.listxattr(src, follow_symlinks=False):
            if name.startswith(("user.", "trusted.overlay.", "security.capability")):
                with contextlib.suppress(OSError):
                    os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                                follow_symlinks=False)


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    with contextlib.suppress(OSError):
        os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)
    with contextlib.suppress(OSError):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` keeping types, modes, owners, xattrs, whiteouts and hard links."""
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, str, os.stat_result]] = []

    def one(s: str, d: str) -> None:
        st = os.lstat(s)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.makedirs(d, exist_ok=True)
            for name in os.listdir(s):
                one(os.path.join(s, name), os.path.join(d, name))
            dirs.append((s, d, st))  # set modes after the children: a 0555 dir must stay writable
            return
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            os.link(links[key], d)
            return
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(mode):
            with open(s, "rb") as fi, open(d, "wb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(d, mode, st.st_rdev)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(d, stat.S_IMODE(mode))
        else:
            return  # sockets are not content
        if st.st_nlink > 1:
            links[key] = d
        _copy_meta(s, d, st)

    one(src, dst)
    for s, d, st in reversed(dirs):
        _copy_meta(s, d, st)
