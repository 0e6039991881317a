"""Resolve a ``user`` option (``root``, ``1000``, ``1000:1000``, ``app``, ``app:staff``).

Names are looked up in the container's own ``/etc/passwd`` and ``/etc/group`` (pid 1 calls
this after ``pivot_root``), as Docker does: the host's user database means nothing inside.
"""

from __future__ import annotations

__all__ = ["UnknownUser", "resolve"]


class UnknownUser(LookupError):
    """The image has no such user or group."""


def _table(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


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
        for row in _table("/etc/passwd"):
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
