"""The request loop shared by the zygote and every container's pid 1.

Both are single-threaded servers of one control socket that must also notice their children
exiting: SIGCHLD writes to a pipe (``signal.set_wakeup_fd``) that ``select`` watches next to
the socket, so neither ever blocks in ``waitpid`` while a request waits.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
from typing import Any

from . import protocol

__all__ = ["Server"]


class Server:
    """Serve ``ctl`` until it closes or :meth:`handle` says stop; subclasses fill in the hooks."""

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

    # -- hooks ------------------------------------------------------------------------------
    def handle(self, message: dict[str, Any], fds: list[int]) -> bool:
        """Answer one request; True ends the loop."""
        raise NotImplementedError

    def reap(self) -> None:
        """Collect exited children (SIGCHLD arrived)."""

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
