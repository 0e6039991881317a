"""Choose and write the user namespace's id maps.

Three shapes, tried in this order (as crun does):

* root: identity maps of the ids this process's own user namespace maps (all of them for the
  real root; inside ``unshare -r``, rootless podman or a CI sandbox only some: a map naming
  more would be refused), so root in a container is root and images keep their owners;
* an ordinary user with a range in ``/etc/subuid`` and ``/etc/subgid`` and the setuid
  ``newuidmap``/``newgidmap`` helpers: root inside is the user, ids 1..N map onto the range,
  so ``USER 1000`` or ``chown`` work;
* otherwise a single mapping: root inside is the user, nothing else is mapped.

``MINICONTAINER_IDMAP=single`` forces the last one (useful to test or to avoid the range).
The maps are written from outside the namespace, once per engine.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["IdMap", "choose", "is_host_root", "write"]


@dataclass(frozen=True)
class IdMap:
    kind: str  # "root" | "range" | "single"
    uid_lines: tuple[tuple[int, int, int], ...]  # (inside, outside, count)
    gid_lines: tuple[tuple[int, int, int], ...]

    def describe(self) -> str:
        def one(lines: tuple[tuple[int, int, int], ...]) -> str:
            return ", ".join(f"{i}->{o}" if n == 1 else f"{i}-{i + n - 1}->{o}-{o + n - 1}" for i, o, n in lines)

        if self.kind == "root":
            if self.uid_lines == _FULL and self.gid_lines == _FULL:
                return "identity (real root)"
            return f"identity of this user namespace's ids: uid {one(self.uid_lines)}; gid {one(self.gid_lines)}"
        return f"uid {one(self.uid_lines)}; gid {one(self.gid_lines)} ({self.kind})"

    @property
    def max_uid(self) -> int:
        return max(i + n - 1 for i, _o, n in self.uid_lines)


def _subids(path: str, user: str, uid: int) -> tuple[int, int] | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.strip().split(":")
                if (len(parts) == 3 and parts[0] in (user, str(uid)) and parts[1].isdigit()
                        and parts[2].isdigit() and int(parts[2]) > 0):
                    return int(parts[1]), int(parts[2])
    except OSError:
        return None
    return None


_FULL = ((0, 0, 4294967295),)


def _own_ids(name: str) -> tuple[tuple[int, int, int], ...]:
    """Identity lines for the ids mapped in this process's user namespace (``/proc/self/uid_map``)."""
    try:
        with open(f"/proc/self/{name}", encoding="ascii") as f:
            lines = tuple((int(a), int(a), int(n)) for a, _b, n in (line.split() for line in f if line.strip()))
    except (OSError, ValueError):
        return _FULL
    return lines or _FULL


def is_host_root(idmap: IdMap) -> bool:
    """Whether root in the containers is the host's real root (uid 0 of the initial namespace).

    Then the kernel's own root-owned files (``/proc/sys``, ``/proc/sysrq-trigger``) are open to
    it by plain permission checks, and only the masks over them keep them out of reach.
    """
    return os.geteuid() == 0 and _own_ids("uid_map") == _FULL and any(
        inside == 0 and outside == 0 for inside, outside, _n in idmap.uid_lines)


def choose(mode: str | None = None) -> IdMap:
    """The id maps this process can give a new user namespace."""
    uid, gid = os.geteuid(), os.getegid()
    mode = mode or os.environ.get("MINICONTAINER_IDMAP", "auto")
    if uid == 0 and mode != "single":
        return IdMap("root", _own_ids("uid_map"), _own_ids("gid_map"))
    if mode != "single" and shutil.which("newuidmap") and shutil.which("newgidmap"):
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        su, sg = _subids("/etc/subuid", name, uid), _subids("/etc/subgid", name, uid)
        if su and sg:
            return IdMap("range", ((0, uid, 1), (1, su[0], su[1])), ((0, gid, 1), (1, sg[0], sg[1])))
    return IdMap("single", ((0, uid, 1),), ((0, gid, 1),))


def write(pid: int, idmap: IdMap) -> None:
    """Write ``idmap`` for process ``pid``; raises OSError (or CalledProcessError) when refused."""
    if idmap.kind == "range":
        for tool, lines in (("newuidmap", idmap.uid_lines), ("newgidmap", idmap.gid_lines)):
            args = [tool, str(pid)] + [str(x) for line in lines for x in line]
            subprocess.run(args, check=True, capture_output=True, text=True)
        return
    if idmap.kind == "single":
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    for name, lines in (("uid_map", idmap.uid_lines), ("gid_map", idmap.gid_lines)):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write("".join(f"{i} {o} {n}\n" for i, o, n in lines))
