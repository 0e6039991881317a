"""Pid 1 of every container: sets the container up, then serves requests and reaps.

It is forked from the warm zygote (no interpreter start per container).  After the mount plan
and ``pivot_root`` it answers requests on the container's control socket:

``exec``    fork a process (own session, given stdio fds, env, cwd, uid/gid) and report its
            pid now and its exit status later on the request's reply socket;
``kill``    signal a process (and its process group) by pid;
``open``    open a file inside the container and hand the descriptor back (file access
            without ``cat`` in the image);
``shutdown`` kill every process of the container and exit.

Pid 1 also reaps every orphan, as an init must.  It never runs user code itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
from typing import Any

from .. import _sys
from . import mounts, protocol, users
from .server import Server

__all__ = ["container_main", "spare_main"]


class _Init(Server):
    def __init__(self, ctl: socket.socket) -> None:
        super().__init__(ctl)
        self.waiters: dict[int, socket.socket] = {}  # pid -> reply socket awaiting its status
        # No handler for SIGTERM and friends: the kernel never delivers a signal without a
        # handler to a pid namespace's init, and children must not inherit an "ignore".

    def _exited(self, pid: int, status: int) -> None:
        reply = self.waiters.pop(pid, None)
        if reply is not None:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"status": _returncode(status)})
            reply.close()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._exited(pid, status)

    def handle(self, message: dict[str, Any], fds: list[int]) -> bool:
        reply = socket.socket(fileno=fds[0])
        extra = fds[1:]
        op = message.get("op")
        try:
            if op == "exec":
                pid = self.exec(message, extra)
                self.waiters[pid] = reply
                protocol.send(reply, {"ok": True, "pid": pid})
                return False
            if op == "kill":
                self.kill(int(message["pid"]), int(message["signal"]), bool(message.get("group", True)))
                protocol.send(reply, {"ok": True})
            elif op == "user":
                uid, gid, groups, home = users.resolve(message.get("user"))
                protocol.send(reply, {"ok": True, "uid": uid, "gid": gid, "groups": groups, "home": home})
            elif op == "socket":
                # A socket created here belongs to the container's network namespace; handed
                # back, it lets the library connect to the container's loopback without root
                # or a port on the host (rootlesskit's builtin port driver does the same).
                family = socket.AF_INET6 if message.get("family") == "inet6" else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    protocol.send(reply, {"ok": True}, [sock.fileno()])
                finally:
                    sock.close()
            elif op == "open":
                fd = _open_inside(message)
                try:
                    protocol.send(reply, {"ok": True}, [fd])
                finally:
                    os.close(fd)
            elif op == "shutdown":
                self.shutdown()
                protocol.send(reply, {"ok": True})
                reply.close()
                return True
            else:
                protocol.send(reply, {"ok": False, "error": f"unknown request {op!r}"})
        except OSError as exc:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": False, "error": str(exc), "errno": exc.errno or 0})
        except (KeyError, ValueError, TypeError, LookupError) as exc:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": False, "error": str(exc)})
        finally:
            for fd in extra:
                with contextlib.suppress(OSError):
                    os.close(fd)
        reply.close()
        return False

    # -- requests -----------------------------------------------------------------------
    def exec(self, message: dict[str, Any], stdio: list[int]) -> int:
        argv = [str(a) for a in message["argv"]]
        env = {str(k): str(v) for k, v in message.get("env", {}).items()}
        cwd = str(message.get("cwd") or "/")
        uid, gid, groups, home = users.resolve(message.get("user"))
        if home and "HOME" not in env:
            env["HOME"] = home
        if uid == os.getuid() and gid == os.getgid() and not groups:
            # The common case (root in the container): subprocess spawns with vfork, which
            # costs a fraction of forking this Python process.
            pid = _spawn(argv, env, cwd, stdio)
            if pid is not None:
                return pid
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through its exit status
            _child_exec(argv, env, cwd, uid, gid, groups, stdio)
        return pid

    def kill(self, pid: int, sig: int, group: bool) -> None:
        """Signal ``pid``; with ``group`` also its process group and every process of its session.

        Each exec starts a session of its own, so the session is the command's process tree,
        except for what detached itself with setsid (its descendants are found through
        /proc's parent links).
        """
        targets = {pid}
        if group:
            targets |= _tree(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
        for p in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)

    def shutdown(self) -> None:
        """Kill every process in the pid namespace and wait for all of them."""
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # as pid 1 this reaches everyone in the namespace but us
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            self._exited(pid, status)


def _tree(root: int) -> set[int]:
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


def _spawn(argv: list[str], env: dict[str, str], cwd: str, stdio: list[int]) -> int | None:
    """Start ``argv`` through subprocess (vfork); None when it fails, so that the fork path
    runs it again and reports the failure the way a shell would (status 126/127, a message)."""
    try:
        proc = subprocess.Popen(argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], cwd=cwd, env=env,
                                start_new_session=True, restore_signals=True, close_fds=True)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    # pid 1 reaps with waitpid(-1); tell subprocess the child is not its business any more.
    proc.returncode = 0
    return proc.pid


def _returncode(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _open_inside(message: dict[str, Any]) -> int:
    path = str(message["path"])
    flags = int(message.get("flags", os.O_RDONLY))
    if message.get("mkdirs"):
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
    return os.open(path, flags | os.O_CLOEXEC, int(message.get("mode", 0o644)))


def _child_exec(argv: list[str], env: dict[str, str], cwd: str, uid: int, gid: int,
                groups: list[int], stdio: list[int]) -> None:  # pragma: no cover
    """In the forked child: become the requested process or exit 126/127 with a message."""
    code = 127
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE,
                    signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        for target, fd in enumerate(stdio[:3]):
            os.dup2(fd, target, inheritable=True)
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


def spare_main(stage: str, work: socket.socket) -> None:
    """Pid 1 of a *spare* container: set up what needs no spec, then wait for one.

    The namespaces exist, loopback is up, /proc and /dev are mounted under ``stage``; the
    zygote hands over the spec (and the reply and control sockets) when a test asks for a
    container, and the rest of the set-up takes a fraction of the full cost.
    """
    _sys.set_parent_death_signal(signal.SIGKILL)
    problem: BaseException | None = None
    try:
        _sys.bring_up_loopback()
        mounts.stage(stage)
    except BaseException as exc:
        problem = exc
    message, fds = protocol.recv(work)
    work.close()
    if message is None or len(fds) < 2:
        os._exit(0)
    ctl, reply = socket.socket(fileno=fds[1]), socket.socket(fileno=fds[0])
    if problem is not None:
        _report(reply, problem)
        os._exit(1)
    container_main(message["spec"], ctl, reply, staged=stage)


def _report(reply: socket.socket, exc: BaseException) -> None:
    with contextlib.suppress(OSError):
        protocol.send(reply, {"ok": False, "error": str(exc), "errno": getattr(exc, "errno", 0) or 0,
                              "type": type(exc).__name__})


def container_main(spec: dict[str, Any], ctl: socket.socket, reply: socket.socket,
                   staged: str | None = None) -> None:
    """Run as pid 1 of a new container; never returns."""
    code = 0
    try:
        _sys.set_parent_death_signal(signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the zygote ignores it; commands must not
        if staged is None and spec.get("network", "none") != "host":
            _sys.bring_up_loopback()
        _sys.sethostname(spec["hostname"])
        mounts.apply_plan(mounts.build_plan(spec), staged)
        init = _Init(ctl)
        protocol.send(reply, {"ok": True})
        reply.close()
        init.serve()
    except BaseException as exc:
        code = 1
        _report(reply, exc)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(code)
