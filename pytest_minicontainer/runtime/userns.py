"""The zygote's user-namespace set-up: nested namespaces forbidden (as root) or made once (rootless).

Root in the containers is either the host's root (real root): then no container may make a
user namespace of its own; or, rootless, a user whose mounts must be locked: then every
container's pid 1 joins one child user namespace made here once (see ``init._lock_mounts``).
"""

from __future__ import annotations

import errno
import os
import sys

from .. import _sys

__all__ = ["child_user_namespace", "forbid_nested", "identity_map"]


def forbid_nested() -> None:
    """Root in the containers is the host's root: they must not make user namespaces of their own.

    Inside one, root regains every capability over a new mount namespace and may mount, say,
    a cgroup hierarchy whose files belong to the host's root, and write them (kill host
    processes).  The limit is this user namespace's own, so it binds every container; they
    cannot lift it, /proc/sys being read-only for them.
    """
    try:
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
    except OSError as exc:  # pragma: no cover - the host's /proc/sys is read-only here already
        print(f"zygote: cannot forbid nested user namespaces: {exc}", file=sys.stderr, flush=True)


def identity_map(path: str) -> str:
    """A map giving a child namespace every id this one has, one line per range of ours.

    One line per range: the kernel wants each line of a child's map to fall within a
    single range of its parent's ("0 0 65537" across "0 1001 1" + "1 100000 65536" fails).
    """
    with open(path) as f:
        return "".join(f"{line.split()[0]} {line.split()[0]} {line.split()[2]}\n" for line in f if line.strip())


def child_user_namespace() -> int:
    """A user namespace below this one that maps every id of ours one-to-one; its descriptor.

    Made once per Engine: a child unshares into it and waits while this process (with
    CAP_SETUID here) writes its maps and opens it, then exits; the descriptor keeps the
    namespace.  Close-on-exec, so no command ever holds it.
    """
    uids, gids = identity_map("/proc/self/uid_map"), identity_map("/proc/self/gid_map")
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(done_w)  # or the read below would never see the end of the pipe
            os.close(ready_r)
            _sys.unshare(_sys.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(errno.EPERM, "cannot make the containers' nested user namespace")
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(uids)
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(gids)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)
