"""The request loop shared by the zygote and every container's pid 1.

Both are single-threaded servers of one control socket that must also notice their children
exiting: SIGCHLD writes to a pipe (``signal.set_wakeup_fd``) that ``select`` watches next to
the socket, so neither ever blocks in ``waitpid`` while a request waits.

Each request names its ``op``; the server's :attr:`Server.ops` table maps it to a method (one
method per verb, as crun has one file per verb).  Whatever a handler raises is answered as an
error on the request's reply socket (:func:`.protocol.error_reply`) and the loop goes on: one
bad request must never end the zygote, on which every container of the Engine depends.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from . import protocol
from .messages import OkReply

__all__ = ["OK", "Exchange", "Server", "children"]

OK: OkReply = {"ok": True}


class Exchange:
    """One request's reply socket and the descriptors that came with it.

    The server closes both once the handler returns, unless the handler :meth:`keep`\\s the
    reply to answer later (an exec's exit status, a destroy that waits for pid 1's end).
    Descriptors a handler needs beyond its return it must duplicate (or hand over by
    sending them, which duplicates them too).
    """

    __slots__ = ("fds", "kept", "reply")

    def __init__(self, reply: socket.socket, fds: list[int]) -> None:
        self.reply = reply
        self.fds = fds
        self.kept = False

    def answer(self, message: Mapping[str, object] = OK, fds: Sequence[int] = ()) -> None:
        protocol.send(self.reply, message, fds)

    def keep(self) -> socket.socket:
        """Take over the reply socket: the handler (or what it stored it in) closes it."""
        self.kept = True
        return self.reply

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        if not self.kept:
            self.reply.close()


#: A handler: the server, the request (arbitrary JSON until the handler reads it), its
#: exchange; True ends the loop.
Handler = Callable[[Any, Any, Exchange], bool]


def children(block: bool = False) -> Iterator[tuple[int, int]]:
    """(pid, status) of every child that has exited; with ``block``, wait until none is left.

    The one reap loop of the runtime: a server reaps what SIGCHLD announced, and waits for
    all of its children when it shuts down.
    """
    while True:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if pid == 0:
            return
        yield pid, status


class Server:
    """Serve ``ctl`` until it closes or a handler says stop; subclasses fill in the hooks."""

    #: op -> handler; an op not listed is answered with an error naming it.
    ops: ClassVar[Mapping[str, Handler]] = {}
    #: Failures a handler may meet in normal use, answered with their own text; anything
    #: else is a bug, answered with the op and the exception's type too.
    expected: ClassVar[tuple[type[BaseException], ...]] = (OSError,)
    #: Whether an OSError's answer carries its strerror (see ``protocol.error_reply``).
    strerror: ClassVar[bool] = False

    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def serve(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.ctl.fileno(), self.wake_r], [], [],
                                            0 if self.has_idle_work() else None)
            except InterruptedError:
                continue
            if not ready:
                self.idle()
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
                if message is None:  # the library went away: take everything down
                    self.shutdown()
                    return
                if self.handle(message, fds):
                    return

    def handle(self, message: dict[str, Any], fds: list[int]) -> bool:
        """Answer one request (``fds[0]`` is its reply socket); True ends the loop."""
        try:
            reply = socket.socket(fileno=fds[0])
        except (IndexError, OSError):  # nowhere to answer: a confused peer, not a reason to stop
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            return False
        exchange = Exchange(reply, fds[1:])
        op = message.get("op")
        try:
            handler = self.ops.get(op) if isinstance(op, str) else None
            if handler is None:
                exchange.answer(protocol.error_reply(f"unknown request {op!r}"))
                return False
            return handler(self, message, exchange)
        except Exception as exc:
            with contextlib.suppress(OSError):
                exchange.answer(protocol.error_reply(exc, "" if isinstance(exc, self.expected) else str(op),
                                                     strerror=self.strerror))
            return False
        finally:
            exchange.close()

    def reap(self) -> None:
        """Collect exited children (SIGCHLD arrived)."""
        for pid, status in children():
            self.exited(pid, status)

    # -- hooks ------------------------------------------------------------------------------
    def exited(self, pid: int, status: int) -> None:
        """Child ``pid`` has ended with ``status`` (as ``waitpid`` tells it)."""

    def shutdown(self) -> None:
        """The control socket closed."""

    def has_idle_work(self) -> bool:
        return False

    def idle(self) -> None:
        """Called when nothing is asked and :meth:`has_idle_work` said there is something to do."""

    def close_in_child(self) -> None:
        """In a forked child: let go of the loop's descriptors and signal set-up."""
        signal.set_wakeup_fd(-1)
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.ctl.close()
