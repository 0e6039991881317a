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
from typing import Any

from .. import _sys
from . import protocol
from .init import container_main, spare_main  # imported once here, not in every container
from .trees import copy_tree, remove_tree

__all__ = ["main"]


class _Zygote:
    def __init__(self, ctl: socket.socket, scratch: str) -> None:
        self.ctl = ctl
        self.scratch = scratch
        self.keepers: dict[str, int] = {}  # container id -> keeper pid
        # keeper pid -> (reply or None, request) to finish when that keeper has exited
        self.pending: dict[int, list[tuple[socket.socket | None, dict[str, Any]]]] = {}
        self.trash: list[str] = []  # trees to delete when idle (removal is off the hot path)
        # A spare container (private network) waiting for its spec: (keeper pid, socket).
        self.spare: tuple[int, socket.socket] | None = None
        self.stage = os.path.join(scratch, ".stage")
        os.makedirs(self.stage, exist_ok=True)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in pytest must not orphan containers

    def serve(self) -> None:
        while True:
            idle_work = bool(self.trash) or self.spare is None
            try:
                ready, _, _ = select.select([self.ctl.fileno(), self.wake_r], [], [], 0 if idle_work else None)
            except InterruptedError:
                continue
            if not ready:  # nothing asked: prepare the next container, then tidy up
                if self.spare is None:
                    self.make_spare()
                elif self.trash:
                    remove_tree(self.trash.pop())
                continue
            if self.wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 512):
                        pass
                self.reap()
            if self.ctl.fileno() in ready:
                try:
                    message, fds = protocol.recv(self.ctl)
                except OSError:
                    message, fds = None, []
                if message is None:
                    self.shutdown()
                    return
                self.handle(message, fds)

    def handle(self, message: dict[str, Any], fds: list[int]) -> None:
        reply = socket.socket(fileno=fds[0])
        op = message.get("op")
        try:
            if op == "create":
                self.create(message, reply, fds[1])
                return
            if op == "destroy":
                pid = self.keepers.get(str(message["id"]))
                if pid is None:
                    self.finish_destroy(reply, message)
                    return
                self.pending.setdefault(pid, []).append((reply, message))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                return
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

    def finish_destroy(self, reply: socket.socket | None, message: dict[str, Any]) -> None:
        self.trash.extend(str(p) for p in message.get("remove", ()))
        if reply is not None:
            with contextlib.suppress(OSError):
                protocol.send(reply, {"ok": True})
            reply.close()

    def create(self, message: dict[str, Any], reply: socket.socket, container_fd: int) -> None:
        spec = message["spec"]
        pid = None
        if self.spare is not None and spec.get("network", "none") != "host":
            pid, work = self.spare
            self.spare = None
            try:
                protocol.send(work, {"spec": spec}, [reply.fileno(), container_fd])
            except OSError:  # the spare died: start one from scratch below
                pid = None
            work.close()
        if pid is None:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the keeper, reported through the reply socket
                _keeper(self, spec, reply, socket.socket(fileno=container_fd), None)
        os.close(container_fd)
        reply.close()
        self.keepers[str(spec["id"])] = pid

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
            if self.spare is not None and self.spare[0] == pid:
                self.spare[1].close()
                self.spare = None
            for reply, message in self.pending.pop(pid, []):
                self.finish_destroy(reply, message)

    def shutdown(self) -> None:
        """The library is gone: kill every container, wait for them, remove the scratch space."""
        if self.spare is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.spare[0], signal.SIGKILL)
        for pid in self.keepers.values():
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
        signal.set_wakeup_fd(-1)
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.ctl.close()


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
