"""The zygote: one single-threaded helper process per Engine that forks every container.

Why a separate process: ``unshare(CLONE_NEWUSER)`` refuses multi-threaded callers and pytest
may run threads, and a warm Python that is already inside the user namespace can fork a
container in about a millisecond, with no interpreter start and no id-map write per container.

Life cycle: the library starts it with ``python -m pytest_minicontainer.runtime.zygote FD DIR``
(FD: its end of a SEQPACKET socket; DIR: the engine's scratch directory).  It enters a new
user namespace, tells the library its pid so that the maps are written from outside (writing
them from inside breaks overlayfs for real root), then serves ``create``, ``destroy`` and
``remove``.  When the library's socket closes (the library exited, even by SIGKILL), it kills
every container and removes DIR.

Each container is two processes: *keeper* (A) unshares the mount, pid, uts, ipc and network
namespaces and forks *init* (B), pid 1 of the new pid namespace.  A keeps B on a leash: A dies
with the zygote (parent-death signal) and B dies with A, and when the kernel kills a pid
namespace's init it kills everything in it.  A's exit therefore means the container is gone.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from .. import _sys
from . import protocol
from .init import container_main, spare_main  # imported once here, not in every container
from .server import Server
from .trees import copy_tree, remove_tree

__all__ = ["main"]


class _SlirpFailed(Exception):
    """network="slirp" could not be set up for a container (the message says why)."""


class _Zygote(Server):
    def __init__(self, ctl: socket.socket, scratch: str) -> None:
        super().__init__(ctl)
        self.scratch = scratch
        self.keepers: dict[str, int] = {}  # container id -> keeper pid
        # keeper pid -> (reply or None, request) to finish when that keeper has exited
        self.pending: dict[int, list[tuple[socket.socket | None, dict[str, Any]]]] = {}
        self.trash: list[str] = []  # trees to delete when idle (removal is off the hot path)
        # A spare container (private network) waiting for its spec: (keeper pid, socket).
        self.spare: tuple[int, socket.socket] | None = None
        # network="slirp": keeper pid -> (slirp4netns pid, write end of its --exit-fd pipe)
        self.slirps: dict[int, tuple[int, int]] = {}
        self.stage = os.path.join(scratch, ".stage")
        os.makedirs(self.stage, exist_ok=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in pytest must not orphan containers

    def has_idle_work(self) -> bool:
        return bool(self.trash) or self.spare is None

    def idle(self) -> None:
        """Nothing asked: prepare the next container, then tidy up."""
        if self.spare is None:
            self.make_spare()
        elif self.trash:
            remove_tree(self.trash.pop())

    def handle(self, message: dict[str, Any], fds: list[int]) -> bool:
        reply = socket.socket(fileno=fds[0])
        op = message.get("op")
        try:
            if op == "create":
                self.create(message, reply, fds[1])
                return False
            if op == "destroy":
                pid = self.keepers.get(str(message["id"]))
                if pid is None:
                    self.finish_destroy(reply, message)
                    return False
                self.pending.setdefault(pid, []).append((reply, message))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                return False
            if op == "remove":
                pid = self.keepers.get(str(message.get("id")))
                if message.get("now"):
                    for path in message["paths"]:
                        remove_tree(str(path))
                elif pid is not None:  # still tearing down: remove when the keeper is gone
                    self.pending.setdefault(pid, []).append((None, {"remove": message["paths"]}))
                else:
                    self.trash.extend(str(p) for p in message["paths"])
                protocol.send(reply, {"ok": True})
            elif op == "copy":
                copy_tree(str(message["source"]), str(message["target"]))
                protocol.send(reply, {"ok": True})
            else:
                protocol.send(reply, {"ok": False, "error": f"unknown request {op!r}"})
        except OSError as exc:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": False, "error": str(exc), "errno": exc.errno or 0})
        reply.close()
        return False

    def finish_destroy(self, reply: socket.socket | None, message: dict[str, Any]) -> None:
        self.trash.extend(str(p) for p in message.get("remove", ()))
        if reply is not None:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": True})
            reply.close()

    def create(self, message: dict[str, Any], reply: socket.socket, container_fd: int) -> None:
        spec = message["spec"]
        pid = None
        slirp = spec.get("network") == "slirp"
        if slirp and self.spare is None:
            self.make_spare()  # slirp4netns attaches to a network namespace that exists already
        if self.spare is not None and spec.get("network", "none") != "host":
            pid, work = self.spare
            self.spare = None
            try:
                if slirp:  # before pid 1 answers: the network is up when the main process starts
                    self.start_slirp(pid, str(spec["slirp4netns"]))
                protocol.send(work, {"spec": spec}, [reply.fileno(), container_fd])
            except _SlirpFailed as exc:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    protocol.send(reply, {"ok": False, "error": str(exc), "step": "network"})
                pid = None
            except OSError:  # the spare died: start one from scratch below
                pid = None
                if slirp:
                    with contextlib.suppress(OSError):
                        protocol.send(reply, {"ok": False, "error": "the container died while its network was "
                                              "being set up", "step": "network"})
            work.close()
            if pid is None and slirp:
                os.close(container_fd)
                reply.close()
                return
        if pid is None:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the keeper, reported through the reply socket
                _keeper(self, spec, reply, socket.socket(fileno=container_fd), None)
        os.close(container_fd)
        reply.close()
        self.keepers[str(spec["id"])] = pid

    def start_slirp(self, keeper: int, binary: str) -> None:
        """Give keeper ``keeper``'s network namespace outbound access through slirp4netns.

        slirp4netns runs here, inside the user namespace that owns the container's network
        namespace (so it may enter it), and creates ``tap0`` (10.0.2.100/24, gateway and
        host loopback 10.0.2.2, DNS 10.0.2.3).  It exits when the write end of its exit pipe
        closes: when the keeper is reaped, or when this zygote dies for any reason.
        """
        own = os.readlink("/proc/self/ns/net")
        for _ in range(2000):  # the fresh keeper may not have unshared its network yet
            try:
                if os.readlink(f"/proc/{keeper}/ns/net") != own:
                    break
            except OSError as exc:
                raise _SlirpFailed(f"the container exited before its network was set up: {exc}") from None
            time.sleep(0.001)
        else:
            raise _SlirpFailed("the container did not create its network namespace within 2s")
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        try:
            os.set_inheritable(ready_w, True)
            os.set_inheritable(exit_r, True)
            argv = [binary, "--configure", "--mtu=65520", f"--ready-fd={ready_w}", f"--exit-fd={exit_r}",
                    str(keeper), "tap0"]
            log_path = os.path.join(self.scratch, f"slirp4netns-{keeper}.log")
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
        self.slirps[keeper] = (spid, exit_w)

    def make_spare(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the spare's keeper
            mine.close()
            _keeper(self, None, None, None, theirs)
        theirs.close()
        self.spare = (pid, mine)

    def reap(self) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for cid, kpid in list(self.keepers.items()):
                if kpid == pid:
                    del self.keepers[cid]
            slirp = self.slirps.pop(pid, None)
            if slirp is not None:
                os.close(slirp[1])  # slirp4netns sees EOF on its exit fd and quits
            if self.spare is not None and self.spare[0] == pid:
                self.spare[1].close()
                self.spare = None
            for reply, message in self.pending.pop(pid, []):
                self.finish_destroy(reply, message)

    def shutdown(self) -> None:
        """The library is gone: kill every container, wait for them, remove the scratch space.

        Keepers get SIGTERM, on which each kills its pid 1 and waits for it: a keeper's exit
        then means its whole pid namespace is gone (SIGKILL would let pid 1 outlive it by a
        moment).  Whatever is still there after a few seconds is killed outright.
        """
        keepers = list(self.keepers.values()) + ([self.spare[0]] if self.spare is not None else [])
        for pid in keepers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for _spid, exit_w in self.slirps.values():
            os.close(exit_w)
        self.slirps.clear()
        deadline = time.monotonic() + 5
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG if time.monotonic() < deadline else 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == 0:
                time.sleep(0.002)
                if time.monotonic() >= deadline:
                    for kpid in keepers:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(kpid, signal.SIGKILL)
        for path in self.trash:
            remove_tree(path)
        remove_tree(self.scratch)

    def close_in_child(self) -> None:
        super().close_in_child()
        for _pid, exit_w in self.slirps.values():
            with contextlib.suppress(OSError):
                os.close(exit_w)


def _keeper(zygote: _Zygote, spec: dict[str, Any] | None, reply: socket.socket | None,
            ctl: socket.socket | None, spare: socket.socket | None) -> None:  # pragma: no cover
    """Unshare the namespaces, fork pid 1, and live exactly as long as it does.

    With ``spare`` the container's spec is not known yet: pid 1 prepares what it can and
    waits on that socket (see ``init.spare_main``).
    """
    code = 1
    try:
        zygote.close_in_child()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _sys.set_parent_death_signal(signal.SIGKILL)
        flags = _sys.CLONE_NEWNS | _sys.CLONE_NEWPID | _sys.CLONE_NEWUTS | _sys.CLONE_NEWIPC
        if spec is None or spec.get("network", "none") != "host":
            flags |= _sys.CLONE_NEWNET
        _sys.unshare(flags)
        child = os.fork()
        if child == 0:
            if spare is not None:
                spare_main(zygote.stage, spare)
            assert spec is not None and ctl is not None and reply is not None
            container_main(spec, ctl, reply)
        for sock in (ctl, reply, spare):
            if sock is not None:
                sock.close()

        def stop(*_: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

        signal.signal(signal.SIGTERM, stop)
        while True:
            try:
                _pid, status = os.waitpid(child, 0)
                code = os.waitstatus_to_exitcode(status) & 0xFF
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
    except BaseException as exc:
        if reply is not None:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": False, "error": str(exc), "errno": getattr(exc, "errno", 0) or 0,
                                      "step": "namespaces"})
    finally:
        os._exit(code)


def main(argv: list[str]) -> int:
    ctl = socket.socket(fileno=int(argv[0]))
    scratch = argv[1]
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
    protocol.send(ctl, {"ok": True, "step": "ready"})
    os.makedirs(scratch, exist_ok=True)
    _Zygote(ctl, scratch).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
