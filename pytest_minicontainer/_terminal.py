"""Relay a container command's pseudo-terminal: ``minicontainer run -t`` and ``exec(tty=True)``.

Pid 1 gives the command a terminal of the container's own devpts and hands its master back
(see ``runtime.init``); what is left is moving bytes between that master and the host: the
user's keystrokes in, the screen out, the window size kept current.  One loop serves both
callers: the CLI relays the host's stdin and stdout, ``exec`` feeds fixed input and collects
the output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from ._sys import set_window_size, terminal_peer, unread_input
from ._sys import window_size as host_window_size

__all__ = ["EOF", "relay", "window_size", "window_size_follows"]

#: What the terminal reads as end of input (VEOF, ^D); sent when the input runs out, as a
#: user would type it.
EOF = b"\x04"


def _end(last: bytes) -> bytes:
    """What ends input whose last byte was ``last``: ^D at the start of a line; after a partial
    line a first ^D only hands that line over, so a second one is needed."""
    return EOF if last in (b"", b"\n") else EOF + EOF

#: After the command exited, output still on its way through the terminal's buffers is read
#: until the terminal is quiet this long (or closes): a daemon the command left behind may
#: hold the terminal open for ever.
_QUIET = 0.2


def window_size(*fds: int) -> tuple[int, int]:
    """The size of the first terminal among ``fds``; 24x80 (a console's) when none is one."""
    for fd in fds:
        size = host_window_size(fd)
        if size is not None and size[0] > 0 and size[1] > 0:
            return size
    return 24, 80


@contextlib.contextmanager
def window_size_follows(master: int, *fds: int) -> Iterator[None]:
    """Keep the container's terminal as large as the host's (SIGWINCH) inside the block."""

    def resized(_signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            set_window_size(master, *window_size(*fds))

    previous: Any = signal.signal(signal.SIGWINCH, resized)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous if previous is not None else signal.SIG_DFL)


class _EndOfInput:
    """When to type ^D: once the program has read everything typed and sits waiting.

    Typed ahead, a ^D is easily lost: a shell's line editor switches the terminal out of
    canonical mode after it started, and a ^D the kernel took as end-of-file in canonical
    mode then reaches it as a NUL.  A user types ^D at a prompt, so it is sent the same way:
    when nothing typed is left unread (``FIONREAD`` on the terminal's slave) and the screen
    has been still for a moment.
    """

    _STILL = 0.1

    def __init__(self, master: int, last: bytes) -> None:
        self.text = _end(last)
        self.peer: int | None = None
        with contextlib.suppress(OSError):
            self.peer = terminal_peer(master)

    def due(self, still_since: float) -> bool:
        if self.peer is None:
            return True
        try:
            unread = unread_input(self.peer)
        except OSError:
            return True
        return unread == 0 and time.monotonic() - still_since >= self._STILL

    def close(self) -> None:
        if self.peer is not None:
            os.close(self.peer)
            self.peer = None


def relay(master: int, exited: int, source: int | bytes | None, sink: Callable[[bytes], None],
          timeout: float | None = None) -> bool:
    """Move bytes until the command is done; False when ``timeout`` passed first.

    ``source`` is what the terminal reads: a descriptor (the host's stdin) or bytes, then an
    end-of-file (^D, see :class:`_EndOfInput`); None types nothing.  Everything the terminal
    prints goes to ``sink``.  ``exited`` becomes readable when the command has exited (the
    reply socket of its exec).  The relay ends when the terminal closes (EIO: nothing in the
    container holds it any more) or, once the command exited, when it has been quiet for a
    moment.
    """
    sel = selectors.PollSelector()
    pending = b"" if source is None or isinstance(source, int) else bytes(source)
    last = pending[-1:]  # the last byte typed
    ending: _EndOfInput | None = None
    typing = isinstance(source, bytes)  # more input may come (bytes: until pending is written)
    os.set_blocking(master, False)
    sel.register(master, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0))
    sel.register(exited, selectors.EVENT_READ)
    if isinstance(source, int):
        sel.register(source, selectors.EVENT_READ)
        typing = True
    deadline = None if timeout is None else time.monotonic() + timeout
    quiet_until: float | None = None
    still_since = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            if typing and not pending and not isinstance(source, int):
                typing, ending = False, _EndOfInput(master, last)
            if ending is not None and ending.due(still_since):
                pending = ending.text
                ending.close()
                ending = None
                sel.modify(master, selectors.EVENT_READ | selectors.EVENT_WRITE)
            waits = [t - now for t in (deadline, quiet_until) if t is not None]
            if ending is not None:
                waits.append(0.02)
            events = sel.select(max(0.0, min(waits)) if waits else None)
            if not events and quiet_until is not None and time.monotonic() >= quiet_until:
                return True
            for key, mask in events:
                if key.fd == exited:
                    sel.unregister(exited)
                    quiet_until = time.monotonic() + _QUIET
                elif key.fd == master:
                    if mask & selectors.EVENT_READ:
                        try:
                            chunk = os.read(master, 65536)
                        except BlockingIOError:
                            chunk = None
                        except OSError as exc:  # EIO: the last holder of the slave closed it
                            if exc.errno != errno.EIO:
                                raise
                            return True
                        if chunk == b"":
                            return True
                        if chunk:
                            sink(chunk)
                            still_since = time.monotonic()
                            if quiet_until is not None:
                                quiet_until = still_since + _QUIET
                    if mask & selectors.EVENT_WRITE and pending:
                        with contextlib.suppress(BlockingIOError):
                            pending = pending[os.write(master, pending[:4096]):]
                        if not pending:
                            sel.modify(master, selectors.EVENT_READ)
                else:  # the host's input
                    data = os.read(key.fd, 4096)
                    if data:
                        last = data[-1:]
                        pending += data
                        sel.modify(master, selectors.EVENT_READ | selectors.EVENT_WRITE)
                    else:
                        sel.unregister(key.fd)
                        source = None  # typed to the end: ^D once it is all written and read
    finally:
        sel.close()
        if ending is not None:
            ending.close()
