"""A deterministic digest of an unpacked tree, for layers that have no tar to hash.

Commits and rootfs snapshots are stored by content: two trees with the same names, types,
modes, link targets, file bytes, whiteouts and opaque markers get the same id, so committing
the same change twice stores it once.  Owners count (a ``chown`` is a change a commit must
keep); mtimes are left out on purpose, they differ between two builds of the same content.
"""

from __future__ import annotations

import hashlib
import os
import stat

from .._descriptors import many_descriptors

__all__ = ["file_digest", "tree_digest"]

_OPAQUE = "user.overlay.opaque"


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(f"/proc/self/fd/{fd}", _OPAQUE) == b"y"
    except OSError:
        return False


def file_digest(path: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of a file's bytes, read in large chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def tree_digest(root: str | os.PathLike[str]) -> str:
    """``sha256:`` over every entry below ``root`` in sorted order.

    Directories are visited depth first, the smallest name first, each one's entries hashed
    when it is visited.  The walk holds one descriptor per level and names entries relative
    to them, never by path and never by recursion: a container can commit a tree thousands
    of levels deep, deeper than a path can name.
    """
    h = hashlib.sha256()

    def visit(fd: int, rel: str) -> list[tuple[str, str]]:
        """Hash the directory ``rel`` (open as ``fd``); its subdirectories, the smallest last."""
        h.update(b"D\0" + os.fsencode(rel) + (b"\0opaque" if _opaque(fd) else b"") + b"\n")
        below: list[tuple[str, str]] = []
        for name in sorted(os.listdir(fd), reverse=True):
            child = f"{rel}/{name}" if rel else name
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode)
            kind = f"{stat.S_IFMT(st.st_mode):o} {mode:o} {st.st_uid}:{st.st_gid} "
            head = kind.encode() + os.fsencode(child) + b"\0"
            if stat.S_ISDIR(st.st_mode):
                below.append((name, child))
                h.update(head + b"dir\n")
            elif stat.S_ISLNK(st.st_mode):
                h.update(head + os.fsencode(os.readlink(name, dir_fd=fd)) + b"\n")
            elif stat.S_ISREG(st.st_mode):
                h.update(head + file_digest(f"/proc/self/fd/{fd}/{name}").encode() + b"\n")
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                h.update(head + f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}\n".encode())
            else:
                h.update(head + b"\n")
        return below

    with many_descriptors():  # one descriptor per level may pass the soft limit
        top = os.open(os.fspath(root), _DIR)
        chain: list[tuple[int, list[tuple[str, str]]]] = []
        try:
            chain.append((top, []))
            chain[-1] = (top, visit(top, ""))
            while chain:
                fd, todo = chain[-1]
                if not todo:
                    chain.pop()
                    os.close(fd)
                    continue
                name, rel = todo.pop()
                sub = os.open(name, _DIR, dir_fd=fd)
                chain.append((sub, []))
                chain[-1] = (sub, visit(sub, rel))
        finally:
            for fd, _ in chain:
                os.close(fd)
    return "sha256:" + h.hexdigest()
