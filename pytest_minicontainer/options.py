"""What a container starts with, as one typed value: :class:`RunOptions` and :class:`Mount`.

The same options travel from the ``container`` marker, ``container_factory(**options)``, the
``pytest_minicontainer_container_options`` hook and ``Engine.run``'s keywords to the Engine.
They are one dataclass here, so a new option (networks and compose keep adding some) is added
once, and mypy sees every use.  This module is a leaf: it imports nothing of the package at
run time, so the marker's checks (at collection) can use it without loading the engine.

Mount strings (``"SRC:DST[:ro|rw]"``) and commands (a shell string or an argv) are read here
once too, by :func:`parse_mount` and :func:`command_argv`, for the marker, the engine and the
command line alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .image import Image
    from .networks import Network

__all__ = ["NETWORKS", "Mount", "RunOptions", "as_mount", "command_argv", "parse_mount"]

#: The runtime's own network modes; any other name is an ``engine.network()`` of that name.
NETWORKS = ("none", "host", "slirp")

#: The form of a mount string, for messages.
MOUNT_FORM = "SRC:DST[:ro|rw]"


@dataclass(frozen=True)
class Mount:
    """A host path made visible in the container (``readonly`` by choice)."""

    source: str | os.PathLike[str]
    target: str
    readonly: bool = False


def parse_mount(text: str) -> Mount:
    """``"SRC:DST[:ro|rw]"`` as a Mount; ValueError (saying the form) for anything else.

    The callers (marker, engine, ``minicontainer run -v``) add their own context to the message.
    """
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1] or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ValueError(f"mount {text!r} is not {MOUNT_FORM}")
    return Mount(parts[0], parts[1], readonly=len(parts) == 3 and parts[2] == "ro")


def as_mount(value: Mount | str | Sequence[Any]) -> Mount:
    """A Mount from what callers may pass: a Mount, a mount string or a (source, target[, readonly]) tuple."""
    if isinstance(value, Mount):
        return value
    if isinstance(value, str):
        return parse_mount(value)
    return Mount(*value)


def command_argv(command: str | Sequence[str]) -> list[str]:
    """A command as an argv: a string is a shell command line (``/bin/sh -c``, as Docker's
    string form of CMD), a sequence is the argv itself (possibly empty: callers decide what
    an empty one means)."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    return [str(a) for a in command]


@dataclass
class RunOptions:
    """Everything a container starts with (the keywords of ``Engine.run`` and the image).

    Mutable on purpose: the ``pytest_minicontainer_container_options`` hook changes it in place
    before the start.  Hooks written when it was a dict keep working: ``options["env"]`` and
    ``options["env"] = {...}`` read and set the fields of the same names (``keys()``, ``get``,
    ``update``, ``in`` too); an unknown key is a KeyError, not a silently ignored option.
    """

    image: Image | str | None = None
    command: str | Sequence[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    mounts: list[Any] = field(default_factory=list)  # Mount, "SRC:DST[:ro]" or (source, target[, readonly])
    network: str | Network = "none"
    hostname: str | None = None
    ports: list[int] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)

    def copy(self) -> RunOptions:
        """A copy whose lists and env a hook may change without touching this one."""
        return replace(self, env=dict(self.env), mounts=list(self.mounts), ports=list(self.ports),
                       aliases=list(self.aliases))

    def keywords(self) -> dict[str, Any]:
        """The keyword arguments of ``Engine.run`` (every field but ``image``), copied."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "image"}
        out["env"], out["mounts"] = dict(self.env), list(self.mounts)
        out["ports"], out["aliases"] = list(self.ports), list(self.aliases)
        return out

    # -- dict-style access (hooks written against the dict these options were) -----------------
    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.keys():
            raise KeyError(f"{key!r} is not a run option (options: {', '.join(self.keys())})")
        setattr(self, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def update(self, other: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        for key, value in {**dict(other or {}), **more}.items():
            self[key] = value
