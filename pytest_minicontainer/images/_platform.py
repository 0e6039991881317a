"""Which manifest of an index fits this host (GOARCH names, as OCI uses them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._shapes import show, wrong_shape
from ..errors import ImageError

__all__ = ["check_descriptor", "host_platform", "is_attestation", "parse_platform", "platform_score", "platform_str"]

_ARCH = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "i386": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
}


def host_platform() -> tuple[str, str, str]:
    """``(os, architecture, variant)`` of this machine."""
    arch, variant = _ARCH.get(os.uname().machine, (os.uname().machine, ""))
    return "linux", arch, variant


def parse_platform(text: str) -> tuple[str, str, str]:
    """``"linux/arm64/v8"`` -> ``("linux", "arm64", "v8")``; ``"arm64"`` alone means linux."""
    parts = [p for p in text.strip().lower().split("/") if p]
    if len(parts) == 1:
        parts = ["linux", *parts]
    if not 2 <= len(parts) <= 3:
        raise ImageError(f"platform {text!r} is not OS/ARCH[/VARIANT] (e.g. linux/arm64)")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def check_descriptor(desc: Mapping[str, Any], what: str = "", where: str | None = None) -> None:
    """Raise :class:`ImageError` unless the fields read here (``platform``, ``annotations``) have the right shape.

    Descriptors come from index files anyone can write; a ``"platform": "linux"`` must be
    reported against its file (``what``/``where``, which the caller knows), not surface as an
    AttributeError from the scoring below.  The accessors call it too, for callers that did not.
    """
    what = what or f"manifest descriptor {show(desc.get('digest'))}"
    for key in ("platform", "annotations"):
        value = desc.get(key)
        if value is not None and not isinstance(value, dict):
            raise wrong_shape(what, where, key, "a JSON object", value)
    for key in ("os", "architecture", "variant"):
        value = (desc.get("platform") or {}).get(key)
        if value is not None and not isinstance(value, str):
            raise wrong_shape(what, where, f"platform.{key}", "a string", value)


def _field(desc: Mapping[str, Any], key: str) -> dict[str, Any]:
    check_descriptor(desc)
    value: dict[str, Any] = desc.get(key) or {}
    return value


def is_attestation(desc: Mapping[str, Any]) -> bool:
    ann = _field(desc, "annotations")
    plat = _field(desc, "platform")
    return ann.get("vnd.docker.reference.type") == "attestation-manifest" or (
        plat.get("os") == "unknown" and plat.get("architecture") == "unknown")


def platform_str(desc: Mapping[str, Any]) -> str:
    p = _field(desc, "platform")
    return "/".join(x for x in (p.get("os", "?"), p.get("architecture", "?"), p.get("variant", "")) if x)


def platform_score(desc: Mapping[str, Any], host: tuple[str, str, str] | None = None) -> int:
    """0 = does not run here; higher is better (exact variant beats a missing one)."""
    host_os, host_arch, host_variant = host or host_platform()
    if is_attestation(desc):
        return 0
    p = _field(desc, "platform")
    if not p:
        return 1  # no platform given: usable, but any exact match wins
    if p.get("os") != host_os or p.get("architecture") != host_arch:
        return 0
    variant = p.get("variant", "")
    if variant == host_variant:
        return 3
    return 2 if not variant or not host_variant else 0
