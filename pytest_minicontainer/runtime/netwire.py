"""The zygote's network helper: makes the namespaces of networks and wires members into them.

Wiring a container into a network means working in two network namespaces (the network's,
where its bridge is, and the container's, where ``eth0`` gets its address).  A process enters
a namespace with ``setns``, but the zygote could never come back to its own, the host's
network namespace, which belongs to a user namespace it has no capability in (it must stay
there: ``network="host"`` containers are cloned into it).  So the work is done by a helper
forked from the zygote once, at the first network: it may enter every namespace the
Engine's user namespace owns and never needs to return.  It answers one request at a time
on a socket pair and exits when the zygote does (EOF, and the parent-death signal).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import _sys
from . import protocol
from .messages import WireDrop, WireJoin, WireMake

if TYPE_CHECKING:  # the zygote imports this module: _netlink only in the helper, when it is used
    from .._netlink import Netlink

#: A request to the helper.
WireRequest = WireMake | WireDrop | WireJoin

__all__ = ["Wirer"]


class Wirer:
    """The zygote's end: start the helper on first use, then ask it."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.pid = 0

    def _start(self, close_in_child: Callable[[], None]) -> socket.socket:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the helper, reported through its socket
            code = 1
            try:
                mine.close()
                close_in_child()
                _sys.set_parent_death_signal(signal.SIGKILL)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _serve(theirs)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        self.sock, self.pid = mine, pid
        return mine

    def ask(self, message: WireRequest, close_in_child: Callable[[], None], fds: Sequence[int] = ()) -> None:
        """Send one request and wait for its answer; OSError with the helper's words if it failed.

        ``close_in_child``: what the helper, forked at the first request, must let go of.
        """
        sock = self.sock or self._start(close_in_child)
        protocol.send(sock, message, fds)
        answer, _ = protocol.recv(sock)
        if answer is None:
            self.close()
            raise OSError(errno.EIO, "the network helper exited")
        protocol.raise_for(answer, "the network helper exited")  # its failures always carry an errno

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _Networks:
    """The helper's side: the networks it holds, one method per op (see ``ops``)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[int, Netlink]] = {}  # network id -> (its namespace, netlink there)

    def make(self, message: WireMake, fds: list[int]) -> None:
        from .._netlink import Netlink

        nid = str(message["id"])
        if nid not in self.held:
            _sys.unshare(_sys.CLONE_NEWNET)  # we stay in it until the next setns: no way back needed
            netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            link = Netlink()
            link.add_bridge("br0")
            link.set_link("br0")
            self.held[nid] = (netns, link)

    def drop(self, message: WireDrop, fds: list[int]) -> None:
        held = self.held.pop(str(message["id"]), None)
        if held is not None:
            held[1].close()
            os.close(held[0])

    def join(self, message: WireJoin, fds: list[int]) -> None:
        """A veth pair from the network's bridge into the namespace ``fds[0]``, with its address."""
        from .._netlink import Netlink

        nid = str(message["id"])
        if nid not in self.held:
            raise OSError(errno.ENOENT, f"network {nid} does not exist (removed?)")
        link = self.held[nid][1]
        veth, ifname = str(message["veth"]), str(message.get("ifname") or "eth0")
        link.add_veth(veth, ifname, fds[0])
        link.set_link(veth, master="br0")
        _sys.setns(fds[0], _sys.CLONE_NEWNET)
        with Netlink() as inside:
            inside.add_address(ifname, str(message["address"]))
            inside.set_link(ifname)

    ops: dict[str, Callable[[_Networks, Any, list[int]], None]] = {"make": make, "drop": drop, "join": join}


def _serve(sock: socket.socket) -> None:  # pragma: no cover - runs in the helper
    networks = _Networks()
    while True:
        message, fds = protocol.recv(sock)
        if message is None:
            return
        try:
            op = message.get("op")
            handler = _Networks.ops.get(op) if isinstance(op, str) else None
            if handler is None:
                raise ValueError(f"unknown request {op!r}")
            handler(networks, message, fds)
            protocol.send(sock, {"ok": True})
        except Exception as exc:
            with contextlib.suppress(OSError):
                protocol.send(sock, protocol.error_reply(exc, err=getattr(exc, "errno", 0) or errno.EIO))
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
