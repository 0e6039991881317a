"""The mount points a container's writable layer holds that are not the container's change.

To mount a file or directory where the image has none (the resolver configuration of
``host``/``slirp``, a network's ``/etc/hosts``, a build step's ``RUN --mount`` targets), the
runtime makes an empty one in the writable layer.  Docker keeps its mount points out of every
commit (they live in a layer it never saves); here a commit, or a build step's layer, must
leave them out, or the image would get empty files and directories that hide nothing, and an
empty ``resolv.conf`` that shadows the resolver of every later container.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Sequence
from pathlib import Path

from ..image import Image
from ..rootpath import resolve_in_root
from ._view import ImageView, is_opaque

__all__ = ["drop_mount_stubs"]


def drop_mount_stubs(layer: Path, parent: Image, targets: Sequence[str]) -> None:
    """Take the empty mount points of ``targets`` out of ``layer`` (a writable layer over
    ``parent``), with the directories made, or copied up unchanged, only for them.

    Only where ``parent`` lacks the target (an image that has one keeps its own), never
    through a symbolic link of the layer (it could lead onto the host), and only what is still
    empty: what the container wrote stays.  A path that cannot be read (private to another
    id) is left as it is.
    """
    view = ImageView(parent)
    for target in targets:
        with contextlib.suppress(OSError):
            _drop(layer, view, target)


def _drop(layer: Path, view: ImageView, target: str) -> None:
    parts = resolve_in_root(target, view.entry)  # where the runtime mounts it: symlinks followed
    if not parts:
        return
    rel = "/".join(parts)
    if view.entry(rel) is not None:
        return
    for n in range(1, len(parts)):
        if not stat.S_ISDIR(os.lstat(layer.joinpath(*parts[:n])).st_mode):
            return
    here = layer / rel
    st = os.lstat(here)
    if stat.S_ISREG(st.st_mode) and not st.st_size:
        here.unlink()
    elif stat.S_ISDIR(st.st_mode) and not any(here.iterdir()) and not is_opaque(str(here)):
        here.rmdir()
    else:
        return
    rel = posixpath.dirname(rel)
    while rel:
        here = layer / rel
        if any(here.iterdir()) or is_opaque(str(here)):
            return
        below = view.entry(rel)
        if below is not None:  # a copy-up: it goes only when the container did not change it
            mine, theirs = os.lstat(here), os.lstat(below)
            if not stat.S_ISDIR(theirs.st_mode) or (mine.st_mode, mine.st_uid, mine.st_gid) != (
                    theirs.st_mode, theirs.st_uid, theirs.st_gid):
                return
        here.rmdir()
        rel = posixpath.dirname(rel)
