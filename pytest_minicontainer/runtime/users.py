"""Resolve a ``user`` option (``root``, ``1000``, ``1000:1000``, ``app``, ``app:staff``).

Names are looked up in the container's own ``/etc/passwd`` and ``/etc/group`` (pid 1 calls
this after ``pivot_root``), as Docker does: the host's user database means nothing inside.
"""

from __future__ import annotations

import os
import stat

__all__ = ["UnknownUser", "resolve"]


class UnknownUser(LookupError):
    """The image has no such user or group."""


MAX_TABLE = 16 << 20  # bytes; real passwd/group files are kilobytes


def _table(path: str) -> list[list[str]]:
    """The rows of ``path``; none when the image has no such file.

    The image decides what ``/etc/passwd`` is, and pid 1 reads it: a FIFO would block pid 1
    (no request would be answered again, ``timeout=`` included) and a symlink to /dev/zero
    would grow it without bound.  So the file is opened without blocking, must be a regular
    file, and is read up to a cap.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UnknownUser(f"cannot read the container's {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnknownUser(f"the container's {path} is not a regular file, so no user can be looked up in it"
                              f"\n  fix: make {path} a regular file in the image, or give the user as numbers"
                              " (user='1000:1000')")
        data = f.read(MAX_TABLE + 1)
    if len(data) > MAX_TABLE:
        raise UnknownUser(f"the container's {path} is larger than {MAX_TABLE >> 20} MiB: not read"
                          f"\n  fix: give users as numbers (user='1000:1000')")
    lines = data.decode("utf-8", errors="replace").splitlines()
    return [line.split(":") for line in lines if line.strip() and not line.startswith("#")]


def _group_id(spec: str) -> int:
    if spec.isdigit():
        return int(spec)
    for row in _table("/etc/group"):
        if len(row) >= 3 and row[0] == spec:
            return int(row[2])
    raise UnknownUser(f"no group {spec!r} in the container's /etc/group")


def resolve(user: str | int | None) -> tuple[int, int, list[int], str | None]:
    """Return ``(uid, gid, supplementary groups, home)`` for ``user`` (None means root)."""
    if user is None or user == "":
        return 0, 0, [], "/root"
    name, _, group = str(user).partition(":")
    uid: int
    gid: int | None = None
    home: str | None = None
    if name.isdigit():
        uid = int(name)
        try:  # numbers need no table: a broken one only loses the home directory
            rows = _table("/etc/passwd")
        except UnknownUser:
            rows = []
        for row in rows:
            if len(row) >= 6 and row[2] == name:
                gid, home = int(row[3]), row[5]
                break
    else:
        for row in _table("/etc/passwd"):
            if len(row) >= 6 and row[0] == name:
                uid, gid, home = int(row[2]), int(row[3]), row[5]
                break
        else:
            if name == "root":
                uid, gid, home = 0, 0, "/root"
            else:
                raise UnknownUser(f"no user {name!r} in the container's /etc/passwd")
    if group:
        gid = _group_id(group)
    if gid is None:  # a uid no passwd line names: group root, as Docker gives it
        gid = 0
    groups: list[int] = []
    if not name.isdigit() and not group:
        for row in _table("/etc/group"):
            if len(row) >= 4 and name in row[3].split(",") and row[2].isdigit():
                groups.append(int(row[2]))
    return uid, gid, groups, home
