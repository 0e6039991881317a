"""Pid 1 of every container: sets the container up, then serves requests and reaps.

It is forked from the warm zygote (no interpreter start per container).  After the mount plan
and ``pivot_root`` it answers requests on the container's control socket:

``exec``    fork a process (own session, given stdio fds, env, cwd, uid/gid) and report its
            pid now and its exit status later on the request's reply socket;
``kill``    signal a process (and its process group) by pid;
``open``    open a file inside the container and hand the descriptor back (file access
            without ``cat`` in the image);
``shutdown`` kill every process of the container and exit (with :data:`REMOVE_SCRATCH` when
            asked to: the zygote then disposes of the scratch dir when it reaps pid 1,
            and the library needs no second request).

and ``freeze``, ``user``, ``socket`` and ``netns`` besides: one method each (``op_<name>``,
listed in ``_Init.ops``), with the messages' shapes in :mod:`.messages`.  Pid 1 also reaps
every orphan, as an init must.  It never runs user code itself; what it does to the
container's processes is in :mod:`.processes`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import stat
import sys
from typing import NoReturn, cast

from .. import _sys
from . import mounts, processes, protocol, users
from .messages import (
    ContainerSpec,
    ExecRequest,
    ExitStatus,
    FreezeRequest,
    Handover,
    KillRequest,
    NetnsRequest,
    OpenRequest,
    PidReply,
    ShutdownRequest,
    SocketRequest,
    StartedReply,
    UserReply,
    UserRequest,
)
from .server import OK, Exchange, Server, children

__all__ = ["REMOVE_SCRATCH", "container_main", "spare_main"]

#: Pid 1's exit status after a ``shutdown`` that asked for the container's scratch dir to go.
REMOVE_SCRATCH = 77


class _Init(Server):
    expected = (OSError, ValueError, TypeError, LookupError)  # a malformed request among them
    strerror = True

    def __init__(self, ctl: socket.socket) -> None:
        super().__init__(ctl)
        self.waiters: dict[int, socket.socket] = {}  # pid -> reply socket awaiting its status
        self.exit_code = 0
        # No handler for SIGTERM and friends: the kernel never delivers a signal without a
        # handler to a pid namespace's init, and children must not inherit an "ignore".

    def exited(self, pid: int, status: int) -> None:
        reply = self.waiters.pop(pid, None)
        if reply is not None:
            answer: ExitStatus = {"status": processes.returncode(status)}
            with contextlib.suppress(OSError):
                protocol.send(reply, answer)
            reply.close()

    # -- one method per op (see ``ops``) -----------------------------------------------------
    def op_exec(self, message: ExecRequest, ex: Exchange) -> bool:
        if message.get("tty"):
            pid, master = self.exec_terminal(message)
            self.waiters[pid] = ex.keep()
            try:
                ex.answer(_started(pid), [master])
            finally:
                os.close(master)
            return False
        pid = self.exec(message, ex.fds)
        self.waiters[pid] = ex.keep()
        ex.answer(_started(pid))
        return False

    def op_kill(self, message: KillRequest, ex: Exchange) -> bool:
        self.kill(int(message["pid"]), int(message["signal"]), bool(message.get("group", True)))
        ex.answer()
        return False

    def op_freeze(self, message: FreezeRequest, ex: Exchange) -> bool:
        processes.freeze(bool(message.get("stop")))
        ex.answer()
        return False

    def op_user(self, message: UserRequest, ex: Exchange) -> bool:
        uid, gid, groups, home = users.resolve(message.get("user"))
        answer: UserReply = {"ok": True, "uid": uid, "gid": gid, "groups": groups, "home": home}
        ex.answer(answer)
        return False

    def op_socket(self, message: SocketRequest, ex: Exchange) -> bool:
        # A socket created here belongs to the container's network namespace; handed back, it
        # lets the library connect to the container's loopback without root or a port on the
        # host (rootlesskit's builtin port driver does the same).
        family = socket.AF_INET6 if message.get("family") == "inet6" else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            ex.answer(OK, [sock.fileno()])
        return False

    def op_netns(self, message: NetnsRequest, ex: Exchange) -> bool:
        """The container's network namespace, for the zygote's network helper (Network.connect)."""
        fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            ex.answer(OK, [fd])
        finally:
            os.close(fd)
        return False

    def op_open(self, message: OpenRequest, ex: Exchange) -> bool:
        fd = _open_inside(message)
        try:
            ex.answer(OK, [fd])
        finally:
            os.close(fd)
        return False

    def op_shutdown(self, message: ShutdownRequest, ex: Exchange) -> bool:
        self.shutdown()
        self.exit_code = REMOVE_SCRATCH if message.get("remove") else 0
        ex.answer()
        return True

    ops = {"exec": op_exec, "kill": op_kill, "freeze": op_freeze, "user": op_user, "socket": op_socket,
           "netns": op_netns, "open": op_open, "shutdown": op_shutdown}

    # -- requests -----------------------------------------------------------------------
    def exec(self, message: ExecRequest, stdio: list[int], terminal: bool = False) -> int:
        argv = [str(a) for a in message["argv"]]
        env = {str(k): str(v) for k, v in message.get("env", {}).items()}
        cwd = str(message.get("cwd") or "/")
        uid, gid, groups, home = users.resolve(message.get("user"))
        if home and "HOME" not in env:
            env["HOME"] = home
        if terminal:
            # The slave is the command's, as login(1) makes it: its user may reopen /dev/tty
            # and change the modes; EPERM/EINVAL where the namespace does not map that user.
            # The fork path below makes it the controlling terminal (posix_spawn cannot).
            with contextlib.suppress(OSError):
                os.fchown(stdio[0], uid, gid)
        elif uid == os.getuid() and gid == os.getgid() and not groups:
            # The common case (root in the container): a vfork costs a fraction of forking
            # this Python process.
            spawned = processes.spawn(argv, env, cwd, stdio)
            if spawned is not None:
                return spawned
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through its exit status
            processes.child_exec(argv, env, cwd, uid, gid, groups, stdio, terminal)
        return pid

    def exec_terminal(self, message: ExecRequest) -> tuple[int, int]:
        """Start the command on a new pseudo-terminal of the container's devpts; (pid, master).

        The terminal comes from the container's own devpts instance, so its number, its
        ``/dev/pts`` entry and its owner are the container's, and ``tty`` names it.  The slave
        becomes the controlling terminal of the command's new session: job control, ^C and
        SIGWINCH work as on a console.  The master goes back to the caller, which relays
        the bytes; pid 1 keeps neither end, so the caller reads EIO once the command and
        everything it started have closed the terminal.
        """
        master, slave = _sys.open_terminal("/dev/ptmx")
        try:
            size = message.get("tty")
            if isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) and n > 0 for n in size):
                _sys.set_window_size(master, size[0], size[1])
            return self.exec(message, [slave, slave, slave], terminal=True), master
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)

    def kill(self, pid: int, sig: int, group: bool) -> None:
        """Signal ``pid``; with ``group`` also its process group and every process of its session.

        Each exec starts a session of its own, so the session is the command's process tree,
        except for what detached itself with setsid (its descendants are found through
        /proc's parent links).
        """
        targets = {pid}
        if group:
            targets |= processes.session_tree(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
        for p in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)

    def shutdown(self) -> None:
        """Kill every process in the pid namespace and wait for all of them."""
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # as pid 1 this reaches everyone in the namespace but us
        for pid, status in children(block=True):
            self.exited(pid, status)


def _started(pid: int) -> PidReply:
    return {"ok": True, "pid": pid}


_SPECIAL = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
            stat.S_IFSOCK: "a socket"}


def _open_inside(message: OpenRequest) -> int:
    """Open a file for the library's file requests: a regular file or a directory, never more.

    A FIFO would block pid 1 in ``open`` (and every later request with it), and a device
    such as /dev/zero would make a read endless: the open does not wait, and what is not a
    file is refused (commands can still use it).  ``O_PATH`` (does it exist?) takes anything.
    """
    path = str(message["path"])
    flags = int(message.get("flags", os.O_RDONLY))
    if message.get("mkdirs"):
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
    if flags & os.O_PATH:
        return os.open(path, flags | os.O_CLOEXEC)
    try:
        fd = os.open(path, flags | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY, int(message.get("mode", 0o644)))
    except OSError as exc:  # ENXIO: a FIFO opened for writing that nobody reads
        if exc.errno == errno.ENXIO and stat.S_ISFIFO(os.stat(path).st_mode):
            raise OSError(errno.EINVAL, f"{_SPECIAL[stat.S_IFIFO]}, not a file: use it from a command (exec) "
                                        "instead") from None
        raise
    try:
        kind = _SPECIAL.get(stat.S_IFMT(os.fstat(fd).st_mode))
        if kind is not None:
            raise OSError(errno.EINVAL, f"{kind}, not a file: use it from a command (exec) instead")
        # Pid 1 opens the file as itself: an image's symlink to /proc/self/... would hand over
        # pid 1's own environment, memory maps or descriptors.  Commands read procfs (exec).
        if _sys.descriptor_filesystem_type(fd) == _sys.PROC_SUPER_MAGIC:
            raise OSError(errno.EPERM, "a file of /proc, which file requests do not open: read it with "
                                       "a command (exec) instead")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def spare_main(stage: str, work: socket.socket, scratch: str, cid: str,
               template: ContainerSpec | None, host_root: bool = False, nest_fd: int = -1) -> NoReturn:
    """Pid 1 of a *spare* container: set up what it can before its spec is known, then wait.

    The namespaces exist, loopback is up, /proc and /dev are mounted under ``stage``.  With
    a ``template`` (the spec of the previous container, see ``mounts.template_key``) the
    whole root is built and entered too, so that when the zygote hands over a spec with the
    same key (and the reply and control sockets), only the hostname is left to set.
    """
    _sys.set_parent_death_signal(signal.SIGKILL)
    problem: BaseException | None = None
    prepared: str | None = None  # the template key of the root made ahead
    nested = False
    try:
        _sys.bring_up_loopback()
        mounts.stage(stage, host_root)
        if template is not None:
            os.umask(0o022)
            mounts.apply_plan(mounts.build_plan(template, scratch), stage)
            prepared = mounts.template_key(template)
            if nest_fd >= 0:  # the root is complete: lock it now, off the container's start
                _lock_mounts(nest_fd)
                nested = True
    except BaseException as exc:
        problem = exc
    received, fds = protocol.recv(work)
    work.close()
    if received is None or len(fds) < 2:
        os._exit(0)
    message = cast(Handover, received)  # the zygote's own words
    ctl, reply = socket.socket(fileno=fds[1]), socket.socket(fileno=fds[0])
    spec = message["spec"]
    if problem is None and prepared is not None and message.get("key") != prepared:
        problem = ValueError("internal error: a spare prepared for another image was handed this container")
    if problem is not None:
        _report(reply, problem, cid, scratch)
        os._exit(1)
    container_main(spec, ctl, reply, scratch, cid, staged=stage, prepared=prepared is not None, host_root=host_root,
                   nest_fd=nest_fd, nested=nested)


def _lock_mounts(nest_fd: int) -> None:
    """Rootless: lock every mount set up so far against root in the container.

    Rootless, root in a container has CAP_SYS_ADMIN in the Engine's user namespace, which
    owns the container's mount namespace: it could remount a ``readonly=True`` bind
    read-write, or unmount a mask over /proc.  A mount namespace made by a *child* user
    namespace receives every mount locked (MNT_LOCKED: flags cannot change, and no mount can
    be taken off what it covers), as bubblewrap does it.  The zygote made that child
    namespace once (``nest_fd``; it maps every id of the Engine's one-to-one, so nothing else
    changes for the container's users and files): joining it and unsharing the mount (and
    uts, so that root inside keeps its hostname) namespace costs no fork and no map writes.

    The network namespace stays the Engine's (veths and slirp4netns are there), where root
    in the child has no capability: the port floor and ping group set in ``mounts._proc`` (as
    Docker sets them) keep ports below 1024 and datagram ping working.
    """
    _sys.setns(nest_fd, _sys.CLONE_NEWUSER)
    os.close(nest_fd)
    _sys.unshare(_sys.CLONE_NEWNS | _sys.CLONE_NEWUTS)


def _report(reply: socket.socket, exc: BaseException, cid: str, scratch: str) -> None:
    with contextlib.suppress(OSError):
        protocol.send(reply, protocol.error_reply(exc, cid=cid, scratch=scratch))


def container_main(spec: ContainerSpec, ctl: socket.socket, reply: socket.socket, scratch: str, cid: str,
                   staged: str | None = None, prepared: bool = False, host_root: bool = False,
                   nest_fd: int = -1, nested: bool = False) -> NoReturn:
    """Run as pid 1 of a new container (``prepared``: its root is entered already); never returns.

    The kernel's key management calls and io_uring are refused (see
    ``_sys.deny_shared_kernel_calls``), and CAP_SYS_RESOURCE goes: keyrings and the
    namespace limits belong to the user namespace, which all containers of an Engine share.

    With ``host_root`` (root inside is the host's real root) CAP_SYS_ADMIN goes once the
    container is set up, for pid 1 and all it starts, as Docker's containers run without it:
    the masks over /proc's kernel files are plain mounts, which root with that capability
    could take off (or go around with a new /proc) and then write the host's sysctls.
    """
    code = 0
    try:
        _sys.set_parent_death_signal(signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the zygote ignores it; commands must not
        os.umask(0o022)  # Docker's: files that commands and file requests create get usual modes
        if not prepared:
            if staged is None and spec.get("network", "none") != "host":
                _sys.bring_up_loopback()
            mounts.apply_plan(mounts.build_plan(spec, scratch), staged, host_root)
        _sys.sethostname(spec.get("hostname") or cid)
        if nest_fd >= 0 and not nested:
            _lock_mounts(nest_fd)
        # Before CAP_SYS_ADMIN goes: without it, a filter needs no_new_privs, which would
        # stop set-user-ID programs in the container.
        _sys.deny_shared_kernel_calls()
        # The user namespace's own limits (/proc/sys/user/max_*_namespaces) are shared by all
        # containers of the Engine: rootless, root inside could unmount the read-only /proc/sys
        # and set them to 0, and no later container would start.  Writing them takes this
        # capability, which Docker's containers do not have either.
        _sys.drop_capability(_sys.CAP_SYS_RESOURCE)
        if host_root:
            _sys.drop_capability(_sys.CAP_SYS_ADMIN)
        # Root in the container could otherwise ptrace pid 1 (stop it, and every request of
        # the library with it, or answer in its place) and read /proc/1/environ (the test
        # process's environment, CI secrets included).  Only now: slirp4netns has entered the
        # network namespace through /proc/<pid 1> by then.  (runc's init does the same.)
        _sys.set_dumpable(False)
        # Nor should /proc/1/fd lead to the zygote's log on the host; errors from here on
        # travel on the sockets anyway.
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        init = _Init(ctl)
        started: StartedReply = {"ok": True, "id": cid, "scratch": scratch}
        protocol.send(reply, started)
        reply.close()
        init.serve()
        code = init.exit_code
    except BaseException as exc:
        code = 1
        _report(reply, exc, cid, scratch)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(code)
