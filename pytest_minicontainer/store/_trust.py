"""Refuse a store that another user controls.

The store holds what containers run (layers, writable layers, set-user-ID programs made in a
container) and the ``run/`` directory the runtime trusts.  A store another user can write to,
or swap through a directory of theirs, lets that user plant a ``/bin/sh`` root's containers
run, or pick up a set-user-ID program root made in a container: as root that is local root.
So before anything is read from a store or written into it, the path to it and its own
directories must be the caller's (or root's, for the ancestors), closed to others, as
OpenSSH's ``secure_filename`` checks a key file's path.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from ..errors import StoreError

__all__ = ["check_ancestors", "check_own_dir", "owner_name"]


def owner_name(uid: int) -> str:
    """``name (uid N)`` for messages; the number alone when the user is unknown."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _refuse(path: Path, problem: str, fix: str) -> StoreError:
    return StoreError(f"refusing the image store at {path}: {problem}\n  fix: {fix}")


def _unmapped_ids() -> frozenset[int]:
    """The id that stands for "not mapped here" inside a user namespace, if we are in one.

    In a rootless CI container or under ``unshare --user``, the host root's directories on
    the way to the store (``/``, ``/tmp``) show as the overflow id (65534, "nobody"): they
    belong to someone outside the namespace, whom no one inside can be.
    """
    try:
        with open("/proc/self/uid_map") as f:
            if f.read().split() == ["0", "0", "4294967295"]:
                return frozenset()  # the initial namespace: every id is what it says
        with open("/proc/sys/kernel/overflowuid") as f:
            return frozenset({int(f.read())})
    except (OSError, ValueError):
        return frozenset({65534})


def _trusted_dir(path: Path, st: os.stat_result, me: int) -> None:
    """An ancestor may be root's or the caller's, and writable by others only when sticky."""
    if st.st_uid not in (0, me) and st.st_uid not in _unmapped_ids():
        raise _refuse(path, f"{path} belongs to {owner_name(st.st_uid)}, who could swap what lies below it",
                      "keep the store in a directory of your own (e.g. the default ~/.cache)")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise _refuse(path, f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o}), "
                      "who could swap what lies below it",
                      f"chmod go-w {path}, or keep the store in a directory of your own")


def check_ancestors(root: Path) -> None:
    """Check every directory on the way to ``root`` and every symlink on it.

    A symlink is followed only when the directory holding it is trusted (see
    :func:`_trusted_dir`) and, in a sticky directory such as /tmp, only when it is the
    caller's or root's own link: anyone else's link there could point anywhere tomorrow.
    The real directories it leads to are checked the same way.  The walk stops at the first
    missing component: the store makes the rest, as the caller's.
    """
    me = os.geteuid()
    todo = list(reversed(Path(root).absolute().parts[1:]))  # next component last
    current = Path("/")
    links = 0
    try:
        while todo:
            name = todo.pop()
            st = os.stat(current)
            _trusted_dir(current, st, me)
            if name in (".", ""):
                continue
            if name == "..":
                current = current.parent
                continue
            step = current / name
            try:
                lst = os.lstat(step)
            except FileNotFoundError:
                return
            if stat.S_ISLNK(lst.st_mode):
                links += 1
                if links > 40:
                    raise _refuse(root, "too many symlinks on its path", "point the store at a real directory")
                if st.st_mode & stat.S_ISVTX and lst.st_uid not in (0, me):
                    raise _refuse(root, f"{step} is a symlink of {owner_name(lst.st_uid)} in a shared directory",
                                  "point the store at the real directory, one of your own")
                target = Path(os.readlink(step))
                if target.is_absolute():
                    current = Path("/")
                    todo.extend(reversed(target.parts[1:]))
                else:
                    todo.extend(reversed(target.parts))
                continue
            if not stat.S_ISDIR(lst.st_mode):
                raise _refuse(root, f"{step} is not a directory", "choose a directory for the store")
            current = step
    except PermissionError as exc:
        raise _refuse(root, f"{exc.filename or current} cannot be read ({exc.strerror})",
                      "choose a store location you can reach (the default ~/.cache/pytest-minicontainer)") from None


def check_own_dir(path: Path, what: str = "directory") -> None:
    """The store's own directories and files: the caller's, not a symlink, closed to others."""
    me = os.geteuid()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, f"its {what} {path} is a symlink", f"remove {path}: the store makes it again")
    if st.st_uid != me:
        raise _refuse(path, f"its {what} {path} belongs to {owner_name(st.st_uid)}, not to you "
                      f"({owner_name(me)})",
                      "use a store of your own: --minicontainer-store / $MINICONTAINER_STORE pointing at a "
                      "directory you own (the default ~/.cache/pytest-minicontainer is per user)")
    if st.st_mode & 0o022:
        raise _refuse(path, f"its {what} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})",
                      f"chmod go-w {path} if nobody else wrote to it, else delete the store")

