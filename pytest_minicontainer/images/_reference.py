"""Parse what a user writes as an image into (transport, path, sub-reference).

Transport syntax follows skopeo: ``oci:PATH[:REF]``, ``oci-archive:FILE[:REF]``,
``docker-archive:FILE[:REPO:TAG]``, ``docker://NAME[:TAG][@DIGEST]`` (a registry); plus
``rootfs:PATH`` and a plain ``NAME[:TAG][@DIGEST]`` or digest, found in the store or (by the
pull policy) pulled from its registry.  The path ends at the first ``:`` (as in skopeo), so a path
containing ``:`` cannot be used with a REF.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ImageError
from ..store import NAME_RE, is_digest

__all__ = ["ACCEPTED_FORMS", "Reference", "parse_reference"]

ACCEPTED_FORMS = (
    "accepted image references: oci:PATH[:REF], oci-archive:FILE[:REF],"
    " docker-archive:FILE[:REPO:TAG], rootfs:/DIR, rootfs:/FILE.tar[.gz|.zst],"
    " [docker://][REGISTRY/]NAME[:TAG][@sha256:DIGEST] from the store or a registry,"
    " sha256:DIGEST of an image in the store, or host"
)
_TRANSPORTS = ("oci", "oci-archive", "docker-archive", "rootfs")


@dataclass(frozen=True)
class Reference:
    transport: str  # oci, oci-archive, docker-archive, rootfs, store, docker (a registry)
    path: str
    ref: str | None
    text: str


def parse_reference(text: str) -> Reference:
    text = text.strip()
    if text.startswith("docker://"):
        return Reference("docker", text[len("docker://"):], None, text)
    transport, sep, rest = text.partition(":")
    if sep and transport in _TRANSPORTS:
        if not rest:
            raise ImageError(f"image reference {text!r} has no path; {ACCEPTED_FORMS}")
        if transport == "rootfs":
            return Reference("rootfs", rest, None, text)
        path, sep2, sub = rest.partition(":")
        return Reference(transport, path, sub if sep2 and sub else None, text)
    name = text.split("@", 1)[0] if "@" in text else text
    if is_digest(text) or (name and NAME_RE.match(name) and "://" not in text):
        return Reference("store", text, None, text)
    if "://" in text or (sep and "/" not in transport and transport.isalpha() and not rest[:1].isdigit()):
        raise ImageError(f"image reference {text!r}: unknown transport {transport!r}; {ACCEPTED_FORMS}")
    raise ImageError(f"image reference {text!r} is not valid; {ACCEPTED_FORMS}")
