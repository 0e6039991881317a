"""Publishing a container's port on the host's loopback, without root and without a bridge.

A :class:`Forwarder` listens on ``127.0.0.1`` with a port the kernel picks (so parallel tests
and xdist workers never collide) and, for every connection it accepts, asks the container's
pid 1 for a TCP socket created *inside* the container's network namespace, connects it to the
published port there and copies bytes both ways.  This is the shape of rootlesskit's builtin
port driver: the only privilege it needs is the one the runtime already has.

Copying is the cost of this design, so each direction moves data with ``splice(2)`` through a
pipe (socket -> pipe -> socket stays in the kernel: no copy into Python objects and the GIL is
released while it blocks) and falls back to ``recv_into``/``sendall`` with a large buffer where
splice is refused.  Each direction has its own thread: blocking calls keep the code short, and
a test opens tens of connections, not thousands.

End of data is forwarded as a half-close (``shutdown(SHUT_WR)``), so request/response
protocols that signal "done" by closing their write side work; a reset or error on either side
takes the whole connection down.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import threading
from collections.abc import Callable
from typing import Protocol

from .errors import MiniContainerError

__all__ = ["LOOPBACKS", "Direct", "Forwarder", "publish"]

#: Where a container's own servers are looked for when no address is given: IPv4, then IPv6.
LOOPBACKS = ("127.0.0.1", "::1")

_CHUNK = 1 << 20  # bytes per splice / recv: large moves keep the per-call overhead small
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_SPLICE_MOVE = getattr(os, "SPLICE_F_MOVE", 1)
# Errors that mean "splice cannot do this pair of descriptors": copy through user space instead.
_NO_SPLICE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


class Direct:
    """The "published" address of a container sharing the host's network: its own port."""

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)

    def close(self) -> None:
        """Nothing to undo: no listener was created."""


class Forwarder:
    """Accepts on ``address`` (127.0.0.1, a free port) and forwards to ``port`` in the container.

    ``open_socket(family)`` makes a socket inside the container's network namespace (its
    ``Container.socket``): all a forwarder needs of the container.  ``name`` (the container's
    id) names it in messages and thread names.
    """

    def __init__(self, open_socket: Callable[[str], socket.socket], port: int, host: str = "127.0.0.1", *,
                 name: str = "") -> None:
        self.open_socket = open_socket
        self.name = name
        self.port = port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._listener.bind((host, 0))
            self._listener.listen(128)
        except OSError:
            self._listener.close()
            raise
        name = self._listener.getsockname()
        self.address: tuple[str, int] = (str(name[0]), int(name[1]))
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # every socket of a live connection, to cut on close
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"minicontainer-publish-{name}-{port}")
        self._acceptor.start()

    def __repr__(self) -> str:
        return f"<Forwarder {self.address[0]}:{self.address[1]} -> container {self.name}:{self.port}>"

    @property
    def connections(self) -> int:
        """How many forwarded connections are open now (for tests and diagnostics)."""
        with self._lock:
            return len(self._open) // 2

    # -- accepting -----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed (shutdown wakes accept with EINVAL)
            if self._closed:
                client.close()
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True,
                             name=f"minicontainer-publish-{self.port}-conn").start()

    def _upstream(self) -> socket.socket | None:
        """A socket connected to the port inside the container (IPv4 first, then ::1)."""
        for host in LOOPBACKS:
            try:
                sock = self.open_socket("inet6" if ":" in host else "inet")
            except (OSError, MiniContainerError):
                return None  # the container is gone
            try:
                sock.connect((host, self.port))
            except OSError:
                sock.close()
                continue
            return sock
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream = self._upstream()
        if upstream is None:
            # Nothing listens inside (yet): reset the client's connection, as a refused connect
            # would, rather than accept-then-EOF that looks like an empty answer.
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            client.close()
            return
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._closed:
                client.close()
                upstream.close()
                return
            self._open |= {client, upstream}
        other = threading.Thread(target=_pump, args=(upstream, client), daemon=True,
                                 name=f"minicontainer-publish-{self.port}-back")
        other.start()
        _pump(client, upstream)
        other.join()
        with self._lock:
            self._open -= {client, upstream}
        client.close()
        upstream.close()

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop listening and cut every forwarded connection (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            live = list(self._open)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._listener.close()
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes both pumps; _serve closes the sockets
        if self._acceptor is not threading.current_thread():
            self._acceptor.join(5)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until end of data, then half-close ``dst``; cut both on error."""
    try:
        try:
            _splice_copy(src, dst)
        except _SpliceRefused:
            _buffer_copy(src, dst)
    except OSError:
        for s in (src, dst):  # a reset on one side: the other side must learn it too
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        return
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class _SpliceRefused(Exception):
    """splice(2) cannot be used for this connection (before any byte moved)."""


def _splice_copy(src: socket.socket, dst: socket.socket) -> None:
    splice = getattr(os, "splice", None)
    if splice is None:
        raise _SpliceRefused
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, _F_SETPIPE_SZ, _CHUNK)  # may exceed fs.pipe-max-size: keep the default
        sfd, dfd = src.fileno(), dst.fileno()
        moved_any = False
        while True:
            try:
                n = splice(sfd, w, _CHUNK, flags=_SPLICE_MOVE)
            except OSError as exc:
                if not moved_any and exc.errno in _NO_SPLICE:
                    raise _SpliceRefused from exc
                raise
            if n == 0:
                return
            moved_any = True
            while n:
                n -= splice(r, dfd, n, flags=_SPLICE_MOVE)
    finally:
        os.close(r)
        os.close(w)


def _buffer_copy(src: socket.socket, dst: socket.socket) -> None:
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    while True:
        n = src.recv_into(buf)
        if n == 0:
            return
        dst.sendall(view[:n])


class _Publisher(Protocol):
    def publish(self, port: int) -> tuple[str, int]: ...


def publish(container: _Publisher, port: int) -> tuple[str, int]:
    """Make ``port`` of ``container`` reachable on the host (``container.publish(port)``)."""
    return container.publish(port)
