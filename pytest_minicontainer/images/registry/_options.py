"""Registry settings that come from the user's configuration rather than from a reference.

:class:`RegistryOptions` holds them; ``Engine(registry=)`` hands them to every pull, build
cache and push of the engine.  Where none are given (a plain ``Engine``, the CLI) they come from
the environment (:meth:`RegistryOptions.from_env`): ``MINICONTAINER_REGISTRY_MIRROR`` names a
Docker Hub mirror (``host[:port]``, an optional ``http(s)://`` prefix is ignored: the scheme
follows the insecure rule like any registry); ``MINICONTAINER_INSECURE_REGISTRIES`` lists
(comma or space separated) registries that may be reached over plain HTTP;
``MINICONTAINER_REGISTRY_TIMEOUT`` is how many seconds one request may wait for an answer.  The
plugin merges its ini keys (mirror, insecure registries, timeout) with those variables (a
variable that is set wins) and passes the result to its Engine; it writes no environment
variable, and xdist workers, reading the same ini file and inherited environment, agree.

A request that got no answer at all within the timeout is not sent again: a hung registry
would otherwise cost the timeout once per attempt (minutes), while the transient faults worth
a retry (a reset connection, 5xx, 429) show themselves quickly.  So the timeout bounds how long
a dead or hung registry can hold up a pull.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ...errors import ImageError

__all__ = ["INSECURE_ENV", "MIRROR_ENV", "TIMEOUT_ENV", "RegistryOptions"]

MIRROR_ENV = "MINICONTAINER_REGISTRY_MIRROR"
INSECURE_ENV = "MINICONTAINER_INSECURE_REGISTRIES"
TIMEOUT_ENV = "MINICONTAINER_REGISTRY_TIMEOUT"
DEFAULT_TIMEOUT = 30.0


def _host(value: str) -> str:
    for prefix in ("https://", "http://"):
        value = value.removeprefix(prefix)
    return value.strip().rstrip("/")


@dataclass(frozen=True)
class RegistryOptions:
    """How registries are reached: a Docker Hub ``mirror`` (``host[:port]``), the ``insecure``
    registries (plain HTTP besides loopback ones), the per-request ``timeout`` and the retry pacing.

    Give one to ``Engine(registry=RegistryOptions(...))``; ``from_env()`` reads the environment.
    """

    mirror: str | None = None
    insecure: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT  # seconds without a byte before a request counts as timed out
    retries: int = 4  # extra attempts after a reset connection, a 5xx or a 429 (not after a timeout)
    backoff: float = 0.5  # first wait; doubles each attempt, capped by max_wait
    max_wait: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RegistryOptions:
        env = os.environ if environ is None else environ
        mirror = _host(env.get(MIRROR_ENV, "")) or None
        insecure = tuple(_host(x) for x in env.get(INSECURE_ENV, "").replace(",", " ").split() if x)
        return cls(mirror=mirror, insecure=insecure, timeout=_timeout(env.get(TIMEOUT_ENV, "")))


def _timeout(value: str) -> float:
    """Seconds from ``MINICONTAINER_REGISTRY_TIMEOUT``; a typo must not silently mean 30 s or forever."""
    if not value.strip():
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ImageError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds greater than 0; set it to how long"
                         f" one registry request may wait for an answer (e.g. {TIMEOUT_ENV}=60), or unset it"
                         f" for the default of {DEFAULT_TIMEOUT:g}")
    return seconds
