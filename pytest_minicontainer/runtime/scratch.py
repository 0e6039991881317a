"""Containers' scratch dirs in the zygote: made, reused when untouched, deleted when idle.

Each container gets a directory under the Engine's scratch space for its writable layer,
overlayfs's work dirs and its mount point.  Creating and deleting the directories of a
writable layer costs about a millisecond on ext4 (more for the ``host`` image), more than the
rest of a container's start; an untouched layout is as good as a new one, so an ended
container's dir is kept for the next container over the same layers when nothing was written
there.  Removal happens when the zygote is idle, off the tests' path.  Plain directory work,
testable without namespaces.
"""

from __future__ import annotations

import os
import stat
import sys

from . import mounts
from .messages import ContainerSpec
from .trees import remove_tree

__all__ = ["ScratchDirs", "untouched"]

#: Untouched dirs kept per set of layers.
KEEP = 4

# What overlayfs itself records on upper directories: the layer's id (first mount), the lower
# directory a merged one stands for, and "may hold entries from below".  They describe the
# same layers again when the dir is reused for them (hence the pool by layers).
_OVERLAY_XATTRS = ("user.overlay.uuid", "user.overlay.origin", "user.overlay.impure")


class ScratchDirs:
    """The scratch dirs under ``root``: their layouts, the clean ones by layers, the trash."""

    def __init__(self, root: str, owner: tuple[int, int] = (0, 0)) -> None:
        self.root = root
        self.owner = owner  # (uid, gid) of a directory as made, root in the zygote's namespace
        # Scratch dirs of ended containers that were never written, by the layers their
        # overlays had (see discard); scratch dir -> (those layers, the directories made)
        self.clean: dict[str, list[str]] = {}
        self.layouts: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.trash: list[str] = []  # trees to delete when idle (removal is off the hot path)

    def new(self, spec: ContainerSpec | None) -> tuple[str, str]:
        """A new container id and a scratch dir for ``spec`` (one left by an earlier container
        with the same layers if there is one), recorded with its layout (None: not known yet)."""
        cid = os.urandom(6).hex()
        key = mounts.layers_key(spec) if spec is not None else None
        reusable = self.clean.get(key) if key is not None else None
        if reusable:
            path = reusable.pop()
        else:
            path = os.path.join(self.root, cid)
            os.mkdir(path, 0o755)
        if spec is not None and key is not None:
            self.layouts[path] = (key, mounts.layout(spec))
        return cid, path

    def record(self, path: str, spec: ContainerSpec) -> None:
        """``path`` (a plain spare's, made before its spec was known) serves ``spec``."""
        if path not in self.layouts:
            self.layouts[path] = (mounts.layers_key(spec), mounts.layout(spec))

    def discard(self, path: str, in_use: set[str]) -> None:
        """An ended container's scratch dir: keep it for the next container with the same
        layers if nothing was written there, else delete it when idle.  ``in_use``: the dirs
        of containers and spares still there, which are never touched."""
        if path in in_use or path in self.trash or any(path in pool for pool in self.clean.values()):
            return  # asked twice, or already another container's: never delete that
        key, layout = self.layouts.pop(path, (None, None))
        pool = self.clean.setdefault(key, []) if key is not None else None
        if (pool is not None and layout is not None and len(pool) < KEEP and os.path.dirname(path) == self.root
                and untouched(path, layout, self.owner)):
            pool.append(path)
        else:
            self.trash.append(path)

    def throw(self, path: str) -> None:
        """Delete ``path`` when idle (a container that never started)."""
        self.trash.append(path)

    def tidy(self) -> None:
        """Delete one tree of the trash (the zygote calls it when idle, until none is left)."""
        if not self.trash:
            return
        path = self.trash.pop()
        try:
            remove_tree(path)
        except Exception as exc:  # a tree it cannot remove must not end the zygote
            print(f"minicontainer zygote: cannot remove {path}: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)

    def remove_all(self) -> None:
        """At the end: the trash, then every scratch dir with the root."""
        for path in self.trash:
            remove_tree(path)
        remove_tree(self.root)


def untouched(scratch: str, layout: tuple[str, ...], owner: tuple[int, int] = (0, 0)) -> bool:
    """Whether ``scratch`` holds exactly the empty directories of ``layout``, as made.

    Overlayfs's own ``work`` directories inside the work dirs must be empty too; any file,
    extra directory, changed owner or mode or extended attribute but overlayfs's own (a
    ``chmod /`` in the container lands on ``upper`` itself) means the layer was written.  The
    library's own files (a main process's ``log``, slirp's ``resolv.conf``) count as written
    too: the library may still read the log of a container it has just removed.
    """
    expected = set(layout) | {f"{d}/work" for d in layout if d == "work" or (d[:4] == "work" and d[4:].isdigit())}
    allowed = expected | {"upper/proc", "upper/dev"}  # mount points made when the image has none
    try:
        seen = 0
        for top, dirs, files in os.walk(scratch):
            rel = os.path.relpath(top, scratch)
            if files or any(os.path.islink(os.path.join(top, d)) for d in dirs):
                return False
            if rel != ".":
                if rel not in allowed:
                    return False
                seen += rel in expected
            if rel.startswith("upper"):
                st = os.lstat(top)
                if (stat.S_IMODE(st.st_mode) != 0o755 or (st.st_uid, st.st_gid) != owner
                        or any(not n.startswith("security.") and n not in _OVERLAY_XATTRS
                               for n in os.listxattr(top, follow_symlinks=False))):
                    return False
        return seen == len(expected)
    except OSError:
        return False
