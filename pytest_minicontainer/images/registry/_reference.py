"""Registry references with Docker's normalisation rules.

``[docker://]NAME[:TAG][@DIGEST]``: the first path component is a registry when it holds a
``.`` or a ``:`` or is ``localhost``; otherwise the image is on Docker Hub, whose API lives at
``registry-1.docker.io`` and whose one-component names live under ``library/``.  The tag
defaults to ``latest`` unless a digest pins the image.  Only parsing lives here (no I/O), so
the rules are unit-tested alone.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ...errors import ImageError
from ...store import is_digest, normalise_tag

__all__ = ["DOCKER_HUB", "DOCKER_HUB_ENDPOINT", "RegistryRef", "is_loopback", "parse_registry_ref"]

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")


@dataclass(frozen=True)
class RegistryRef:
    """A normalised reference: ``registry`` as written (``docker.io`` for Docker Hub)."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def endpoint(self) -> str:
        """``host[:port]`` of the registry's API."""
        return DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What ``/v2/<name>/manifests/<reference>`` wants: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def store_tag(self) -> str | None:
        """The tag the store records (familiar form), or None for a digest-pinned pull."""
        if self.digest or not self.tag:
            return None
        return normalise_tag(f"{self.registry}/{self.repository}:{self.tag}")

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag and not self.digest:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.x.y.z`` and ``::1`` (with or without a port)."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_registry_ref(text: str) -> RegistryRef:
    """Parse and normalise; :class:`ImageError` says what is wrong with a bad reference."""
    raw = text.strip()
    rest = raw.removeprefix("docker://")
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not is_digest(digest):
            raise ImageError(f"image reference {text!r}: {digest!r} is not a sha256:<64 hex> digest")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, path = first, remainder
        if not _HOST.match(registry):
            raise ImageError(f"image reference {text!r}: {registry!r} is not a valid registry host")
    else:
        registry, path = DOCKER_HUB, rest
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
    tag = None
    colon = path.rfind(":")
    if colon > path.rfind("/"):
        path, tag = path[:colon], path[colon + 1:]
        if not _TAG.match(tag):
            raise ImageError(f"image reference {text!r}: {tag!r} is not a valid tag")
    if not path or not all(_COMPONENT.match(c) for c in path.split("/")):
        raise ImageError(f"image reference {text!r}: {path!r} is not a valid repository name"
                         " (lower-case components separated by '/')")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if tag is None and digest is None:
        tag = "latest"
    return RegistryRef(registry, path, tag, digest)
