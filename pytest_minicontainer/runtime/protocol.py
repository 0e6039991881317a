"""Messages between the library, the zygote and each container's pid 1.

Every message is one JSON object sent as one datagram on a ``SOCK_SEQPACKET`` unix socket,
optionally with file descriptors attached (``SCM_RIGHTS``).  Each request carries a fresh
socket of its own on which the answer comes back, so callers in several threads never read
each other's replies and no request ids are needed.
"""

from __future__ import annotations

import array
import json
import os
import socket
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_MESSAGE", "call", "recv", "reply_pair", "send"]

MAX_MESSAGE = 1 << 20
_MAX_FDS = 16
_FD_SIZE = array.array("i").itemsize


def send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    """Send one message (and ``fds``) as a single datagram."""
    data = json.dumps(message, separators=(",", ":")).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """Receive one message; ``(None, [])`` at end of file."""
    # MSG_CMSG_CLOEXEC: a received descriptor must never leak into a process pid 1 execs: a
    # command would hold pid 1's request sockets (and could answer the library in its place)
    # or a pipe end that keeps a reader waiting for EOF.  socket.recv_fds ignores its flags
    # before Python 3.13, so recvmsg is called directly.
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(_MAX_FDS * _FD_SIZE),
                                                socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _FD_SIZE
            fds.extend(array.array("i", payload[:usable]))
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    message: dict[str, Any] = json.loads(data)
    return message, fds


def reply_pair() -> tuple[socket.socket, socket.socket]:
    """A (mine, theirs) pair: send ``theirs`` along with a request, read the answer on ``mine``."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def call(
    sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = (), timeout: float | None = None
) -> tuple[dict[str, Any] | None, list[int], socket.socket]:
    """Send a request with a reply socket; return the first answer and the reply socket.

    The reply socket stays open so that callers expecting a second message (an exit status)
    can keep reading it; they must close it.  With ``timeout`` (seconds), no answer by then
    raises TimeoutError.
    """
    mine, theirs = reply_pair()
    try:
        send(sock, message, [theirs.fileno(), *fds])
    except OSError:
        mine.close()
        raise
    finally:
        theirs.close()
    try:
        mine.settimeout(timeout)
        answer, got = recv(mine)
    except OSError:
        mine.close()
        raise
    mine.settimeout(None)
    return answer, got, mine
