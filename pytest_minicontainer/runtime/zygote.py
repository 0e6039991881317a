"""The zygote: one single-threaded helper process per Engine that forks every container.

Why a separate process: ``unshare(CLONE_NEWUSER)`` refuses multi-threaded callers and pytest
may run threads, and a warm Python that is already inside the user namespace can fork a
container in about a millisecond, with no interpreter start and no id-map write per container.

Life cycle: the library starts it with ``python -c`` calling :func:`main` with ``FD DIR``
(FD: its end of a SEQPACKET socket; DIR: the engine's scratch directory).  It enters a new
user namespace, tells the library its pid so that the maps are written from outside (writing
them from inside breaks overlayfs for real root), then serves ``create``, ``destroy``,
``remove``, ``copy`` and ``call`` (see :func:`_call`).  When the library's socket closes
(the library exited, even by SIGKILL), it kills every container and removes DIR.

Each container is one process forked from here straight into its new mount, pid, uts, ipc
and network namespaces (``clone``): pid 1 of the new pid namespace.  It dies with the zygote
(parent-death signal), and when the kernel kills a pid namespace's init it kills everything
in it, so reaping a container's pid 1 here means the container is gone.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import importlib
import os
import select
import signal
import socket
import stat
import sys
from typing import Any, NamedTuple, NoReturn

from .. import _sys
from . import mounts, protocol
from .init import REMOVE_SCRATCH, container_main, spare_main  # imported once here, not in every container
from .netwire import Wirer
from .server import Server
from .trees import copy_tree, remove_tree

__all__ = ["main"]


class _SlirpFailed(Exception):
    """network="slirp" could not be set up for a container (the message says why)."""


class _Spare(NamedTuple):
    """A container cloned ahead of time, waiting on ``sock`` for its spec."""

    pid: int
    sock: socket.socket
    cid: str
    scratch: str


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
        self.nest_fd = -1 if host_root else _child_user_namespace()
        self.inits: dict[str, int] = {}  # container id -> its pid 1 (as this namespace numbers it)
        self.scratch_of: dict[int, str] = {}  # pid 1 of a container -> its scratch dir
        # pid 1 -> (reply or None, request) to finish when that container has ended
        self.pending: dict[int, list[tuple[socket.socket | None, dict[str, Any]]]] = {}
        self.trash: list[str] = []  # trees to delete when idle (removal is off the hot path)
        # Scratch dirs of ended containers that were never written, by the layers their
        # overlays had (see discard); scratch dir -> (those layers, the directories made)
        self.clean: dict[str, list[str]] = {}
        self.layouts: dict[str, tuple[str, tuple[str, ...]]] = {}
        # Spare containers (private network), oldest first, by the template they prepared
        # (None: only the namespaces, /proc and /dev).  ``recent`` holds the templates worth
        # preparing: the last two different ones asked for, most recent first.
        self.spares: dict[str | None, list[_Spare]] = {}
        self.recent: list[tuple[str, dict[str, Any]]] = []
        self.unused: dict[int, str] = {}  # pid 1 of a spare not handed out -> its scratch dir
        self.spare_error = ""  # why the last spare could not be made (then none is tried when idle)
        self.spare_deaths = 0  # spares that died before they were used, in a row
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
    def wanted_spare(self) -> tuple[str | None, dict[str, Any] | None] | None:
        """The spare to make next as (key, template); (None, None) a plain one; None: enough."""
        if self.spare_error:
            return None
        for n, (key, spec) in enumerate(self.recent):
            # two for the latest kind: when tests follow each other closely, the next one's
            # spare has had a whole container's lifetime to get ready
            if len(self.spares.get(key, ())) < (2 if n == 0 else 1):
                return key, spec
        return None if self.spares.get(None) else (None, None)

    def has_idle_work(self) -> bool:
        return bool(self.trash) or self.wanted_spare() is not None

    def idle(self) -> None:
        """Nothing asked: prepare the next containers, then tidy up."""
        want = self.wanted_spare()
        if want is not None:
            self.make_spare(*want)
        elif self.trash:
            path = self.trash.pop()
            try:
                remove_tree(path)
            except Exception as exc:  # a tree it cannot remove must not end the zygote
                print(f"minicontainer zygote: cannot remove {path}: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)

    # -- requests -------------------------------------------------------------------------------
    def handle(self, message: dict[str, Any], fds: list[int]) -> bool:
        reply = socket.socket(fileno=fds[0])
        op = message.get("op")
        try:
            if op == "create":
                self.create(message["spec"], reply, fds[1])
                return False
            if op == "destroy":
                pid = self.inits.get(str(message["id"]))
                if pid is None:
                    self.finish_destroy(reply, message)
                    return False
                self.pending.setdefault(pid, []).append((reply, message))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return False
            if op == "remove":
                pid = self.inits.get(str(message.get("id")))
                if message.get("now"):
                    for path in message["paths"]:
                        remove_tree(str(path))
                elif pid is not None:  # still tearing down: remove when its pid 1 is reaped
                    self.pending.setdefault(pid, []).append((None, {"remove": message["paths"]}))
                else:
                    for path in message["paths"]:
                        self.discard(str(path))
                protocol.send(reply, {"ok": True})
            elif op == "network":
                self.make_network(str(message["id"]))
                protocol.send(reply, {"ok": True})
            elif op == "connect":  # a running container joins one more network
                # its namespace comes from its pid 1: a container that runs is no longer
                # dumpable, so its /proc/<pid>/ns is closed to us
                try:
                    self.join_namespace(fds[1], str(message["id"]), dict(message["join"]))
                finally:
                    os.close(fds[1])
                protocol.send(reply, {"ok": True})
            elif op == "network_remove":
                self.remove_network(str(message["id"]))
                protocol.send(reply, {"ok": True})
            elif op == "copy":
                copy_tree(str(message["source"]), str(message["target"]))
                protocol.send(reply, {"ok": True})
            elif op == "call":
                if os.fork() == 0:  # pragma: no cover - the child answers on the reply socket
                    _call(self, message, reply)
            else:
                protocol.send(reply, {"ok": False, "error": f"unknown request {op!r}"})
        except OSError as exc:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": False, "error": str(exc), "errno": exc.errno or 0})
        except Exception as exc:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": False, "error": f"{op}: {type(exc).__name__}: {exc}"})
        reply.close()
        return False

    def finish_destroy(self, reply: socket.socket | None, message: dict[str, Any]) -> None:
        for path in message.get("remove", ()):
            self.discard(str(path))
        if reply is not None:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": True})
            reply.close()

    def create(self, spec: dict[str, Any], reply: socket.socket, ctl_fd: int) -> None:
        """Start a container: hand ``spec`` to a spare if one fits, else clone a new pid 1.

        Pid 1 answers on ``reply`` (with the container's id and scratch dir) once it runs.
        """
        try:
            pid, cid, scratch = self.start(spec, reply, ctl_fd)
        except (OSError, _SlirpFailed) as exc:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": False, "error": str(exc), "errno": getattr(exc, "errno", 0) or 0,
                                      "step": "network" if isinstance(exc, _SlirpFailed) else "namespaces"})
        else:
            self.inits[cid] = pid
            self.scratch_of[pid] = scratch
        finally:
            os.close(ctl_fd)
            reply.close()

    def start(self, spec: dict[str, Any], reply: socket.socket, ctl_fd: int) -> tuple[int, str, str]:
        key = mounts.template_key(spec)
        if key is not None:
            self.remember(key, spec)
        slirp = spec.get("network") == "slirp"
        join = spec.get("join")
        wired = slirp or join is not None  # set up from here, in a namespace that must exist first
        private = spec.get("network", "none") != "host"
        spare = self.take_spare(key) if private and key is not None else None
        if spare is None and private:
            if wired and not self.spares.get(None):
                self.make_spare(None, None)
            spare = self.take_spare(None)
            if spare is None and wired:
                raise OSError(errno.EPERM, self.spare_error or "no container could be started")
        if spare is not None:
            self.unused.pop(spare.pid, None)
            if spare.scratch not in self.layouts:  # a plain spare: its layout is known only now
                self.layouts[spare.scratch] = (mounts.layers_key(spec), mounts.layout(spec))
            try:
                # before pid 1 answers: the network is up when the main process starts
                if join is not None:
                    self.join_network(spare.pid, spare.cid, join)
                if slirp:
                    self.start_slirp(spare.pid, str(spec["slirp4netns"]))
                protocol.send(spare.sock, {"spec": spec, "key": key}, [reply.fileno(), ctl_fd])
                self.spare_deaths = 0
                return spare.pid, spare.cid, spare.scratch
            except (OSError, _SlirpFailed):
                self.retire(spare)
                if wired:
                    raise
            finally:
                spare.sock.close()
        cid, scratch = self.new_scratch(spec)
        return self.start_init(spec, reply, ctl_fd, None, cid, scratch), cid, scratch

    def remember(self, key: str, spec: dict[str, Any]) -> None:
        """``spec`` was asked for: keep a spare prepared for it (and for the one before)."""
        if self.recent and self.recent[0][0] == key:
            return
        self.recent = [(key, spec), *[(k, s) for k, s in self.recent if k != key][:1]]
        keep = {k for k, _ in self.recent}
        for stale in [k for k in self.spares if k is not None and k not in keep]:
            for spare in self.spares.pop(stale):
                self.retire(spare)

    def take_spare(self, key: str | None) -> _Spare | None:
        waiting = self.spares.get(key)
        return waiting.pop(0) if waiting else None

    def retire(self, spare: _Spare) -> None:
        """Kill a spare that will not be used; its scratch goes when it is reaped."""
        self.unused[spare.pid] = spare.scratch
        spare.sock.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(spare.pid, signal.SIGKILL)

    def new_scratch(self, spec: dict[str, Any] | None) -> tuple[str, str]:
        """A new container id and a scratch dir for ``spec`` (one left by an earlier container
        with the same layers if there is one), recorded with its layout (None: not known yet)."""
        cid = os.urandom(6).hex()
        key = mounts.layers_key(spec) if spec is not None else None
        reusable = self.clean.get(key) if key is not None else None
        if reusable:
            path = reusable.pop()
        else:
            path = os.path.join(self.scratch, cid)
            os.mkdir(path, 0o755)
        if spec is not None and key is not None:
            self.layouts[path] = (key, mounts.layout(spec))
        return cid, path

    def discard(self, path: str) -> None:
        """An ended container's scratch dir: keep it for the next container with the same
        layers if nothing was written there, else delete it when idle.

        Creating and deleting the directories of a writable layer costs about a millisecond
        on ext4 (more for the ``host`` image), more than the rest of a container's start; an
        untouched layout is as good as a new one.
        """
        in_use = {s.scratch for spares in self.spares.values() for s in spares} | set(self.scratch_of.values())
        if path in in_use or path in self.trash or any(path in pool for pool in self.clean.values()):
            return  # asked twice, or already another container's: never delete that
        key, layout = self.layouts.pop(path, (None, None))
        pool = self.clean.setdefault(key, []) if key is not None else None
        if (pool is not None and layout is not None and len(pool) < 4 and os.path.dirname(path) == self.scratch
                and _untouched(path, layout)):
            pool.append(path)
        else:
            self.trash.append(path)

    def start_init(self, spec: dict[str, Any] | None, reply: socket.socket | None, ctl_fd: int,
                   spare: socket.socket | None, cid: str, scratch: str,
                   template: dict[str, Any] | None = None, ours: socket.socket | None = None) -> int:
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
            self.trash.append(scratch)
            raise
        if pid == 0:  # pragma: no cover - pid 1, reported through its sockets
            if ours is not None:
                ours.close()
            _init(self, spec, reply, ctl_fd, spare, cid, scratch, template)
        gc.unfreeze()
        return pid

    def start_slirp(self, init: int, binary: str) -> None:
        """Give container ``init``'s network namespace outbound access through slirp4netns.

        slirp4netns runs here, inside the user namespace that owns the container's network
        namespace (so it may enter it), and creates ``tap0`` (10.0.2.100/24, gateway 10.0.2.2,
        which does not lead to the host's loopback, DNS 10.0.2.3).  It exits when the write end of its exit pipe
        closes: when the container's pid 1 is reaped, or when this zygote dies for any reason.
        """
        if not os.path.exists(f"/proc/{init}/ns/net"):
            raise _SlirpFailed("the container exited before its network was set up")
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        try:
            os.set_inheritable(ready_w, True)
            os.set_inheritable(exit_r, True)
            # --disable-host-loopback: 10.0.2.2 would otherwise be the host's 127.0.0.1, and every
            # service listening there only for local users (databases, agents, a CI runner's
            # API) would answer the container.  Docker's networks do not reach it either.
            # --netns-type=path: join only the network namespace, staying in this user namespace
            # (which owns it); pid 1 itself may have moved into a nested one (init._lock_mounts).
            argv = [binary, "--configure", "--mtu=65520", "--disable-host-loopback", f"--ready-fd={ready_w}",
                    f"--exit-fd={exit_r}", "--netns-type=path", f"/proc/{init}/ns/net", "tap0"]
            log_path = os.path.join(self.scratch, f"slirp4netns-{init}.log")
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                spid = os.posix_spawn(binary, argv, os.environ, file_actions=[
                    (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)])
            except OSError as exc:
                raise _SlirpFailed(f"cannot start {binary}: {exc}") from None
            finally:
                os.close(log)
            os.close(ready_w)
            ready_w = -1
            ok = bool(select.select([ready_r], [], [], 10)[0]) and os.read(ready_r, 1) == b"1"
        except BaseException:
            os.close(exit_w)
            raise
        finally:
            for fd in (ready_r, ready_w, exit_r):
                if fd >= 0:
                    os.close(fd)
        if not ok:
            os.close(exit_w)  # it exits, and reap() collects it
            with contextlib.suppress(OSError), open(log_path, errors="replace") as f:
                said = [line.strip() for line in f if line.strip()][-3:]
            hint = ""
            if any("/dev/net/tun" in line for line in said):
                hint = ("\n  fix: slirp4netns needs read-write access to /dev/net/tun (most distributions' udev "
                        "rules make it mode 0666: chmod 0666 /dev/net/tun), or use network=\"host\"")
            raise _SlirpFailed("slirp4netns could not give the container a network: "
                               + (" | ".join(said) or "it said nothing") + hint)
        self.slirps[init] = (spid, exit_w)

    # -- networks of containers ---------------------------------------------------------------
    def make_network(self, nid: str) -> None:
        """A network namespace with a bridge ``br0`` for ``engine.network()``'s network ``nid``
        (made and held by the network helper, see :mod:`.netwire`)."""
        self.wirer.ask({"op": "make", "id": nid}, self.close_in_child)
        self.networks.add(nid)

    def remove_network(self, nid: str) -> None:
        """Let network ``nid`` go: its namespace ends once the helper closes it (the kernel takes
        both ends of every member's veth pair with it)."""
        if nid in self.networks:
            self.networks.discard(nid)
            self.wirer.ask({"op": "drop", "id": nid}, self.close_in_child)

    def join_network(self, init: int, cid: str, join: dict[str, Any]) -> None:
        """Wire container ``init`` into a network: a veth pair from the bridge to its ``eth0``
        (``eth1``... for further networks), with the address the library chose.  The bridge
        side is named after the container: unique in that network's namespace."""
        theirs = os.open(f"/proc/{init}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.join_namespace(theirs, cid, join)
        finally:
            os.close(theirs)

    def join_namespace(self, netns: int, cid: str, join: dict[str, Any]) -> None:
        self.wirer.ask({"op": "join", "id": str(join["network"]), "veth": f"v{cid}"[:15],
                        "address": str(join["address"]), "ifname": str(join.get("ifname") or "eth0")},
                       self.close_in_child, [netns])

    def make_spare(self, key: str | None, template: dict[str, Any] | None) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            cid, scratch = self.new_scratch(template)
            pid = self.start_init(None, None, -1, theirs, cid, scratch, template, ours=mine)
        except OSError as exc:
            mine.close()  # no spare then: create() reports the error when a container is asked for
            self.spare_error = str(exc)
            return
        finally:
            theirs.close()
        self.spares.setdefault(key, []).append(_Spare(pid, mine, cid, scratch))
        self.unused[pid] = scratch
        self.spare_error = ""

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            scratch = self.scratch_of.pop(pid, None)
            if scratch is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == REMOVE_SCRATCH:
                self.discard(scratch)  # removed by a shutdown that asked for it
            for cid, ipid in list(self.inits.items()):
                if ipid == pid:
                    del self.inits[cid]
            slirp = self.slirps.pop(pid, None)
            if slirp is not None:
                os.close(slirp[1])  # slirp4netns sees EOF on its exit fd and quits
            for waiting in self.spares.values():
                for spare in [s for s in waiting if s.pid == pid]:  # died waiting, not killed by us
                    waiting.remove(spare)
                    spare.sock.close()
                    self.spare_deaths += 1
                    if self.spare_deaths >= 3:
                        self.spare_error = "spare containers keep dying (see zygote.log)"
            if pid in self.unused:  # a spare that never became a container
                self.discard(self.unused.pop(pid))
            for reply, message in self.pending.pop(pid, []):
                self.finish_destroy(reply, message)

    def shutdown(self) -> None:
        """The library is gone: kill every container, wait for them, remove the scratch space.

        Killing a container's pid 1 makes the kernel kill the rest of its pid namespace, and
        pid 1 is only reaped once all of it is gone: after the wait nothing is left.
        """
        for _spid, exit_w in self.slirps.values():
            os.close(exit_w)
        self.slirps.clear()
        self.wirer.close()  # the helper sees EOF and exits; the networks' namespaces go with it
        for pid in list(self.inits.values()) + [spare.pid for w in self.spares.values() for spare in w]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
        for path in self.trash:
            remove_tree(path)
        remove_tree(self.scratch)

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
        for spares in self.spares.values():  # a spare must see EOF when the zygote dies, not when we do
            for spare in spares:
                spare.sock.close()
        for finishing in self.pending.values():
            for reply, _message in finishing:
                if reply is not None:
                    reply.close()


# What overlayfs itself records on upper directories: the layer's id (first mount), the lower
# directory a merged one stands for, and "may hold entries from below".  They describe the
# same layers again when the dir is reused for them (hence the pool by layers).
_OVERLAY_XATTRS = ("user.overlay.uuid", "user.overlay.origin", "user.overlay.impure")


def _call(zygote: _Zygote, message: dict[str, Any], reply: socket.socket) -> NoReturn:  # pragma: no cover
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
        result = function(*message.get("args", ()))
        protocol.send(reply, {"ok": True, "result": result})
        code = 0
    except BaseException as exc:
        with contextlib.suppress(OSError):
            protocol.send(reply, {"ok": False, "error": str(exc), "errno": getattr(exc, "errno", 0) or 0,
                                  "type": type(exc).__name__})
    finally:
        os._exit(code)


def _untouched(scratch: str, layout: tuple[str, ...]) -> bool:
    """Whether ``scratch`` holds exactly the empty directories of ``layout``, as made.

    Overlayfs's own ``work`` directories inside the work dirs must be empty too; any file,
    extra directory, changed owner or mode or extended attribute but overlayfs's own (a
    ``chmod /`` in the container lands on ``upper`` itself) means the layer was written.  The
    library's own files (a main process's ``log``, slirp's ``resolv.conf``) count as written
    too: the library may still read the log of a container it has just removed.
    """
    expected = set(layout) | {f"{d}/work" for d in layout if d == "work" or (d[:4] == "work" and d[4:].isdigit())}
    allowed = expected | {"upper/proc", "upper/dev"}  # mount points made when the image has none
    try:
        seen = 0
        for top, dirs, files in os.walk(scratch):
            rel = os.path.relpath(top, scratch)
            if files or any(os.path.islink(os.path.join(top, d)) for d in dirs):
                return False
            if rel != ".":
                if rel not in allowed:
                    return False
                seen += rel in expected
            if rel.startswith("upper"):
                st = os.lstat(top)
                if (stat.S_IMODE(st.st_mode) != 0o755 or st.st_uid != 0 or st.st_gid != 0
                        or any(not n.startswith("security.") and n not in _OVERLAY_XATTRS
                               for n in os.listxattr(top, follow_symlinks=False))):
                    return False
        return seen == len(expected)
    except OSError:
        return False


def _init(zygote: _Zygote, spec: dict[str, Any] | None, reply: socket.socket | None, ctl_fd: int,
          spare: socket.socket | None, cid: str, scratch: str,
          template: dict[str, Any] | None) -> NoReturn:  # pragma: no cover - runs in the clone
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
                protocol.send(reply, {"ok": False, "error": str(exc), "errno": getattr(exc, "errno", 0) or 0,
                                      "step": "namespaces", "id": cid, "scratch": scratch})
    finally:
        os._exit(1)


def _forbid_nested_user_namespaces() -> None:
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


def _identity_map(path: str) -> str:
    """A map giving a child namespace every id this one has, one line per range of ours.

    One line per range: the kernel wants each line of a child's map to fall within a
    single range of its parent's ("0 0 65537" across "0 1001 1" + "1 100000 65536" fails).
    """
    with open(path) as f:
        return "".join(f"{line.split()[0]} {line.split()[0]} {line.split()[2]}\n" for line in f if line.strip())


def _child_user_namespace() -> int:
    """A user namespace below this one that maps every id of ours one-to-one; its descriptor.

    Made once per Engine: a child unshares into it and waits while this process (with
    CAP_SETUID here) writes its maps and opens it, then exits; the descriptor keeps the
    namespace.  Close-on-exec, so no command ever holds it.
    """
    uids, gids = _identity_map("/proc/self/uid_map"), _identity_map("/proc/self/gid_map")
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
        protocol.send(ctl, {"ok": False, "step": "unshare", "errno": exc.errno or 0, "error": str(exc)})
        return 1
    protocol.send(ctl, {"ok": True, "step": "unshared", "pid": os.getpid()})
    message, _fds = protocol.recv(ctl)
    if not message or message.get("op") != "mapped":
        return 1
    if os.getuid() != 0:
        protocol.send(ctl, {"ok": False, "step": "mapped", "errno": 1,
                            "error": f"still uid {os.getuid()} after the id maps were written"})
        return 1
    with contextlib.suppress(OSError):
        _sys.set_child_subreaper()
    host_root = bool(message.get("host_root"))
    if host_root:
        _forbid_nested_user_namespaces()
    protocol.send(ctl, {"ok": True, "step": "ready"})
    os.makedirs(scratch, exist_ok=True)
    _Zygote(ctl, scratch, host_root, held).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
