"""What a container's writable layer changes over its image (``Container.diff``).

The writable layer is an overlayfs upper directory: a file there is added or changed, a
whiteout (a 0:0 character device) deletes, and a directory overlayfs marked opaque (removed
and made again: ``rm -rf /d && mkdir /d``) hides everything the image had below it.  What
the image had is read through :class:`~.images._view.ImageView`, which looks through the
layers the way overlayfs does and never follows a layer's symlink on the host.

Module-level and plain-typed so that it can also run in the runtime's user namespace
(``Runtime.call``) when this process may not read a directory of the layer.
"""

from __future__ import annotations

import errno
import os
import stat

from .image import Image
from .images._view import ImageView, is_opaque, is_whiteout

__all__ = ["changes"]


def changes(upper: str, layers: list[str], host_dirs: list[str], skip: list[str]) -> list[tuple[str, str]]:
    """(kind, path) of what ``upper`` changes over the image of ``layers`` (bottom first).

    Kinds are "A" (added), "C" (changed: another file, or a directory made again) and "D"
    (deleted: a whiteout, or a name an opaque directory no longer shows).  Paths in ``skip``
    (mount points) are left out with what lies below them.  PermissionError goes up when a
    directory is private to another id.
    """
    view = ImageView(Image(digest="", layer_dirs=tuple(layers), host_dirs=tuple(host_dirs)))
    skipped = set(skip)
    found: list[tuple[str, str]] = []

    def before(path: str) -> os.stat_result | None:
        where = view.entry(path.lstrip("/"))
        return None if where is None else os.lstat(where)

    def walk(fd: int, rel: str, hidden: bool) -> None:
        """``fd``: the upper directory ``rel``; ``hidden``: the image's entries below it are not
        visible in the container.

        By descriptors, never by path: a process of the container swapping a directory for a
        symlink meanwhile must not make the walk list a host directory.
        """
        entries = {e.name: e for e in os.scandir(fd)}
        names = set(entries)
        if hidden:
            names.update(view.listdir(rel.lstrip("/")))
        for name in sorted(names):
            path = f"{rel}/{name}"
            if path in skipped:
                continue
            entry = entries.get(name)
            if entry is None:  # in the image, hidden by an opaque directory above it
                found.append(("D", path))
                continue
            st = entry.stat(follow_symlinks=False)
            if is_whiteout(st):
                found.append(("D", path))
                continue
            sub = _open_dir(name, fd) if stat.S_ISDIR(st.st_mode) else None
            try:
                is_dir = sub is not None
                old = before(path)
                was_dir = old is not None and stat.S_ISDIR(old.st_mode)
                hides = sub is not None and was_dir and (hidden or is_opaque(sub))
                if old is None:
                    found.append(("A", path))
                elif not (is_dir and was_dir) or hides:
                    found.append(("C", path))
                if sub is not None:
                    walk(sub, path, hides)
            finally:
                if sub is not None:
                    os.close(sub)

    top = _open_dir(upper)
    if top is None:
        return found
    try:
        walk(top, "", False)
    finally:
        os.close(top)
    return found


def _open_dir(name: str, parent: int | None = None) -> int | None:
    """A descriptor of the directory ``name`` (below ``parent``), or None if it is not one (any
    more: replaced, a symlink now, gone).  PermissionError goes up, as for ``is_opaque``."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
