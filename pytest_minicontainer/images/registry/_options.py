"""Registry settings that come from the user's environment rather than from a reference.

``MINICONTAINER_REGISTRY_MIRROR`` names a Docker Hub mirror (``host[:port]``, an optional
``http(s)://`` prefix is ignored: the scheme follows the insecure rule like any registry);
``MINICONTAINER_INSECURE_REGISTRIES`` lists (comma or space separated) registries that may be
reached over plain HTTP.  The plugin maps its ini keys onto the same variables, so xdist
workers, the CLI and a plain ``Engine`` all see one setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["INSECURE_ENV", "MIRROR_ENV", "RegistryOptions"]

MIRROR_ENV = "MINICONTAINER_REGISTRY_MIRROR"
INSECURE_ENV = "MINICONTAINER_INSECURE_REGISTRIES"


def _host(value: str) -> str:
    for prefix in ("https://", "http://"):
        value = value.removeprefix(prefix)
    return value.strip().rstrip("/")


@dataclass(frozen=True)
class RegistryOptions:
    mirror: str | None = None
    insecure: tuple[str, ...] = ()
    timeout: float = 30.0  # seconds without a byte before a request counts as timed out
    retries: int = 4  # extra attempts after a timeout, a 5xx or a 429
    backoff: float = 0.5  # first wait; doubles each attempt, capped by max_wait
    max_wait: float = 30.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> RegistryOptions:
        env = os.environ if environ is None else environ
        mirror = _host(env.get(MIRROR_ENV, "")) or None
        insecure = tuple(_host(x) for x in env.get(INSECURE_ENV, "").replace(",", " ").split() if x)
        return cls(mirror=mirror, insecure=insecure)
