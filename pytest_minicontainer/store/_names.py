"""Image names and digests as the store spells them.

Tags are kept in Docker's familiar form (``alpine:3.19``, ``localhost:5000/app:dev``):
``docker.io/library/`` and ``docker.io/`` prefixes are dropped and a missing tag means
``latest``, so ``alpine`` and ``docker.io/library/alpine:latest`` name the same tag.
"""

from __future__ import annotations

import re

__all__ = ["DIGEST_RE", "NAME_RE", "digest_hex", "is_digest", "normalise_tag", "split_tag"]

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)"
NAME_RE = re.compile(rf"^{_HOST}?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?$")


def is_digest(value: str) -> bool:
    return bool(DIGEST_RE.match(value))


def digest_hex(digest: str) -> str:
    """The hex part of a ``sha256:`` digest; ValueError for anything else."""
    if not DIGEST_RE.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest[7:]


def split_tag(name: str) -> tuple[str, str]:
    """``(repository, tag)``; the tag defaults to ``latest`` (a ``:port`` is not a tag)."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, "latest"


def normalise_tag(name: str) -> str:
    """``NAME:TAG`` in familiar form; ValueError when ``name`` is not an image name."""
    name = name.strip()
    if "@" in name:
        raise ValueError(f"{name!r} is a digest reference, not a tag")
    if not NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a valid image name (NAME[:TAG], lower case)")
    repo, tag = split_tag(name)
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            break
    return f"{repo}:{tag}"
