"""Messages between the library, the zygote and each container's pid 1.

Every message is one JSON object sent as one datagram on a ``SOCK_SEQPACKET`` unix socket,
optionally with file descriptors attached (``SCM_RIGHTS``).  Each request carries a fresh
socket of its own on which the answer comes back, so callers in several threads never read
each other's replies and no request ids are needed.
"""

from __future__ import annotations

import array
import errno
import json
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ContainerError
from .messages import ErrorReply

__all__ = ["MAX_MESSAGE", "call", "error_reply", "raise_for", "recv", "reply_pair", "send"]

MAX_MESSAGE = 1 << 20
_MAX_FDS = 16
_FD_SIZE = array.array("i").itemsize


#: Larger messages travel in a memfd: a datagram is bounded by the socket's send buffer
#: (about 200 kB by default), and a diff of a deep tree or a long listing can pass that.
_INLINE = 64 << 10
#: What a memfd message may hold at most, so a confused peer cannot make the reader allocate without bound.
_MAX_MEMFD = 1 << 30
_MEMFD_KEY = "$memfd"


def send(sock: socket.socket, message: Mapping[str, object], fds: Sequence[int] = ()) -> None:
    """Send one message (and ``fds``) as a single datagram, or its body in a memfd when large."""
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > _INLINE:
        memfd = os.memfd_create("minicontainer-message", os.MFD_CLOEXEC)
        try:
            with open(memfd, "wb", closefd=False) as f:
                f.write(data)
            socket.send_fds(sock, [json.dumps({_MEMFD_KEY: len(data)}).encode()], [*fds, memfd])
        finally:
            os.close(memfd)
        return
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def _from_memfd(size: object, fds: list[int]) -> dict[str, Any]:
    if not fds or not isinstance(size, int) or not 0 <= size <= _MAX_MEMFD:
        for fd in fds:
            os.close(fd)
        raise OSError(errno.EPROTO, "malformed large message")
    memfd = fds.pop()
    os.lseek(memfd, 0, os.SEEK_SET)  # the sender's write left the shared offset at the end
    with open(memfd, "rb") as f:
        data = f.read(size + 1)
    if len(data) != size:
        raise OSError(errno.EPROTO, "a large message of the wrong size")
    message: dict[str, Any] = json.loads(data)
    return message


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """Receive one message; ``(None, [])`` at end of file.

    Typed loosely on purpose: what arrives is whatever JSON the peer sent, checked as far as
    its reader indexes it (see :mod:`.messages` for the shapes).
    """
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
    if _MEMFD_KEY in message:
        message = _from_memfd(message[_MEMFD_KEY], fds)
    return message, fds


def reply_pair() -> tuple[socket.socket, socket.socket]:
    """A (mine, theirs) pair: send ``theirs`` along with a request, read the answer on ``mine``."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def call(
    sock: socket.socket, message: Mapping[str, object], fds: Sequence[int] = (), timeout: float | None = None
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


def error_reply(problem: BaseException | str, context: str = "", *, strerror: bool = False, err: int | None = None,
                step: str | None = None, cid: str | None = None, scratch: str | None = None) -> ErrorReply:
    """The one shape of a failure's answer, decoded by :func:`raise_for` (or ``hostcheck``).

    ``context`` (the request's op) prefixes the exception's type for a failure nobody
    expected, so that a bug's report says where it happened; an expected one (an OSError, a
    malformed request) travels as its own text.  ``strerror``: an OSError's text without errno
    and path too, for callers that name their own path.  ``step``, ``cid`` and ``scratch``:
    where a container's start failed, and what is left of it to clean up.
    """
    if isinstance(problem, str):
        reply: ErrorReply = {"ok": False, "error": problem, "errno": err or 0}
    else:
        text = f"{context}: {type(problem).__name__}: {problem}" if context else str(problem)
        code = getattr(problem, "errno", 0) if err is None else err
        reply = {"ok": False, "error": text, "errno": code if isinstance(code, int) else 0,
                 "type": type(problem).__name__}
        if strerror and isinstance(problem, OSError):
            reply["strerror"] = problem.strerror or ""
    if step is not None:
        reply["step"] = step
    if cid is not None:
        reply["id"] = cid
    if scratch is not None:
        reply["scratch"] = scratch
    return reply


def raise_for(answer: Mapping[str, Any] | None, gone: str, context: str = "", *,
              oserror: bool = True) -> Mapping[str, Any]:
    """``answer`` if it says ok; else raise what it reports.

    None (the peer closed the reply socket without a word: it died) raises
    ``ContainerError(gone)``.  A failure carrying an errno raises ``OSError(errno, text)``, as
    if the call had been local (with ``oserror`` False it is the caller's own failure, a
    ContainerError like the rest); anything else raises ``ContainerError(context + text)``.
    (A failed start of the zygote or of a container is explained by ``hostcheck`` instead,
    which knows what the host refuses and how to fix it.)
    """
    if answer is None:
        raise ContainerError(gone)
    if answer.get("ok"):
        return answer
    text = str(answer.get("error") or "unknown error")
    code = answer.get("errno") or 0
    if oserror and isinstance(code, int) and code:
        raise OSError(code, str(answer.get("strerror") or text))
    raise ContainerError(context + text)
