"""Links, addresses and routes over rtnetlink: the bridges and veth pairs of container networks.

The kernel side of ``engine.network()``: what ``ip link add``, ``ip addr add`` and ``ip route
add`` do, spoken directly on an ``AF_NETLINK`` socket, because running ``ip`` for each
container would cost milliseconds on the path every container takes.  Next to ``_sys`` (the
syscalls), this is the only other module that talks to the kernel; it does so only through
the netlink socket it is given, which belongs to the network namespace it was opened in.
The messages are ``struct``-packed headers followed by attributes (``rtattr``), as
``linux/rtnetlink.h`` and ``linux/if_link.h`` define them.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

__all__ = ["Netlink", "NetlinkError"]

_NETLINK_ROUTE = 0
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLM_F_EXCL = 0x200
_NLM_F_CREATE = 0x400

_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_RTM_NEWADDR = 20
_RTM_NEWROUTE = 24

_IFLA_IFNAME = 3
_IFLA_MASTER = 10
_IFLA_LINKINFO = 18
_IFLA_NET_NS_FD = 28
_IFLA_INFO_KIND = 1
_IFLA_INFO_DATA = 2
_VETH_INFO_PEER = 1
_IFA_LOCAL = 2
_IFA_ADDRESS = 1
_RTA_GATEWAY = 5
_RTA_OIF = 4

_IFF_UP = 0x1
_RT_TABLE_MAIN = 254
_RTPROT_BOOT = 3
_RT_SCOPE_UNIVERSE = 0
_RTN_UNICAST = 1


class NetlinkError(OSError):
    """The kernel refused a request; ``what`` says which (``veth v1a2b <-> eth0``)."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(err, f"netlink {what}: {os.strerror(err)}")
        self.what = what


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("HH", length, kind) + payload + b"\0" * (-length % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


class Netlink:
    """An rtnetlink socket of the current network namespace (where it was created: it stays
    bound to that namespace after the process moves on)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        """Send one request and wait for its acknowledgement (or the error it caused)."""
        self._seq += 1
        header = struct.pack("IHHII", 16 + len(body), kind, _NLM_F_REQUEST | _NLM_F_ACK | flags, self._seq, 0)
        self.sock.send(header + body)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, _flags, seq, _pid = struct.unpack_from("IHHII", data, offset)
                if mtype == _NLMSG_ERROR and seq == self._seq:
                    (code,) = struct.unpack_from("i", data, offset + 16)
                    if code:
                        raise NetlinkError(-code, what)
                    return
                offset += max(16, (length + 3) & ~3)

    # -- links ----------------------------------------------------------------------------------
    def add_bridge(self, name: str) -> None:
        info = _attr(_IFLA_INFO_KIND, b"bridge")
        self._request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL,
                      _ifinfo() + _attr(_IFLA_IFNAME, _name(name)) + _attr(_IFLA_LINKINFO, info),
                      f"bridge {name}")

    def add_veth(self, name: str, peer: str, peer_netns_fd: int) -> None:
        """A veth pair: ``name`` here, ``peer`` created directly in the namespace ``peer_netns_fd``."""
        peer_msg = _ifinfo() + _attr(_IFLA_IFNAME, _name(peer)) + _attr(_IFLA_NET_NS_FD,
                                                                           struct.pack("i", peer_netns_fd))
        info = _attr(_IFLA_INFO_KIND, b"veth") + _attr(_IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer_msg))
        self._request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL,
                      _ifinfo() + _attr(_IFLA_IFNAME, _name(name)) + _attr(_IFLA_LINKINFO, info),
                      f"veth {name} <-> {peer}")

    def set_link(self, name: str, *, up: bool = True, master: str | None = None) -> None:
        """Bring ``name`` up (and enslave it to the bridge ``master``)."""
        attrs = _attr(_IFLA_IFNAME, _name(name))  # index 0: the kernel finds the link by name
        if master is not None:
            attrs += _attr(_IFLA_MASTER, struct.pack("I", self.index(master)))
        self._request(_RTM_NEWLINK, 0, _ifinfo(0, _IFF_UP if up else 0, _IFF_UP) + attrs, f"link {name} up")

    def delete_link(self, name: str) -> None:
        self._request(_RTM_DELLINK, 0, _ifinfo() + _attr(_IFLA_IFNAME, _name(name)), f"delete link {name}")

    def index(self, name: str) -> int:
        """The interface index of ``name`` in this socket's namespace."""
        from ._sys import interface_index

        return interface_index(self.sock.fileno(), name)

    # -- addresses and routes ---------------------------------------------------------------------
    def add_address(self, name: str, address: str) -> None:
        """``address`` ("10.89.0.2/24") on the link ``name``."""
        iface = ipaddress.ip_interface(address)
        family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
        raw = iface.ip.packed
        body = struct.pack("BBBBI", family, iface.network.prefixlen, 0, _RT_SCOPE_UNIVERSE, self.index(name))
        self._request(_RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_EXCL,
                      body + _attr(_IFA_LOCAL, raw) + _attr(_IFA_ADDRESS, raw), f"address {address} on {name}")

    def add_default_route(self, gateway: str, name: str) -> None:
        gw = ipaddress.ip_address(gateway)
        family = socket.AF_INET if gw.version == 4 else socket.AF_INET6
        body = struct.pack("BBBBBBBBI", family, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE,
                           _RTN_UNICAST, 0)
        self._request(_RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_EXCL,
                      body + _attr(_RTA_GATEWAY, gw.packed) + _attr(_RTA_OIF, struct.pack("I", self.index(name))),
                      f"default route via {gateway}")
