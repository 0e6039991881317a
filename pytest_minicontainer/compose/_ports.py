"""``ports:`` in its short (``[[IP:]HOST:]CONTAINER[/PROTOCOL]``, ranges) and long syntax.

Published ports are forwarded from 127.0.0.1 at a port the kernel picks, as every published
port of this library is: two stacks (parallel tests, xdist workers) cannot share a host
port, and a test finds the address with ``running[service].ports[target]``.  So a host port
in the file is kept for reports only, a host IP that is loopback or "all interfaces" means
127.0.0.1 silently, and any other host IP gets a warning (nothing listens there).  Only TCP
can be forwarded: UDP and SCTP ports are refused.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ._model import Port
from ._values import Doc, show
from ._yaml import KeyPath

__all__ = ["read_ports"]

_RANGE = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")
_LOOPBACK_OR_ANY = re.compile(r"^(?:127(?:\.[0-9]+){3}|::1|localhost|0\.0\.0\.0|::|)$")
_PORT_KEYS = ("target", "published", "host_ip", "protocol", "app_protocol", "mode", "name")


def _range(doc: Doc, path: KeyPath, text: str, what: str) -> tuple[int, int]:
    m = _RANGE.match(text.strip())
    if m is None:
        doc.fail(path, f"{what} {text!r} is not a port or a range of ports (8080, 8000-8010)")
    first = int(m.group(1))
    last = int(m.group(2) or first)
    if not 0 < first <= last < 65536:
        doc.fail(path, f"{what} {text!r} must be between 1 and 65535 (a range low-high)")
    return first, last


def _protocol(doc: Doc, path: KeyPath, protocol: str) -> None:
    if protocol.lower() != "tcp":
        doc.fail(path, f"protocol {protocol!r} cannot be published here: only TCP ports are forwarded "
                       "(remove the port, or reach the service from another service on its network)")


def _host_ip(doc: Doc, path: KeyPath, ip: str | None) -> str | None:
    if not ip:
        return None
    if not _LOOPBACK_OR_ANY.match(ip):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            doc.fail(path, f"host IP {ip!r} is not an IP address")
        doc.warn(path, f"host IP {ip} is not used: ports are published on 127.0.0.1 only")
    return ip


def _expand(doc: Doc, path: KeyPath, target: tuple[int, int], published: tuple[int, int] | None,
            host_ip: str | None, name: str | None = None) -> list[Port]:
    count = target[1] - target[0] + 1
    if published is None:
        return [Port(t, None, host_ip, name) for t in range(target[0], target[1] + 1)]
    width = published[1] - published[0] + 1
    if count == 1:  # one container port: the host port is the given one, or any in the range
        return [Port(target[0], published[0] if width == 1 else None, host_ip, name)]
    if width != count:
        doc.fail(path, f"the host range has {width} ports and the container range {count}: they must match")
    return [Port(t, published[0] + i, host_ip, name) for i, t in enumerate(range(target[0], target[1] + 1))]


def _short(doc: Doc, path: KeyPath, text: str) -> list[Port]:
    spec, slash, protocol = text.strip().partition("/")
    if slash:
        _protocol(doc, path, protocol)
    ip: str | None = None
    if spec.startswith("["):  # [::1]:8080:80
        close = spec.find("]")
        rest = spec[close + 2:].split(":") if close > 0 and spec[close + 1:close + 2] == ":" else []
        if len(rest) != 2:
            doc.fail(path, f"{text!r}: a host address in brackets is written [IP]:HOST:CONTAINER")
        ip, (host, container) = spec[1:close], rest
    else:
        parts = spec.split(":")
        if len(parts) > 3:  # an IPv6 address without brackets: ::1:6000:6000
            parts = [":".join(parts[:-2]), parts[-2], parts[-1]]
        if len(parts) == 1:
            return _expand(doc, path, _range(doc, path, parts[0], "container port"), None, None)
        if len(parts) == 2:
            host, container = parts
        else:
            ip, host, container = parts
    published = _range(doc, path, host, "host port") if host else None
    target = _range(doc, path, container, "container port")
    return _expand(doc, path, target, published, _host_ip(doc, path, ip))


def _long(doc: Doc, path: KeyPath, entry: dict[str, Any]) -> list[Port]:
    doc.keys(path, entry, _PORT_KEYS)
    if "target" not in entry:
        doc.fail(path, "a port in the long syntax needs target: (the container port)")
    target_text = doc.string((*path, "target"), entry["target"], numbers=True)
    target = _range(doc, (*path, "target"), target_text, "container port")
    if target[0] != target[1]:
        doc.fail((*path, "target"), "target is one port in the long syntax (list each port)")
    published = None
    if entry.get("published") not in (None, ""):
        text = doc.string((*path, "published"), entry["published"], numbers=True)
        published = _range(doc, (*path, "published"), text, "published port")
    if entry.get("protocol") is not None:
        _protocol(doc, (*path, "protocol"), doc.string((*path, "protocol"), entry["protocol"]))
    ip = _host_ip(doc, (*path, "host_ip"), doc.optional_string((*path, "host_ip"), entry.get("host_ip")))
    name = doc.optional_string((*path, "name"), entry.get("name"))
    return _expand(doc, path, target, published, ip, name)


def read_ports(doc: Doc, path: KeyPath, value: Any) -> tuple[Port, ...]:
    """Every container port ``value`` publishes, one Port each, in file order."""
    if value is None:
        return ()
    if not isinstance(value, list):
        doc.fail(path, f"must be a list of ports, not {show(value)}")
    ports: dict[int, Port] = {}
    for i, entry in enumerate(value):
        where = (*path, i)
        if isinstance(entry, int) and not isinstance(entry, bool):
            found = _short(doc, where, str(entry))
        elif isinstance(entry, str):
            found = _short(doc, where, entry)
        elif isinstance(entry, dict):
            found = _long(doc, where, entry)
        else:
            doc.fail(where, f"must be a port string, a number or a mapping, not {show(entry)}")
        for port in found:  # a port listed twice is published once: it has one address here anyway
            ports.setdefault(port.target, port)
    return tuple(ports.values())
