"""A running container as the library holds it: pid 1's control socket, and each command's watch.

Every request travels on its own reply socket (see :mod:`.protocol`), so threads may use one
container at once.  The library's ``Container`` wraps a :class:`RuntimeContainer`; the
``Runtime`` (see :mod:`.client`) makes them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ContainerError
from . import protocol
from .messages import (
    ExecRequest,
    FreezeRequest,
    KillRequest,
    NetnsRequest,
    OpenRequest,
    ShutdownRequest,
    SocketRequest,
    UserRequest,
)

if TYPE_CHECKING:
    from .client import Runtime

__all__ = ["SHUTDOWN_TIMEOUT", "ExitWatch", "RuntimeContainer"]

#: Seconds pid 1 gets to answer a shutdown (it takes milliseconds); a pid 1 that is stuck
#: (blocked, stopped) is then killed by the zygote instead, so that no test hangs on it.
SHUTDOWN_TIMEOUT = 10.0


class ExitWatch:
    """The reply socket of an ``exec`` request: first the pid (or why it failed), then the status.

    The first answer is read lazily, so a caller can start reading the command's output
    right after sending the request instead of waiting a round trip for the pid.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.status: int | None = None
        self._pid: int | None = None
        self._error: ContainerError | None = None
        self._terminal: int | None = None
        self._lock = threading.Lock()

    def _read_start(self, timeout: float | None) -> bool:
        """Read the first answer; False when ``timeout`` passed first."""
        if self._pid is not None or self._error is not None:
            return True
        self.sock.settimeout(timeout)
        fds: list[int] = []
        try:
            message, fds = protocol.recv(self.sock)
        except (TimeoutError, BlockingIOError):
            return False
        except OSError:
            message = None
        if fds:
            self._terminal = fds.pop(0)
        for fd in fds:
            os.close(fd)
        try:
            answer = protocol.raise_for(message, "the container stopped before the command started",
                                        "cannot start the command: ", oserror=False)
            self._pid = int(answer["pid"])
        except ContainerError as exc:
            self._error = exc
        if self._error is not None:
            self.sock.close()
        return True

    @property
    def pid(self) -> int:
        """The command's pid inside the container (raises ContainerError if it never started)."""
        with self._lock:
            self._read_start(None)
            if self._error is not None:
                raise self._error
            assert self._pid is not None
            return self._pid

    @property
    def terminal(self) -> int:
        """The master of the command's pseudo-terminal (an ``exec`` with ``tty``); the caller closes it."""
        with self._lock:
            self._read_start(None)
            if self._error is not None:
                raise self._error
            if self._terminal is None:
                raise ContainerError("the command has no terminal (exec without tty)")
            fd, self._terminal = self._terminal, None
            return fd

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status; None while it runs after ``timeout``; ContainerError if it never started."""
        with self._lock:
            if self.status is not None:
                return self.status
            if not self._read_start(timeout):
                return None
            if self._error is not None:
                raise self._error
            if self.sock.fileno() < 0:
                return self.status
            self.sock.settimeout(timeout)
            try:
                message, _ = protocol.recv(self.sock)
            except (TimeoutError, BlockingIOError):
                return None  # still running
            except OSError:
                message = None
            self.status = int(message["status"]) if message and "status" in message else -signal.SIGKILL
            self.sock.close()
            return self.status

    def close(self) -> None:
        self.sock.close()
        if self._terminal is not None:
            os.close(self._terminal)
            self._terminal = None


@dataclass
class RuntimeContainer:
    """A running container as the runtime knows it: its id, scratch dir and pid 1's socket."""

    id: str
    scratch: Path
    ctl: socket.socket
    runtime: Runtime
    alive: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _watches: list[ExitWatch] = field(default_factory=list)

    def request(
        self, message: Mapping[str, object], fds: Sequence[int] = ()
    ) -> tuple[Mapping[str, Any], list[int], socket.socket]:
        """Ask pid 1; its answer (raised as OSError or ContainerError if it failed), the
        descriptors it attached and the reply socket (the caller closes them)."""
        if not self.alive:
            raise ContainerError(f"container {self.id} is stopped")
        try:
            answer, got, sock = protocol.call(self.ctl, message, fds)
        except OSError as exc:
            raise ContainerError(f"container {self.id} does not answer (is it stopped?): {exc}") from exc
        try:
            # an OSError's text without errno and path (the caller names its own path)
            return protocol.raise_for(answer, f"container {self.id} is stopped"), got, sock
        except BaseException:
            sock.close()
            for fd in got:
                os.close(fd)
            raise

    def exec(self, argv: Sequence[str], env: dict[str, str], cwd: str, user: str | None,
             stdio: Sequence[int], tty: tuple[int, int] | None = None) -> ExitWatch:
        """Start ``argv``; with ``tty`` (rows, columns) on a new pseudo-terminal instead of
        ``stdio`` (``ExitWatch.terminal`` is its master)."""
        if not self.alive:
            raise ContainerError(f"container {self.id} is stopped")
        mine, theirs = protocol.reply_pair()
        message: ExecRequest = {"op": "exec", "argv": list(argv), "env": env, "cwd": cwd, "user": user}
        if tty is not None:
            message["tty"] = list(tty)
            stdio = ()
        try:
            protocol.send(self.ctl, message, [theirs.fileno(), *stdio])
        except OSError as exc:
            mine.close()
            raise ContainerError(f"container {self.id} does not answer (is it stopped?): {exc}") from exc
        finally:
            theirs.close()
        watch = ExitWatch(mine)
        with self._lock:
            self._watches = [w for w in self._watches if w.status is None]
            self._watches.append(watch)
        return watch

    def kill(self, pid: int, sig: int, group: bool = True) -> None:
        with contextlib.suppress(ContainerError):
            kill: KillRequest = {"op": "kill", "pid": pid, "signal": int(sig), "group": group}
            _a, _f, sock = self.request(kill)
            sock.close()

    def freeze(self, stop: bool) -> None:
        """Stop (or continue) every process of the container; see ``processes.freeze``."""
        freeze: FreezeRequest = {"op": "freeze", "stop": stop}
        _a, _f, sock = self.request(freeze)
        sock.close()

    def network_namespace(self) -> int:
        """The container's network namespace, opened by its pid 1 (the caller closes it)."""
        netns: NetnsRequest = {"op": "netns"}
        _a, fds, sock = self.request(netns)
        sock.close()
        return fds[0]

    def open(self, path: str, flags: int, mode: int = 0o644, mkdirs: bool = False) -> int:
        request: OpenRequest = {"op": "open", "path": path, "flags": flags, "mode": mode, "mkdirs": mkdirs}
        _a, fds, sock = self.request(request)
        sock.close()
        return fds[0]

    def socket(self, family: str = "inet") -> socket.socket:
        """A new, unconnected TCP socket in the container's network namespace."""
        request: SocketRequest = {"op": "socket", "family": family}
        _a, fds, sock = self.request(request)
        sock.close()
        return socket.socket(fileno=fds[0])

    def resolve_user(self, user: str) -> tuple[int, int]:
        """(uid, gid) of ``user`` as the container's /etc/passwd and /etc/group define it."""
        request: UserRequest = {"op": "user", "user": user}
        answer, _f, sock = self.request(request)
        sock.close()
        return int(answer["uid"]), int(answer["gid"])

    def destroy(self, remove: bool) -> None:
        """Kill every process of the container; with ``remove`` also delete its scratch dir.

        Pid 1 kills and reaps everything in the pid namespace and answers before it exits
        itself, so this returns as soon as no process the container ran is left; tearing
        down the namespaces and mounts (several ms) then happens off the caller's path, and
        the zygote removes the scratch dir when it reaps pid 1 (its exit status says so).
        """
        with self._lock:
            answered = False
            if self.alive:
                self.alive = False
                with contextlib.suppress(OSError):  # TimeoutError too: pid 1 is stuck, the zygote kills it
                    shutdown: ShutdownRequest = {"op": "shutdown", "remove": remove}
                    answer, _f, sock = protocol.call(self.ctl, shutdown, timeout=SHUTDOWN_TIMEOUT)
                    sock.close()
                    answered = bool(answer and answer.get("ok"))
                self.ctl.close()
            if not answered:  # pid 1 did not take care of it: the zygote kills it and removes
                self.runtime.release(self.id, [str(self.scratch)] if remove else [])
            for watch in self._watches:  # each learns its status, or EOF: -SIGKILL
                with contextlib.suppress(ContainerError):
                    watch.wait(5)
            self._watches.clear()
