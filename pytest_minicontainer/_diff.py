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

    def walk(dirpath: str, rel: str, hidden: bool) -> None:
        """``hidden``: the image's entries below ``rel`` are not visible in the container."""
        try:
            entries = {e.name: e for e in os.scandir(dirpath)}
        except FileNotFoundError:
            return
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
            is_dir = stat.S_ISDIR(st.st_mode)
            old = before(path)
            was_dir = old is not None and stat.S_ISDIR(old.st_mode)
            hides = is_dir and was_dir and (hidden or is_opaque(entry.path))
            if old is None:
                found.append(("A", path))
            elif not (is_dir and was_dir) or hides:
                found.append(("C", path))
            if is_dir:
                walk(entry.path, path, hides)

    walk(upper, "", False)
    return found
