"""What a container's writable layer changes over its image (``Container.diff``).

The writable layer is an overlayfs upper directory: a file there is added or changed, a
whiteout (a 0:0 character device) deletes, and a directory overlayfs marked opaque (removed
and made again: ``rm -rf /d && mkdir /d``) hides everything the image had below it.  What
the image had is read through :class:`~.images.ImageView`, which looks through the
layers the way overlayfs does and never follows a layer's symlink on the host.

Module-level and plain-typed so that it can also run in the runtime's user namespace
(``Runtime.call``) when this process may not read a directory of the layer.
"""

from __future__ import annotations

import errno
import os
import stat

from ._descriptors import many_descriptors
from .image import Image
from .images import ImageView, is_opaque, is_whiteout

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

    class Level:
        """One directory of the upper layer being listed: ``fd`` open on it, ``rel`` its path,
        ``hidden`` whether the image's entries below it are not visible in the container."""

        def __init__(self, fd: int, rel: str, hidden: bool) -> None:
            self.fd, self.rel, self.hidden = fd, rel, hidden
            self.entries = {e.name: e for e in os.scandir(fd)}
            names = set(self.entries)
            if hidden:
                names.update(view.listdir(rel.lstrip("/")))
            self.todo = sorted(names, reverse=True)

    def step(level: Level) -> Level | None:
        """Record the change of ``level``'s next entry; a Level for it when it is a directory.

        By descriptors, never by path: a process of the container swapping a directory for a
        symlink meanwhile must not make the walk list a host directory.
        """
        name = level.todo.pop()
        path = f"{level.rel}/{name}"
        entry = level.entries.get(name)
        if path in skipped:
            return None
        if entry is None:  # in the image, hidden by an opaque directory above it
            found.append(("D", path))
            return None
        st = entry.stat(follow_symlinks=False)
        if is_whiteout(st):
            found.append(("D", path))
            return None
        sub = _open_dir(name, level.fd) if stat.S_ISDIR(st.st_mode) else None
        try:
            is_dir = sub is not None
            old = before(path)
            was_dir = old is not None and stat.S_ISDIR(old.st_mode)
            hides = sub is not None and was_dir and (level.hidden or is_opaque(sub))
            if old is None:
                found.append(("A", path))
            elif not (is_dir and was_dir) or hides:
                found.append(("C", path))
            return None if sub is None else Level(sub, path, hides)
        except BaseException:
            if sub is not None:
                os.close(sub)
            raise

    top = _open_dir(upper)
    if top is None:
        return found
    # Depth first, each directory's entries in sorted order, as a recursion would list them,
    # but with a stack: a container can make a tree thousands of levels deep (and one
    # descriptor per level may pass the soft limit: many_descriptors).
    stack: list[Level] = []
    with many_descriptors():
        try:
            stack.append(Level(top, "", False))
        except BaseException:
            os.close(top)
            raise
        try:
            while stack:
                if not stack[-1].todo:
                    os.close(stack.pop().fd)
                    continue
                below = step(stack[-1])
                if below is not None:
                    stack.append(below)
        finally:
            for level in stack:
                os.close(level.fd)
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
