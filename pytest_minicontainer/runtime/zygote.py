"""The zygote: one single-threaded helper process per Engine that forks every container.

Why a separate process: ``unshare(CLONE_NEWUSER)`` refuses multi-threaded callers and pytest
may run threads, and a warm Python that is already inside the user namespace can fork a
container in about a millisecond, with no interpreter start and no id-map write per container.

Life cycle: the library starts it with ``python -c`` calling :func:`main` with ``FD DIR``
(FD: its end of a SEQPACKET socket; DIR: the engine's scratch directory).  It enters a new
user namespace, tells the library its pid so that the maps are written from outside (writing
them from inside breaks overlayfs for real root), then serves the requests of its
``ops`` table (``create``, ``destroy``, ``remove``, ``copy``, ``call`` (see :func:`_call`) and
the networks').  When the library's socket closes
(the library exited, even by SIGKILL), it kills every container and removes DIR.

Each container is one process forked from here straight into its new mount, pid, uts, ipc
and network namespaces (``clone``): pid 1 of the new pid namespace.  It dies with the zygote
(parent-death signal), and when the kernel kills a pid namespace's init it kills everything
in it, so reaping a container's pid 1 here means the container is gone.

The zygote's rooms: :mod:`.spares` (which spare containers to keep ready), :mod:`.scratch`
(containers' scratch dirs, reused when untouched), :mod:`.slirp` (network="slirp"),
:mod:`.userns` (nested user namespaces), :mod:`.netwire` (the networks' helper); this module
holds the requests and the forks.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import importlib
import os
import signal
import socket
import sys
from typing import NoReturn

from .. import _sys
from . import mounts, protocol, slirp, userns
from .init import REMOVE_SCRATCH, container_main, spare_main  # imported once here, not in every container
from .messages import (
    CallReply,
    CallRequest,
    ConnectRequest,
    ContainerSpec,
    CopyRequest,
    CreateRequest,
    DestroyRequest,
    Handover,
    JoinSpec,
    NetworkRemoveRequest,
    NetworkRequest,
    RemoveRequest,
    StartReply,
)
from .netwire import Wirer
from .scratch import ScratchDirs
from .server import Exchange, Server, children
from .spares import Spare, SparePool
from .trees import copy_tree, remove_tree

__all__ = ["main"]


class _Zygote(Server):
    def __init__(self, ctl: socket.socket, scratch: str, host_root: bool = False,
                 held: list[int] | None = None) -> None:
        super().__init__(ctl)
        # Descriptors the library handed down besides the socket (the scratch dir's lock): kept
        # here, never in a container's pid 1, where /proc/1/fd would reach them.
        self.held = held or []
        self.scratch = scratch
        # Root in the containers is the host's root: their commands run without CAP_SYS_ADMIN
        # (see init.container_main), or they could unmount /proc's masks.
        self.host_root = host_root
        # Rootless: the child user namespace each container's pid 1 joins once it is set up,
        # which locks its mounts (see init._lock_mounts); -1 as root, where none is needed.
        self.nest_fd = -1 if host_root else userns.child_user_namespace()
        self.inits: dict[str, int] = {}  # container id -> its pid 1 (as this namespace numbers it)
        self.scratch_of: dict[int, str] = {}  # pid 1 of a container -> its scratch dir
        # pid 1 -> (reply or None, scratch dirs to dispose of) to finish when that container has ended
        self.pending: dict[int, list[tuple[socket.socket | None, list[str]]]] = {}
        self.dirs = ScratchDirs(scratch)
        self.spares = SparePool()
        # network="slirp": pid 1 -> (slirp4netns pid, write end of its --exit-fd pipe)
        self.slirps: dict[int, tuple[int, int]] = {}
        # engine.network(): the networks the helper holds (it dies with us, and they with it)
        self.networks: set[str] = set()
        self.wirer = Wirer()
        self.stage = os.path.join(scratch, ".stage")
        os.makedirs(self.stage, exist_ok=True)
        mounts.host_entries()  # asked once here, inherited by every container
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in pytest must not orphan containers

    # -- idle work ------------------------------------------------------------------------------
    def has_idle_work(self) -> bool:
        return bool(self.dirs.trash) or self.spares.wanted() is not None

    def idle(self) -> None:
        """Nothing asked: prepare the next containers, then tidy up."""
        want = self.spares.wanted()
        if want is not None:
            self.make_spare(*want)
        else:
            self.dirs.tidy()

    # -- one method per op (see ``ops``) --------------------------------------------------------
    def op_create(self, message: CreateRequest, ex: Exchange) -> bool:
        """Start a container: hand its spec to a spare if one fits, else clone a new pid 1.

        Pid 1 answers on the reply socket (with the container's id and scratch dir) once it
        runs; ``fds[0]`` becomes its control socket.
        """
        try:
            pid, cid, scratch = self.start(message["spec"], ex.reply, ex.fds[0])
        except (OSError, slirp.SlirpFailed) as exc:
            with contextlib.suppress(OSError):
                ex.answer(protocol.error_reply(
                    exc, step="network" if isinstance(exc, slirp.SlirpFailed) else "namespaces"))
        else:
            self.inits[cid] = pid
            self.scratch_of[pid] = scratch
        return False

    def op_destroy(self, message: DestroyRequest, ex: Exchange) -> bool:
        """Answer once container ``id`` has ended (killing its pid 1), then dispose of ``remove``."""
        remove = [str(p) for p in message.get("remove", ())]
        pid = self.inits.get(str(message["id"]))
        if pid is None:
            self.finish_destroy(None, remove)
            ex.answer()
            return False
        self.pending.setdefault(pid, []).append((ex.keep(), remove))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return False

    def op_remove(self, message: RemoveRequest, ex: Exchange) -> bool:
        paths = [str(p) for p in message["paths"]]
        pid = self.inits.get(str(message.get("id")))
        if message.get("now"):
            for path in paths:
                remove_tree(path)
        elif pid is not None:  # still tearing down: remove when its pid 1 is reaped
            self.pending.setdefault(pid, []).append((None, paths))
        else:
            self.finish_destroy(None, paths)
        ex.answer()
        return False

    def op_network(self, message: NetworkRequest, ex: Exchange) -> bool:
        """A network namespace with a bridge ``br0`` for ``engine.network()``'s network ``id``
        (made and held by the network helper, see :mod:`.netwire`)."""
        nid = str(message["id"])
        self.wirer.ask({"op": "make", "id": nid}, self.close_in_child)
        self.networks.add(nid)
        ex.answer()
        return False

    def op_connect(self, message: ConnectRequest, ex: Exchange) -> bool:
        """A running container joins one more network.  Its namespace comes from its pid 1
        (``fds[0]``): a container that runs is no longer dumpable, so its /proc/<pid>/ns is
        closed to us."""
        self.join_namespace(ex.fds[0], str(message["id"]), message["join"])
        ex.answer()
        return False

    def op_network_remove(self, message: NetworkRemoveRequest, ex: Exchange) -> bool:
        """Let network ``id`` go: its namespace ends once the helper closes it (the kernel takes
        both ends of every member's veth pair with it)."""
        nid = str(message["id"])
        if nid in self.networks:
            self.networks.discard(nid)
            self.wirer.ask({"op": "drop", "id": nid}, self.close_in_child)
        ex.answer()
        return False

    def op_copy(self, message: CopyRequest, ex: Exchange) -> bool:
        copy_tree(str(message["source"]), str(message["target"]))
        ex.answer()
        return False

    def op_call(self, message: CallRequest, ex: Exchange) -> bool:
        if os.fork() == 0:  # pragma: no cover - the child answers on the reply socket
            _call(self, message, ex.reply)
        return False

    ops = {"create": op_create, "destroy": op_destroy, "remove": op_remove, "network": op_network,
           "connect": op_connect, "network_remove": op_network_remove, "copy": op_copy, "call": op_call}

    # -- containers -----------------------------------------------------------------------------
    def finish_destroy(self, reply: socket.socket | None, remove: list[str]) -> None:
        for path in remove:
            self.discard(path)
        if reply is not None:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": True})
            reply.close()

    def discard(self, path: str) -> None:
        """An ended container's scratch dir: reused or deleted (see :mod:`.scratch`), never while
        a container or a spare has it."""
        self.dirs.discard(path, {s.scratch for s in self.spares} | set(self.scratch_of.values()))

    def start(self, spec: ContainerSpec, reply: socket.socket, ctl_fd: int) -> tuple[int, str, str]:
        key = mounts.template_key(spec)
        if key is not None:
            self.spares.remember(key, spec)
        slirped = spec.get("network") == "slirp"
        join = spec.get("join")
        wired = slirped or join is not None  # set up from here, in a namespace that must exist first
        private = spec.get("network", "none") != "host"
        spare = self.spares.take(key) if private and key is not None else None
        if spare is None and private:
            if wired and not self.spares.has(None):
                self.make_spare(None, None)
            spare = self.spares.take(None)
            if spare is None and wired:
                raise OSError(errno.EPERM, self.spares.error or "no container could be started")
        if spare is not None:
            self.dirs.record(spare.scratch, spec)  # a plain spare: its layout is known only now
            try:
                # before pid 1 answers: the network is up when the main process starts
                if join is not None:
                    self.join_network(spare.pid, spare.cid, join)
                if slirped:
                    self.slirps[spare.pid] = slirp.start(spare.pid, str(spec["slirp4netns"]), self.scratch)
                handover: Handover = {"spec": spec, "key": key}
                protocol.send(spare.sock, handover, [reply.fileno(), ctl_fd])
                self.spares.handed_over()
                return spare.pid, spare.cid, spare.scratch
            except (OSError, slirp.SlirpFailed):
                self.spares.retire(spare)
                if wired:
                    raise
            finally:
                spare.sock.close()
        cid, scratch = self.dirs.new(spec)
        return self.start_init(spec, reply, ctl_fd, None, cid, scratch), cid, scratch

    def make_spare(self, key: str | None, template: ContainerSpec | None) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            cid, scratch = self.dirs.new(template)
            pid = self.start_init(None, None, -1, theirs, cid, scratch, template, ours=mine)
        except OSError as exc:
            mine.close()  # no spare then: create() reports the error when a container is asked for
            self.spares.failed(str(exc))
            return
        finally:
            theirs.close()
        self.spares.add(key, Spare(pid, mine, cid, scratch))

    def start_init(self, spec: ContainerSpec | None, reply: socket.socket | None, ctl_fd: int,
                   spare: socket.socket | None, cid: str, scratch: str,
                   template: ContainerSpec | None = None, ours: socket.socket | None = None) -> int:
        """Clone pid 1 of a new container; with ``spare`` it waits there for its spec.

        ``ours`` is the zygote's end of that socket: the clone must not keep it, or it would
        never see the zygote go (the parent-death signal alone can be missed by a clone that
        had not asked for it yet when the zygote died).
        """
        flags = _sys.CLONE_NEWNS | _sys.CLONE_NEWPID | _sys.CLONE_NEWUTS | _sys.CLONE_NEWIPC
        if spec is None or spec.get("network", "none") != "host":
            flags |= _sys.CLONE_NEWNET
        # Frozen objects are never traversed by the collector: the clone's collections only
        # visit what it allocates itself, instead of writing to (and so copying) every page
        # of objects it shares with us.  Thawed here, they count as old, which also makes our
        # own young collections cheaper.
        gc.freeze()
        try:
            pid = _sys.clone(flags)
        except OSError:
            gc.unfreeze()
            self.dirs.throw(scratch)
            raise
        if pid == 0:  # pragma: no cover - pid 1, reported through its sockets
            if ours is not None:
                ours.close()
            _init(self, spec, reply, ctl_fd, spare, cid, scratch, template)
        gc.unfreeze()
        return pid

    # -- networks of containers ---------------------------------------------------------------
    def join_network(self, init: int, cid: str, join: JoinSpec) -> None:
        """Wire container ``init`` into a network: a veth pair from the bridge to its ``eth0``
        (``eth1``... for further networks), with the address the library chose.  The bridge
        side is named after the container: unique in that network's namespace."""
        theirs = os.open(f"/proc/{init}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.join_namespace(theirs, cid, join)
        finally:
            os.close(theirs)

    def join_namespace(self, netns: int, cid: str, join: JoinSpec) -> None:
        self.wirer.ask({"op": "join", "id": str(join["network"]), "veth": f"v{cid}"[:15],
                        "address": str(join["address"]), "ifname": str(join.get("ifname") or "eth0")},
                       self.close_in_child, [netns])

    # -- ends -----------------------------------------------------------------------------------
    def exited(self, pid: int, status: int) -> None:
        scratch = self.scratch_of.pop(pid, None)
        if scratch is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == REMOVE_SCRATCH:
            self.discard(scratch)  # removed by a shutdown that asked for it
        for cid, ipid in list(self.inits.items()):
            if ipid == pid:
                del self.inits[cid]
        slirped = self.slirps.pop(pid, None)
        if slirped is not None:
            os.close(slirped[1])  # slirp4netns sees EOF on its exit fd and quits
        never_used = self.spares.exited(pid)
        if never_used is not None:  # a spare that never became a container
            self.discard(never_used)
        for reply, remove in self.pending.pop(pid, []):
            self.finish_destroy(reply, remove)

    def shutdown(self) -> None:
        """The library is gone: kill every container, wait for them, remove the scratch space.

        Killing a container's pid 1 makes the kernel kill the rest of its pid namespace, and
        pid 1 is only reaped once all of it is gone: after the wait nothing is left.
        """
        for _spid, exit_w in self.slirps.values():
            os.close(exit_w)
        self.slirps.clear()
        self.wirer.close()  # the helper sees EOF and exits; the networks' namespaces go with it
        for pid in list(self.inits.values()) + [spare.pid for spare in self.spares]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for _ in children(block=True):
            pass
        self.dirs.remove_all()

    def close_in_child(self) -> None:
        super().close_in_child()
        if self.wirer.sock is not None:  # only the zygote speaks to the network helper
            self.wirer.sock.close()
        for fd in self.held:
            with contextlib.suppress(OSError):
                os.close(fd)
        for _pid, exit_w in self.slirps.values():
            with contextlib.suppress(OSError):
                os.close(exit_w)
        self.spares.close_sockets()  # a spare must see EOF when the zygote dies, not when we do
        for finishing in self.pending.values():
            for reply, _remove in finishing:
                if reply is not None:
                    reply.close()


def _call(zygote: _Zygote, message: CallRequest, reply: socket.socket) -> NoReturn:  # pragma: no cover
    """Run one of the package's functions inside the user namespace, in a child of its own.

    The library's store keeps trees whose files may belong to ids only this namespace maps
    (layers unpacked with their owners, commits of what containers wrote); what it must do
    to them (set owners, hash, delete) runs here.  A child per call keeps the zygote
    single-threaded and free while the work goes on.
    """
    code = 1
    try:
        zygote.close_in_child()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        name, wanted = str(message["module"]), str(message["function"])
        from .._namespace_calls import check

        check(name, wanted)  # only the listed functions, never any name under the package
        function = getattr(importlib.import_module(name), wanted)
        answer: CallReply = {"ok": True, "result": function(*message.get("args", ()))}
        protocol.send(reply, answer)
        code = 0
    except BaseException as exc:
        with contextlib.suppress(OSError):
            protocol.send(reply, protocol.error_reply(exc))
    finally:
        os._exit(code)


def _init(zygote: _Zygote, spec: ContainerSpec | None, reply: socket.socket | None, ctl_fd: int,
          spare: socket.socket | None, cid: str, scratch: str,
          template: ContainerSpec | None) -> NoReturn:  # pragma: no cover - runs in the clone
    """The fresh clone: drop the zygote's descriptors and become the container's pid 1.

    With ``spare`` the container's spec is not known yet: pid 1 prepares what it can (all
    of ``template``'s root, if given) and waits on that socket (see ``init.spare_main``).
    """
    try:
        zygote.close_in_child()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if spare is not None:
            spare_main(zygote.stage, spare, scratch, cid, template, zygote.host_root, zygote.nest_fd)
        assert spec is not None and reply is not None
        container_main(spec, socket.socket(fileno=ctl_fd), reply, scratch, cid, host_root=zygote.host_root,
                       nest_fd=zygote.nest_fd)
    except BaseException as exc:
        if reply is not None:
            with contextlib.suppress(OSError):
                protocol.send(reply, protocol.error_reply(exc, step="namespaces", cid=cid, scratch=scratch))
    finally:
        os._exit(1)


def main(argv: list[str]) -> int:
    ctl = socket.socket(fileno=int(argv[0]))
    scratch = argv[1]
    # Descriptors handed down by the library: this socket (pid 1 of each container closes it
    # too) and the scratch dir's lock (``held``: the zygote's alone); never a command's.
    held = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if int(name) > 2:
                os.set_inheritable(int(name), False)  # the listing's own descriptor, closed by now, fails here
                if int(name) != ctl.fileno():
                    held.append(int(name))
    try:
        _sys.unshare(_sys.CLONE_NEWUSER)
    except OSError as exc:
        protocol.send(ctl, protocol.error_reply(exc, step="unshare"))
        return 1
    unshared: StartReply = {"ok": True, "step": "unshared", "pid": os.getpid()}
    protocol.send(ctl, unshared)
    message, _fds = protocol.recv(ctl)
    if not message or message.get("op") != "mapped":
        return 1
    if os.getuid() != 0:
        protocol.send(ctl, protocol.error_reply(f"still uid {os.getuid()} after the id maps were written",
                                                err=errno.EPERM, step="mapped"))
        return 1
    with contextlib.suppress(OSError):
        _sys.set_child_subreaper()
    host_root = bool(message.get("host_root"))
    if host_root:
        userns.forbid_nested()
    ready: StartReply = {"ok": True, "step": "ready"}
    protocol.send(ctl, ready)
    os.makedirs(scratch, exist_ok=True)
    _Zygote(ctl, scratch, host_root, held).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
