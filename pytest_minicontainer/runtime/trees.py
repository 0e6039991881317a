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


def _xattrs(path: int | str) -> list[tuple[str, bytes]]:
    """The extended attributes worth copying, of a descriptor or of a path whose last
    component is not followed."""
    found: list[tuple[str, bytes]] = []
    follow = isinstance(path, int)  # a descriptor refuses the flag; a path must not be followed
    with contextlib.suppress(OSError):
        for name in os.listxattr(path, follow_symlinks=follow):
            if name.startswith(("user.", "trusted.overlay.", "security.capability")):
                with contextlib.suppress(OSError):
                    found.append((name, os.getxattr(path, name, follow_symlinks=follow)))
    return found


def _copy_meta(dst: str, st: os.stat_result, xattrs: list[tuple[str, bytes]]) -> None:
    with contextlib.suppress(OSError):
        os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    for name, value in xattrs:
        with contextlib.suppress(OSError):
            os.setxattr(dst, name, value, follow_symlinks=False)
    with contextlib.suppress(OSError):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def copy_tree(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` keeping types, modes, owners, xattrs, whiteouts and hard links.

    The source is walked through directory descriptors and opened with ``O_NOFOLLOW``: it is
    a container's writable layer, and a process of the container that swaps a directory or
    a file for a symbolic link while the copy runs must not make it read the host's files.
    (The container is paused meanwhile too, but a process forking fast enough can slip by.)
    A swapped entry is copied as what it has become, or not at all; never followed.
    """
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, os.stat_result, list[tuple[str, bytes]]]] = []

    def one(parent: int, name: str, d: str) -> None:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return  # gone meanwhile
        mode = st.st_mode
        # the entry itself, reached through its parent's descriptor and never followed
        here = f"/proc/self/fd/{parent}/{name}"
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(name, dir_fd=parent)
            except OSError:  # replaced by something else, or gone
                return
            os.symlink(target, d)
            _copy_meta(d, st, _xattrs(here))
            return
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], d)
                return
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                os.mknod(d, mode, st.st_rdev)
            elif stat.S_ISFIFO(mode):
                os.mkfifo(d, stat.S_IMODE(mode))
            else:
                return  # sockets are not content
            if st.st_nlink > 1:
                links[key] = d
            _copy_meta(d, st, _xattrs(here))
            return
        try:
            fd = os.open(name, _NOFOLLOW | (os.O_DIRECTORY if stat.S_ISDIR(mode) else 0), dir_fd=parent)
        except OSError:  # ELOOP: it became a symlink; ENOTDIR, ENOENT: replaced or gone
            return
        try:
            st = os.fstat(fd)  # what was opened, not what was looked at before
            if stat.S_ISDIR(st.st_mode):
                os.makedirs(d, exist_ok=True)
                for child in os.listdir(fd):
                    one(fd, child, os.path.join(d, child))
                # modes after the children: a 0555 dir must stay writable until then
                dirs.append((d, st, _xattrs(fd)))
                return
            if not stat.S_ISREG(st.st_mode):
                return
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], d)
                return
            with os.fdopen(os.dup(fd), "rb") as fi, open(d, "wb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
            if st.st_nlink > 1:
                links[key] = d
            _copy_meta(d, st, _xattrs(fd))
        finally:
            os.close(fd)

    parent, name = os.path.split(os.path.abspath(src))
    top = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        one(top, name, dst)
    finally:
        os.close(top)
    for d, st, xattrs in reversed(dirs):
        _copy_meta(d, st, xattrs)
