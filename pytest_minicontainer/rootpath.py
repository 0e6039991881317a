"""Resolve a path the way a process chrooted into an image would see it.

Symbolic links met on the way are followed with the image as ``/`` (an absolute target starts
again at the image's root, ``..`` never climbs above it), so an image's ``/var/run -> /run``
or ``/etc -> ../../host`` can never point the library at the host's own files.  The runtime
(mount targets in a merged root) and the builder (a layered view of an image) share it; each
says how a path inside the image is found on the host.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["MAX_SYMLINKS", "resolve_in_root"]

MAX_SYMLINKS = 40  # as the kernel's ELOOP limit


def resolve_in_root(path: str, lookup: Callable[[str], str | None], *, follow_last: bool = True,
                    must_exist: bool = False) -> list[str] | None:
    """The symlink-free components of ``path`` inside the image.

    ``lookup(rel)`` gives the host path of ``rel`` ("a/b", no leading slash) or None when it
    does not exist.  A missing component ends the walk: with ``must_exist`` the answer is
    None, otherwise the rest of ``path`` is taken as it is.  Too many links give None.
    """
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        host = lookup("/".join([*done, part]))
        if host is None or not os.path.lexists(host):
            if must_exist:
                return None
            done.append(part)
            continue
        if os.path.islink(host) and (todo or follow_last):
            hops += 1
            if hops > MAX_SYMLINKS:
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p] + todo
            continue
        done.append(part)
    return done
