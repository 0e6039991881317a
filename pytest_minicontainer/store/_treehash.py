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

__all__ = ["file_digest", "tree_digest"]

_OPAQUE = "user.overlay.opaque"


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def file_digest(path: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of a file's bytes, read in large chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root: str | os.PathLike[str]) -> str:
    """``sha256:`` over every entry below ``root`` in sorted order."""
    h = hashlib.sha256()
    base = os.fspath(root)
    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(base, rel) if rel else base
        names = sorted(os.listdir(path), reverse=True)
        h.update(b"D\0" + os.fsencode(rel) + (b"\0opaque" if _opaque(path) else b"") + b"\n")
        for name in names:
            child = f"{rel}/{name}" if rel else name
            full = os.path.join(base, child)
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            kind = f"{stat.S_IFMT(st.st_mode):o} {mode:o} {st.st_uid}:{st.st_gid} "
            head = kind.encode() + os.fsencode(child) + b"\0"
            if stat.S_ISDIR(st.st_mode):
                stack.append(child)
                h.update(head + b"dir\n")
            elif stat.S_ISLNK(st.st_mode):
                h.update(head + os.fsencode(os.readlink(full)) + b"\n")
            elif stat.S_ISREG(st.st_mode):
                h.update(head + file_digest(full).encode() + b"\n")
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                h.update(head + f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}\n".encode())
            else:
                h.update(head + b"\n")
    return "sha256:" + h.hexdigest()
