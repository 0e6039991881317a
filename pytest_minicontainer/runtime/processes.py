"""Processes in a container, as its pid 1 starts, signals, stops and reaps them.

Pid 1 (see :mod:`.init`) serves the library's requests; what it does to the container's
processes lives here: starting a command (a vfork with ``posix_spawn`` when it can, a fork
otherwise), finding a command's whole tree to signal it, stopping everyone for a commit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time

from .. import _sys

__all__ = ["DEFAULT_SIGNALS", "child_exec", "freeze", "returncode", "session_tree", "spawn"]


def freeze(stop: bool) -> None:
    """Stop (SIGSTOP) or continue every process of the container but pid 1.

    Stopping returns once each of them is stopped (or a short while has passed): a commit
    then copies a writable layer nobody changes under it, as Docker pauses a container it
    commits; a process swapping a file for a symlink mid-copy could otherwise make the copy
    read a host file through it.
    """
    with contextlib.suppress(OSError):
        os.kill(-1, signal.SIGSTOP if stop else signal.SIGCONT)  # as pid 1: everyone but us
    if not stop:
        return
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        running = False
        for name in os.listdir("/proc"):
            if name.isdigit() and name != "1":
                try:
                    with open(f"/proc/{name}/stat", "rb") as f:
                        state = f.read().rsplit(b")", 1)[1].split()[0]
                except (OSError, IndexError):
                    continue
                if state not in (b"T", b"t", b"Z", b"X"):
                    running = True
                    break
        if not running:
            return
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGSTOP)  # again: children forked while the first signal went round
        time.sleep(0.001)


def session_tree(root: int) -> set[int]:
    """Processes of ``root``'s session and all descendants of ``root`` (read from /proc)."""
    parents: dict[int, int] = {}
    found: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(name)
        parents[pid] = int(fields[1])
        if int(fields[3]) == root:
            found.add(pid)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if pid not in found and (ppid == root or ppid in found):
                found.add(pid)
                grew = True
    return found


# Signals a new command must start with at their default action: Python ignores SIGPIPE and
# SIGXFSZ, and the zygote SIGINT; a handled signal is reset by exec anyway.
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP)


def spawn(argv: list[str], env: dict[str, str], cwd: str, stdio: list[int]) -> int | None:
    """Start ``argv`` with ``posix_spawn`` (a vfork: no copy of this Python process).

    None when it cannot, so that the fork path runs it again and reports the failure the way
    a shell would (status 126/127, a message).  The program is looked up on the command's
    own PATH, as ``execvpe`` does.  Every descriptor of pid 1 is close-on-exec, so the
    command gets exactly ``stdio``.
    """
    path = argv[0] if "/" in argv[0] else next(
        (p for p in (os.path.join(d, argv[0]) for d in os.get_exec_path(env)) if os.path.isfile(p)
         and os.access(p, os.X_OK)), None)
    if path is None:
        return None
    try:
        os.chdir(cwd)  # posix_spawn has no chdir action: pid 1 itself moves there for the call
    except OSError:
        return None
    try:
        return os.posix_spawn(path, argv, env, setsid=True, setsigmask=(), setsigdef=DEFAULT_SIGNALS,
                              file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio[:3])])
    except (OSError, ValueError):
        return None
    finally:
        os.chdir("/")


def returncode(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def child_exec(argv: list[str], env: dict[str, str], cwd: str, uid: int, gid: int,
                groups: list[int], stdio: list[int], terminal: bool = False) -> None:  # pragma: no cover
    """In the forked child: become the requested process or exit 126/127 with a message.

    With ``terminal`` the descriptors are a pseudo-terminal's slave, made the controlling
    terminal of the new session.
    """
    code = 127
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE,
                    signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        for target, fd in enumerate(stdio[:3]):
            os.dup2(fd, target, inheritable=True)
        if terminal:
            _sys.set_controlling_terminal(0)
        try:
            os.chdir(cwd)
        except OSError as exc:
            code = 126
            raise OSError(exc.errno, f"cannot change to working directory {cwd!r}: {exc.strerror}") from None
        try:
            if os.getuid() != uid or os.getgid() != gid or groups:
                with contextlib.suppress(PermissionError):  # setgroups is denied in a single mapping
                    os.setgroups(groups)
                os.setgid(gid)
                os.setuid(uid)
        except OSError as exc:
            code = 126
            raise OSError(exc.errno, f"cannot switch to uid {uid}, gid {gid}: {exc.strerror} "
                          "(the user namespace does not map it)") from None
        os.umask(0o022)
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            code = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
            raise OSError(exc.errno, f"exec {argv[0]!r}: {exc.strerror}") from None
    except BaseException as exc:
        with contextlib.suppress(OSError):
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            os.write(2, f"minicontainer: {text}\n".encode())
    finally:
        os._exit(code)
