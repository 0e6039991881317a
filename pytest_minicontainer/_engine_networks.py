"""An Engine's networks (``engine.network()``) and which of its containers is on which.

The Engine keeps this book itself, by container id: a member's networks, its hosts file on
the host and its runtime handle (to join one more network), so that neither it nor a
:class:`~pytest_minicontainer.networks.Network` reaches into a Container.  A Network is handed
the book as its owner (``connect``, ``remove``), never the Engine's internals.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ContainerError, MiniContainerError
from .networks import Network, check_alias, write_hosts
from .options import NETWORKS
from .runtime.client import Runtime, RuntimeContainer
from .runtime.messages import ContainerSpec, JoinSpec
from .runtime.mounts import HOSTS

if TYPE_CHECKING:
    from .container import Container
    from .engine import Engine

__all__ = ["NetworkBook", "slirp4netns"]


def slirp4netns() -> str:
    """The slirp4netns that ``network="slirp"`` needs, or a ContainerError saying how to get it."""
    found = shutil.which("slirp4netns")
    if found is None:
        raise ContainerError(
            'network="slirp" (a private network with outbound access) needs slirp4netns, which is not '
            'on PATH.\n  fix: apt-get install slirp4netns (dnf install slirp4netns), or use network="host" '
            "to share the host's network")
    return found


@dataclass
class _Member:
    """A container on at least one network: its networks (the one it started on first), its
    /etc/hosts on the host, and its runtime handle."""

    handle: RuntimeContainer
    hosts: Path
    nets: list[Network] = field(default_factory=list)


@dataclass
class Joining:
    """A member about to start: its network, its address and its hosts file (see ``prepare``)."""

    net: Network
    ip: str
    hosts: Path


class NetworkBook:
    """The networks of one Engine and their members."""

    def __init__(self, engine: Engine, runtime: Callable[[], Runtime], started: Callable[[], Runtime | None],
                 in_use: Callable[[str], bool]) -> None:
        self.engine = engine  # what each Network says it belongs to (``network.engine``)
        self._runtime = runtime  # the engine's runtime, started if need be
        self._started = started  # the engine's runtime if it runs (closing: never start one)
        self._in_use = in_use  # whether a container id is one of the engine's, not removed
        self._lock = threading.RLock()
        self._networks: dict[str, Network] = {}  # by name
        self._members: dict[str, _Member] = {}  # by container id
        self._count = 0

    # -- networks -------------------------------------------------------------------------------
    def network(self, name: str | None, outbound: bool) -> Network:
        """``engine.network(name, outbound=)``: the network of that name, made on first use."""
        if name is not None and (not isinstance(name, str) or not name or name in NETWORKS):
            raise ValueError(f"a network name must be a non-empty string other than {', '.join(NETWORKS)},"
                             f" not {name!r}")
        with self._lock:
            if name is not None and name in self._networks:
                net = self._networks[name]
                if net.outbound != outbound:
                    raise ValueError(f"network {name!r} exists with outbound={net.outbound}")
                return net
            rt = self._runtime()
            # the lowest free number: a long session makes a network per test, one at a time
            free = sorted(set(range(1, 255)) - {n.index for n in self._networks.values()})
            if not free:
                raise ContainerError("this Engine has 254 networks already: remove some (network.remove()) first")
            index = free[0]
            self._count += 1
            name = name or f"network{self._count}"
            net = Network(self.engine, name, index, outbound, owner=self)
            if outbound:
                slirp4netns()  # the fix now, not at the first member
            rt.make_network(net.id)
            self._networks[name] = net
            return net

    def resolve(self, network: str | Network) -> tuple[Network | None, str]:
        """``run(network=...)``: the Network it names (None for a mode) and the runtime's mode."""
        net: Network | None = None
        if isinstance(network, Network):
            if network.engine is not self.engine or network.removed:
                raise ValueError(f"{network!r} is not a network of this Engine (removed, or another Engine's)")
            net = network
        elif isinstance(network, str) and network and network not in NETWORKS:
            net = self.network(network, False)
        elif network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, a Network or a network's name, not {network!r}")
        mode = ("slirp" if net.outbound else "none") if net is not None else str(network)
        return net, mode

    def remove(self, net: Network, closing: bool = False) -> None:
        """``net.remove()``: refused while it has members, unless the engine closes."""
        with self._lock:
            if net.removed:
                return
            members = [cid for cid, m in self._members.items() if net in m.nets]
            if members and not closing:
                raise ContainerError(f"network {net.name!r} still has members ({', '.join(members)}):"
                                     " remove them first")
            net.removed = True
            self._networks.pop(net.name, None)
        rt = self._started()
        if rt is not None:
            rt.remove_network(net.id)

    def close(self) -> None:
        for net in list(self._networks.values()):
            with contextlib.suppress(MiniContainerError, OSError):
                self.remove(net, closing=True)

    # -- members --------------------------------------------------------------------------------
    def prepare(self, net: Network, spec: ContainerSpec, scratch: Path) -> Joining:
        """An address and a hosts file for a container about to start on ``net``, in its ``spec``."""
        ip = net.allocate()
        spec["join"] = {"network": net.id, "address": f"{ip}/{net.subnet.prefixlen}"}
        hosts_dir = scratch / "networks"
        hosts_dir.mkdir(exist_ok=True)
        hosts = hosts_dir / f"{os.urandom(6).hex()}.hosts"
        write_hosts(hosts, [net])
        spec.setdefault("binds", []).append({"source": str(hosts), "target": HOSTS, "readonly": True})
        return Joining(net, ip, hosts)

    def abort(self, joining: Joining) -> None:
        """The container of :meth:`prepare` did not start."""
        joining.net.release(joining.ip)
        joining.hosts.unlink(missing_ok=True)

    def admit(self, handle: RuntimeContainer, joining: Joining, names: Sequence[str]) -> None:
        """The container of :meth:`prepare` runs: every member (this one too) lists it by ``names``."""
        joining.net.join(handle.id, joining.ip, names)
        with self._lock:
            self._members[handle.id] = _Member(handle, joining.hosts, [joining.net])
        self._refresh(joining.net)

    def forget(self, cid: str) -> None:
        """The container ``cid`` is removed: it leaves its networks, the others stop listing it."""
        with self._lock:
            member = self._members.pop(cid, None)
        if member is None:
            return
        for net in member.nets:
            net.leave(cid)
            self._refresh(net)
        member.hosts.unlink(missing_ok=True)

    def networks_of(self, cid: str) -> list[Network]:
        with self._lock:
            member = self._members.get(cid)
            return list(member.nets) if member is not None else []

    def connect(self, net: Network, container: Container, aliases: Sequence[str]) -> str:
        """``net.connect(container)``: one more interface and address for a running member."""
        if net.engine is not self.engine or net.removed:
            raise ValueError(f"{net!r} is not a network of this Engine (removed, or another Engine's)")
        if container.engine is not self.engine or not self._in_use(container.id):
            raise ContainerError(f"container {container.id} is not a container of this Engine (or it is removed)")
        with self._lock:
            member = self._members.get(container.id)
        if member is not None and net in member.nets:
            raise ValueError(f"container {container.id} is on network {net.name!r} already")
        if member is None:
            raise ContainerError(f"container {container.id} started without a network (network=\"{container.network}\")"
                                 ": only members of a network join more (start it with network=...)")
        names = [check_alias(a) for a in aliases]
        ip = net.allocate()
        try:
            netns = member.handle.network_namespace()
            try:
                join: JoinSpec = {"network": net.id, "address": f"{ip}/{net.subnet.prefixlen}",
                                  "ifname": f"eth{len(member.nets)}"}
                self._runtime().connect_network(container.id, join, netns)
            finally:
                os.close(netns)
        except BaseException:
            net.release(ip)
            raise
        net.join(container.id, ip, [container.hostname, container.id, *names])
        with self._lock:
            member.nets.append(net)
        container.ips[net.name] = ip
        self._refresh(net)
        return ip

    def _refresh(self, net: Network) -> None:
        """Rewrite the hosts file of every member of ``net`` (each lists all its networks)."""
        with self._lock:
            members = [(m.hosts, list(m.nets)) for m in self._members.values() if net in m.nets]
        for hosts, nets in members:
            with contextlib.suppress(OSError):
                write_hosts(hosts, nets)
