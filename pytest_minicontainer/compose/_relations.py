"""How services relate: ``depends_on``, ``networks`` (with ``network_mode``) and ``profiles``.

Networks follow the spec's implicit ``default``: a service that names no network and no
``network_mode`` is on ``default``, where every member answers to its service name.  The
names a service answers to on a network are its service name, its ``container_name`` and
the network's ``aliases``, in that order.  Fixed addresses cannot be honoured (each stack
gets its own subnet), so ``ipv4_address`` and the like are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._model import CONDITIONS, Dependency, NetworkAttachment
from ._values import Doc
from ._yaml import KeyPath

__all__ = ["read_depends_on", "read_networks", "read_profiles"]

_PROFILE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_ATTACHMENT_KEYS = ("aliases", "interface_name", "ipv4_address", "ipv6_address", "link_local_ips", "mac_address",
                    "driver_opts", "priority", "gw_priority")
_ATTACHMENT_REFUSED = {"ipv4_address": "fixed addresses", "ipv6_address": "fixed addresses",
                       "link_local_ips": "link-local addresses"}
_ATTACHMENT_WARNED = {"interface_name": "the interface name", "mac_address": "the MAC address",
                      "driver_opts": "driver options"}


def read_depends_on(doc: Doc, path: KeyPath, value: Any) -> tuple[Dependency, ...]:
    """Short (a list of names) and long syntax (name: {condition, required, restart})."""
    if value is None:
        return ()
    if isinstance(value, list):
        names = doc.strings(path, value)
        return tuple(Dependency(name) for name in dict.fromkeys(names))
    out = []
    for name, options in doc.mapping(path, value, "a list of services or a mapping").items():
        where = (*path, name)
        spec = doc.mapping(where, options)
        doc.keys(where, spec, ("condition", "required", "restart"))
        condition = doc.string((*where, "condition"), spec.get("condition", "service_started"))
        if condition not in CONDITIONS:
            doc.fail((*where, "condition"), f"condition {condition!r} is not one of {', '.join(CONDITIONS)}")
        required = doc.boolean((*where, "required"), spec["required"]) if "required" in spec else True
        restart = doc.boolean((*where, "restart"), spec["restart"]) if "restart" in spec else False
        out.append(Dependency(name, condition, required, restart))
    return tuple(out)


def read_networks(doc: Doc, path: KeyPath, service: Mapping[str, Any], name: str, container_name: str | None,
                  declared: Mapping[str, object]) -> tuple[str | None, tuple[NetworkAttachment, ...]]:
    """``(network_mode, attachments)`` of the service at ``path``."""
    own_names = tuple(dict.fromkeys(n for n in (name, container_name) if n))
    mode = doc.optional_string((*path, "network_mode"), service.get("network_mode"))
    if mode is not None:
        if service.get("networks") is not None:
            doc.fail(path, "network_mode and networks exclude each other: keep one")
        if mode not in ("none", "host"):
            doc.fail((*path, "network_mode"), f"network_mode {mode!r} is not supported (none, host): containers "
                                              "cannot share another's network namespace here; use networks:")
        return mode, ()
    value = service.get("networks")
    where = (*path, "networks")
    entries: dict[str, Any] = dict.fromkeys(doc.strings(where, value)) if isinstance(value, list) else \
        doc.mapping(where, value, "a list of networks or a mapping")
    if not entries:  # absent or empty: the implicit default network, as the spec says
        return None, (NetworkAttachment("default", own_names),)
    out = []
    for network, options in entries.items():
        at = (*where, network)
        if network not in declared and network != "default":
            doc.fail(at, f"network {network!r} is not declared in the top-level networks:")
        spec = doc.mapping(at, options)
        doc.keys(at, spec, _ATTACHMENT_KEYS)
        for key, what in _ATTACHMENT_REFUSED.items():
            if key in spec:
                doc.fail((*at, key), f"{what} cannot be honoured: each stack gets its own subnet; reach the service "
                                     "by name")
        for key, what in _ATTACHMENT_WARNED.items():
            if key in spec:
                doc.warn((*at, key), f"ignored: {what} is chosen by the Engine")
        aliases = doc.strings((*at, "aliases"), spec.get("aliases"))
        out.append(NetworkAttachment(network, tuple(dict.fromkeys((*own_names, *aliases)))))
    return None, tuple(out)


def read_profiles(doc: Doc, path: KeyPath, value: Any) -> tuple[str, ...]:
    profiles = doc.strings(path, value)
    for i, profile in enumerate(profiles):
        if not _PROFILE.match(profile):
            doc.fail((*path, i), f"profile {profile!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    return profiles
