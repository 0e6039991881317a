"""Private networks of containers: ``engine.network()``, and ``engine.run(..., network=net)``.

A network is a network namespace of its own holding a bridge; each member container gets a
veth pair, one end on the bridge, the other its ``eth0`` with an address of the network's
subnet (the runtime's zygote does the wiring: it owns every namespace involved, so no root is
needed).  Members find each other by hostname, container id and alias through their
``/etc/hosts``: a file per member on the host, bind-mounted read-only and rewritten in place
(by the Engine) as members of any of its networks join and leave, so it always lists them.
A running container joins more networks with :meth:`Network.connect` (``eth1``...).  No DNS
server is run: glibc, musl, Python and Go read ``/etc/hosts`` first with
the default ``nsswitch.conf``, and every address is known when the container starts.

Addresses: the *n*-th network an Engine holds at once is ``10.89.n.0/24`` (a number comes
free again when its network is removed), members get ``.2`` upwards (``.1`` is left for a
gateway, as Docker leaves it).  They are private to the network's namespace: two
Engines (xdist workers) may use the same subnet without ever meeting.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .container import Container
    from .engine import Engine

__all__ = ["Network", "check_alias", "write_hosts"]

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,253}[A-Za-z0-9])?$")
_BASE_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def write_hosts(path: Path, networks: Sequence[Network]) -> None:
    """Rewrite one member's hosts file in place (same inode: its bind mount sees the change)
    with every member of ``networks``.

    The new text goes in with one write and the file is then cut to its length, so a reader
    sees the old or the new list (at worst followed by a stale tail for a moment when a
    member left).
    """
    lines = [_BASE_HOSTS]
    for net in networks:
        lines += [f"{ip}\t{' '.join(names)}\n" for ip, names in net.members.values()]
    data = "".join(dict.fromkeys(lines)).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class NetworkOwner(Protocol):
    """What a Network needs from the Engine that made it (its network book)."""

    def connect(self, net: Network, container: Container, aliases: Sequence[str]) -> str: ...

    def remove(self, net: Network, closing: bool = False) -> None: ...


def check_alias(alias: object) -> str:
    """An alias is a host name: letters, digits, ``-``, ``_`` and ``.``, as Docker accepts."""
    if not isinstance(alias, str) or not _HOSTNAME.match(alias):
        raise ValueError(f"a network alias must be a host name (letters, digits, '-', '_', '.'), not {alias!r}")
    return alias


class Network:
    """A private network of one Engine's containers; a context manager that removes it.

    ``name`` is how ``engine.run(..., network=name)`` finds it; ``outbound`` gives each
    member a way out through slirp4netns (never to the host's loopback).  ``members`` maps
    each member's container id to its address and names.
    """

    def __init__(self, engine: Engine, name: str, index: int, outbound: bool, *, owner: NetworkOwner) -> None:
        self.engine = engine
        self._owner = owner
        self.name = name
        self.index = index
        self.id = f"net{index}"
        self.subnet = ipaddress.ip_network(f"10.89.{index}.0/24")
        self.outbound = outbound
        self.removed = False
        self._lock = threading.Lock()
        self._members: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._taken: set[str] = set()

    def __repr__(self) -> str:
        return f"<Network {self.name!r} {self.subnet} {len(self._members)} member(s)>"

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove()

    @property
    def members(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Container id -> (address, names) of every member."""
        with self._lock:
            return dict(self._members)

    def connect(self, container: Container, aliases: Sequence[str] = ()) -> str:
        """Make a running ``container`` a member too (``docker network connect``): it gets one
        more interface (``eth1``...) and address, found by its hostname, id and ``aliases``.
        Returns the address."""
        return self._owner.connect(self, container, aliases)

    def remove(self) -> None:
        """Remove the network (idempotent); its members lose their ``eth0``."""
        self._owner.remove(self)

    # -- used by the Engine ---------------------------------------------------------------------
    def allocate(self) -> str:
        """A free address for a member about to start (it is taken until :meth:`leave`)."""
        with self._lock:
            for host in self.subnet.hosts():
                ip = str(host)
                if int(host) - int(self.subnet.network_address) >= 2 and ip not in self._taken:
                    self._taken.add(ip)
                    return ip
        raise ValueError(f"network {self.name!r} is full: {self.subnet} has no free address left")

    def release(self, ip: str) -> None:
        """An address allocated for a container that never started."""
        with self._lock:
            self._taken.discard(ip)

    def join(self, cid: str, ip: str, names: Sequence[str]) -> None:
        """``cid`` runs at ``ip``: every member resolves ``names`` to it from now on."""
        with self._lock:
            self._members[cid] = (ip, tuple(dict.fromkeys(names)))

    def leave(self, cid: str) -> None:
        with self._lock:
            member = self._members.pop(cid, None)
            if member is not None:
                self._taken.discard(member[0])
