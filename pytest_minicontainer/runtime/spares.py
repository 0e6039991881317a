"""The zygote's pool of spare containers: which to make next, which to hand out, which to retire.

A spare is a container cloned ahead of time (its namespaces made, /proc and /dev staged,
with a *template* its whole root too: see ``init.spare_main``) that waits on a socket for
its spec; handing it one costs a message instead of a clone and a dozen mounts.  This module
is the bookkeeping only, free of namespaces so that it can be tested as plain data: the
zygote clones the spares (``_Zygote.make_spare``) and tells the pool what happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import NamedTuple

from .messages import ContainerSpec

__all__ = ["Spare", "SparePool"]

#: Spares that die before they are used, in a row, after which none is made when idle.
MAX_DEATHS = 3


class Spare(NamedTuple):
    """A container cloned ahead of time, waiting on ``sock`` for its spec."""

    pid: int
    sock: socket.socket
    cid: str
    scratch: str


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class SparePool:
    """Spares by the template they prepared (None: only the namespaces, /proc and /dev).

    ``recent`` holds the templates worth preparing: the last two different ones asked for,
    most recent first.  ``unused`` maps the pid 1 of every spare not handed out (waiting,
    or killed and not reaped yet) to its scratch dir, which the zygote disposes of when that
    pid 1 is reaped.
    """

    def __init__(self, kill: Callable[[int], None] = _kill) -> None:
        self.kill = kill
        self.waiting: dict[str | None, list[Spare]] = {}
        self.recent: list[tuple[str, ContainerSpec]] = []
        self.unused: dict[int, str] = {}
        self.error = ""  # why the last spare could not be made (then none is tried when idle)
        self.deaths = 0  # spares that died before they were used, in a row

    def wanted(self) -> tuple[str | None, ContainerSpec | None] | None:
        """The spare to make next as (key, template); (None, None) a plain one; None: enough."""
        if self.error:
            return None
        for n, (key, spec) in enumerate(self.recent):
            # two for the latest kind: when tests follow each other closely, the next one's
            # spare has had a whole container's lifetime to get ready
            if len(self.waiting.get(key, ())) < (2 if n == 0 else 1):
                return key, spec
        return None if self.waiting.get(None) else (None, None)

    def remember(self, key: str, spec: ContainerSpec) -> None:
        """``spec`` was asked for: keep a spare prepared for it (and for the one before)."""
        if self.recent and self.recent[0][0] == key:
            return
        self.recent = [(key, spec), *[(k, s) for k, s in self.recent if k != key][:1]]
        keep = {k for k, _ in self.recent}
        for stale in [k for k in self.waiting if k is not None and k not in keep]:
            for spare in self.waiting.pop(stale):
                self.retire(spare)

    def has(self, key: str | None) -> bool:
        return bool(self.waiting.get(key))

    def add(self, key: str | None, spare: Spare) -> None:
        """A new spare, ready for containers of template ``key``."""
        self.waiting.setdefault(key, []).append(spare)
        self.unused[spare.pid] = spare.scratch
        self.error = ""

    def failed(self, why: str) -> None:
        """No spare could be made: none is tried when idle until one is made on demand."""
        self.error = why

    def take(self, key: str | None) -> Spare | None:
        """The oldest spare of template ``key``, now the caller's (or :meth:`retire`\\ 's)."""
        waiting = self.waiting.get(key)
        if not waiting:
            return None
        spare = waiting.pop(0)
        self.unused.pop(spare.pid, None)
        return spare

    def handed_over(self) -> None:
        """A spare took its container: spares work (again)."""
        self.deaths = 0

    def retire(self, spare: Spare) -> None:
        """Kill a spare that will not be used; its scratch goes when it is reaped."""
        self.unused[spare.pid] = spare.scratch
        spare.sock.close()
        self.kill(spare.pid)

    def exited(self, pid: int) -> str | None:
        """``pid`` was reaped: forget it if it was a spare; the scratch dir of one never used."""
        for waiting in self.waiting.values():
            for spare in [s for s in waiting if s.pid == pid]:  # died waiting, not killed by us
                waiting.remove(spare)
                spare.sock.close()
                self.deaths += 1
                if self.deaths >= MAX_DEATHS:
                    self.error = "spare containers keep dying (see zygote.log)"
        return self.unused.pop(pid, None)

    def __iter__(self) -> Iterator[Spare]:
        """Every spare waiting."""
        for waiting in self.waiting.values():
            yield from waiting

    def close_sockets(self) -> None:
        """In a forked child: a spare must see EOF when the zygote dies, not when the child does."""
        for spare in self:
            spare.sock.close()
