"""Remove and copy directory trees the way a container's writable layer needs.

A writable layer holds overlayfs's own files (whiteouts are 0:0 character devices, opaque
directories carry ``user.overlay.opaque``, the work directory has mode 000), possibly owned by
ids only the user namespace maps.  These helpers run in the zygote, inside that namespace,
where such trees can be read and removed; ``shutil`` would skip devices and xattrs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from .._descriptors import many_descriptors
from .._rmtree import remove_tree

__all__ = ["copy_tree", "remove_tree"]


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


def _copy_meta(parent: int, name: str, st: os.stat_result, xattrs: list[tuple[str, bytes]]) -> None:
    """Owner, mode, xattrs and times of the new entry ``name`` in the directory ``parent``."""
    with contextlib.suppress(OSError):
        os.chown(name, st.st_uid, st.st_gid, dir_fd=parent, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=parent)
    for key, value in xattrs:  # setxattr takes no directory descriptor: the parent's magic link
        with contextlib.suppress(OSError):
            os.setxattr(f"/proc/self/fd/{parent}/{name}", key, value, follow_symlinks=False)
    with contextlib.suppress(OSError):
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=parent, follow_symlinks=False)


_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _copy_data(src: int, dst: int, size: int) -> None:
    """Copy a file's bytes, keeping its holes.

    A container's sparse file (a 2 GiB database file with 4 KiB in it, say) must not become
    2 GiB on disk in a commit: only the data the file system reports (SEEK_DATA/SEEK_HOLE)
    is copied, and the length is set at the end.
    """
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                break
            if exc.errno != errno.EINVAL:  # EINVAL: no SEEK_DATA here: copy everything
                raise
            start, end = offset, size
        else:
            end = os.lseek(src, start, os.SEEK_HOLE)
        while start < end:
            chunk = os.pread(src, min(1 << 20, end - start), start)
            if not chunk:
                break
            written = os.pwrite(dst, chunk, start)
            start += written
        offset = end
    os.ftruncate(dst, size)


def copy_tree(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` (see ``_copy``), with room for a descriptor per level on each side."""
    with many_descriptors():
        _copy(src, dst)


def _copy(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` keeping types, modes, owners, xattrs, whiteouts and hard links.

    The source is walked through directory descriptors and opened with ``O_NOFOLLOW``: it is
    a container's writable layer, and a process of the container that swaps a directory or
    a file for a symbolic link while the copy runs must not make it read the host's files.
    (The container is paused meanwhile too, but a process forking fast enough can slip by.)
    A swapped entry is copied as what it has become, or not at all; never followed.

    Both sides are walked with a stack of descriptors, not by recursion or by path: a
    container can make a tree thousands of levels deep, deeper than PATH_MAX allows to name.
    """
    links: dict[tuple[int, int], str] = {}  # first copy of a multiply linked file, by path

    def link(key: tuple[int, int], st: os.stat_result, dparent: int, name: str, dpath: str) -> bool:
        """Make ``name`` another link of a file copied before; False to copy it instead."""
        if st.st_nlink <= 1:
            return False
        if key not in links:
            links[key] = dpath
            return False
        try:
            os.link(links[key], name, dst_dir_fd=dparent, follow_symlinks=False)
        except OSError:  # ENAMETOOLONG: the first copy lies too deep to name
            return False
        return True

    # a frame: (source dir, its entries still to copy, target dir, target's path, stat, xattrs)
    Frame = tuple[int, list[str], int, str, os.stat_result, list[tuple[str, bytes]]]

    def one(parent: int, name: str, dparent: int, dname: str, dpath: str) -> Frame | None:
        """Copy one entry; for a directory, return the frame to walk it with."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None  # gone meanwhile
        mode = st.st_mode
        # the entry itself, reached through its parent's descriptor and never followed
        here = f"/proc/self/fd/{parent}/{name}"
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(name, dir_fd=parent)
            except OSError:  # replaced by something else, or gone
                return None
            os.symlink(target, dname, dir_fd=dparent)
            _copy_meta(dparent, dname, st, _xattrs(here))
            return None
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            if not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)):
                return None  # sockets are not content
            if link((st.st_dev, st.st_ino), st, dparent, dname, dpath):
                return None
            if stat.S_ISFIFO(mode):
                os.mkfifo(dname, stat.S_IMODE(mode), dir_fd=dparent)
            else:
                os.mknod(dname, mode, st.st_rdev, dir_fd=dparent)
            _copy_meta(dparent, dname, st, _xattrs(here))
            return None
        try:
            fd = os.open(name, _NOFOLLOW | (os.O_DIRECTORY if stat.S_ISDIR(mode) else 0), dir_fd=parent)
        except OSError:  # ELOOP: it became a symlink; ENOTDIR, ENOENT: replaced or gone
            return None
        keep = False
        try:
            st = os.fstat(fd)  # what was opened, not what was looked at before
            if stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(dname, 0o700, dir_fd=dparent)
                dfd = os.open(dname, _DIR, dir_fd=dparent)
                keep = True
                return fd, sorted(os.listdir(fd), reverse=True), dfd, dpath, st, _xattrs(fd)
            if not stat.S_ISREG(st.st_mode) or link((st.st_dev, st.st_ino), st, dparent, dname, dpath):
                return None
            out = os.open(dname, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=dparent)
            try:
                _copy_data(fd, out, st.st_size)
            finally:
                os.close(out)
            _copy_meta(dparent, dname, st, _xattrs(fd))
            return None
        finally:
            if not keep:
                os.close(fd)

    parent, name = os.path.split(os.path.abspath(src))
    dparent_path, dname = os.path.split(os.path.abspath(dst))
    top = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    dtop = os.open(dparent_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack: list[tuple[Frame, int, str]] = []  # a frame, the target's parent and name in it
    try:
        first = one(top, name, dtop, dname, dst)
        if first is not None:
            stack.append((first, dtop, dname))
        while stack:
            (fd, todo, dfd, dpath, st, xattrs), dparent, own = stack[-1]
            if todo:
                child = todo.pop()
                below = one(fd, child, dfd, child, f"{dpath}/{child}")
                if below is not None:
                    stack.append((below, dfd, child))
                continue
            # every child is in: now the directory's own mode (a 0555 one stays writable until
            # then), owner, xattrs and times
            stack.pop()
            os.close(fd)
            os.close(dfd)
            _copy_meta(dparent, own, st, xattrs)
    finally:
        for (fd, _todo, dfd, _p, _s, _x), _dp, _o in stack:
            os.close(fd)
            os.close(dfd)
        os.close(top)
        os.close(dtop)
