"""The ``container`` marker: its signature, its validation, and how markers combine.

Kept apart from the plugin so the rules can be unit-tested without running pytest, and so
:func:`check_options` can serve both the marker and ``container_factory(**options)``: one set
of rules, one set of error messages.

Markers combine key by key and the closest wins: a function's marker overrides its class's,
which overrides its module's, but a key the closer marker does not name is inherited.  That
lets a module pick the image once (``pytestmark = pytest.mark.container(image=...)``) while a
test adds only ``env``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .image import Image
from .options import NETWORKS, Mount, RunOptions, command_argv, parse_mount

__all__ = [
    "COMPOSE_SIGNATURE",
    "MARKER_KEYS",
    "MARKER_SIGNATURE",
    "ComposeSpec",
    "ContainerSpec",
    "MarkerError",
    "MountSpec",
    "check_options",
    "compose_spec",
    "iter_problems",
    "parse_marker",
    "spec_from_markers",
]

MARKER_SIGNATURE = (
    'container(image=None, *, command=None, env=None, workdir=None, user=None, mounts=None, '
    'network="none", aliases=None, ready=None, timeout=None, ports=None)'
)
MARKER_KEYS = ("image", "command", "env", "workdir", "user", "mounts", "network", "aliases", "ready", "timeout",
               "ports")
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")


class MarkerError(ValueError):
    """A ``container`` marker or factory call has an unknown key or a value of the wrong type."""


class _Marker(Protocol):
    @property
    def args(self) -> tuple[Any, ...]: ...

    @property
    def kwargs(self) -> Mapping[str, Any]: ...


#: A mount written as ``"SRC:DST[:ro|rw]"``, parsed at collection (so a typo fails there):
#: the engine's own :class:`~pytest_minicontainer.options.Mount` (a leaf module, cheap to load).
MountSpec = Mount


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the ``container`` fixture needs to start one container."""

    image: str | Image | None = None
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    mounts: tuple[Any, ...] = ()
    network: Any = "none"  # a mode, a network's name (the test's own) or a Network
    aliases: tuple[str, ...] = ()
    ready: Any = None
    timeout: float | None = None
    ports: tuple[int, ...] = ()
    hostname: str | None = None

    def run_options(self) -> RunOptions:
        """What ``Engine.start_container`` takes (hooks may change it before the start)."""
        return RunOptions(
            image=self.image,
            command=None if self.command is None else list(self.command),
            env=dict(self.env),
            workdir=self.workdir,
            user=self.user,
            mounts=list(self.mounts),
            network=self.network,
            aliases=list(self.aliases),
            hostname=self.hostname,
            ports=list(self.ports),
        )


def _is_str_seq(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value)


def _check_command(value: object) -> tuple[str, ...] | None:
    # A string is a shell command line, as Docker's CMD string form; () starts no main process.
    if value is None:
        return None
    if isinstance(value, str) or _is_str_seq(value):
        return tuple(command_argv(value))  # type: ignore[arg-type]
    raise MarkerError(f"command must be a string, a list of strings or None, not {value!r}")


def _check_env(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MarkerError(f"env must be a dict of str to str, not {value!r}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or "=" in k:
            raise MarkerError(f"env keys must be non-empty strings without '=', not {k!r}")
        if not isinstance(v, str):
            raise MarkerError(f"env[{k!r}] must be a string, not {v!r}")
        out[k] = v
    return out


def _check_mount(value: object) -> Any:
    if isinstance(value, str):
        try:
            return parse_mount(value)
        except ValueError:
            raise MarkerError(f"a mount string must be 'SRC:DST' or 'SRC:DST:ro', not {value!r}") from None
    if isinstance(value, Mount) or (hasattr(value, "source") and hasattr(value, "target")):
        return value
    raise MarkerError(f"mounts must hold Mount objects or 'SRC:DST[:ro]' strings, not {value!r}")


def _check_timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MarkerError(f"timeout must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise MarkerError(f"timeout must be a positive number of seconds, not {value!r}")
    return float(value)


def _check_ready(value: object) -> Any:
    if value is None or callable(getattr(value, "wait", None)) or callable(value):
        return value
    raise MarkerError(
        f"ready must be a callable taking the container or a wait strategy with a "
        f".wait(container, timeout) method, not {value!r}"
    )


def _check_optional_str(key: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise MarkerError(f"{key} must be a string or None, not {value!r}")


def _check_one(key: str, value: object) -> Any:
    if key == "image":
        if value is None or isinstance(value, (str, Image)):
            return value
        raise MarkerError(f"image must be a reference string or an Image, not {value!r}")
    if key == "command":
        return _check_command(value)
    if key == "env":
        return _check_env(value)
    if key in ("workdir", "hostname"):
        return _check_optional_str(key, value)
    if key == "user":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # a uid; the engine takes "uid[:gid]" or a name
        return _check_optional_str(key, value)
    if key == "mounts":
        if value is None:
            return ()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise MarkerError(f"mounts must be a list, not {value!r}")
        return tuple(_check_mount(m) for m in value)
    if key == "network":
        if value in NETWORKS or (isinstance(value, str) and _NAME.match(value)) or hasattr(value, "subnet"):
            return value  # hasattr: a Network object (its module is heavy; factories pass them)
        raise MarkerError(f"network must be one of {', '.join(map(repr, NETWORKS))}, a network name (letters, "
                          f"digits, '-', '_', '.') or a Network, not {value!r}")
    if key == "aliases":
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) and _NAME.match(a) for a in value):
            raise MarkerError(f"aliases must be a list of host names, not {value!r}")
        return tuple(value)
    if key == "ready":
        return _check_ready(value)
    if key == "timeout":
        return _check_timeout(value)
    if key == "ports":
        if value is None:
            return ()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not all(
                isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in value):
            raise MarkerError(f"ports must be a list of port numbers (1-65535), not {value!r}")
        return tuple(value)
    raise AssertionError(key)  # pragma: no cover - callers filter keys first


def check_options(options: Mapping[str, Any], allowed: Sequence[str] = MARKER_KEYS) -> dict[str, Any]:
    """Validate and normalise keyword options; unknown keys and wrong types raise MarkerError."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise MarkerError(
            f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} (allowed: {', '.join(allowed)})"
        )
    return {key: _check_one(key, value) for key, value in options.items()}


def parse_marker(marker: _Marker) -> dict[str, Any]:
    """The keys one ``container`` marker sets explicitly, validated."""
    if len(marker.args) > 1:
        raise MarkerError(
            f"takes at most one positional argument (the image), got {len(marker.args)}: {marker.args!r}"
        )
    kwargs = dict(marker.kwargs)
    if marker.args:
        if "image" in kwargs:
            raise MarkerError("image given both positionally and as a keyword")
        kwargs["image"] = marker.args[0]
    return check_options(kwargs)


def spec_from_markers(markers: Iterable[_Marker]) -> ContainerSpec:
    """Combine markers given closest first (as ``Node.iter_markers`` yields them)."""
    merged: dict[str, Any] = {}
    for marker in markers:
        for key, value in parse_marker(marker).items():
            merged.setdefault(key, value)
    return ContainerSpec(**merged)


def iter_problems(markers: Iterable[_Marker]) -> Iterator[str]:
    """Each marker's validation error, for reporting all of them at once."""
    for marker in markers:
        try:
            parse_marker(marker)
        except MarkerError as exc:
            yield str(exc)


COMPOSE_SIGNATURE = "compose(path, *, services=None, env=None, profiles=())"


@dataclass(frozen=True)
class ComposeSpec:
    """What a test's ``compose`` marker asks for: the file (absolute) and its options."""

    path: str
    services: tuple[str, ...] | None
    env: tuple[tuple[str, str], ...]  # sorted items: the spec is hashable and compares by value
    profiles: tuple[str, ...]


def compose_spec(marker: _Marker, base: Path) -> ComposeSpec:
    """The ``compose`` marker's path (a relative one from ``base``, the ini file's directory)
    and options, checked: a mistake is a TypeError that fails the test's setup."""
    args, kwargs = list(marker.args), dict(marker.kwargs)
    if len(args) > 1 or (args and "path" in kwargs) or not (args or "path" in kwargs):
        raise TypeError(f"@pytest.mark.{COMPOSE_SIGNATURE}: give the compose file (or its directory) once")
    path = args[0] if args else kwargs.pop("path")
    unknown = sorted(set(kwargs) - {"path", "services", "env", "profiles"})
    if unknown:
        raise TypeError(f"@pytest.mark.{COMPOSE_SIGNATURE}: unexpected keyword argument(s) {', '.join(unknown)}")
    services, env, profiles = kwargs.get("services"), kwargs.get("env"), kwargs.get("profiles") or ()
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"@pytest.mark.compose: the path must be a string or a path, not {path!r}")
    if isinstance(services, str):
        services = [services]
    where = os.fspath(path)
    return ComposeSpec(where if os.path.isabs(where) else str(base / where),
                       None if services is None else tuple(services),
                       tuple(sorted((env or {}).items())), tuple(profiles))
