"""What an image is, as the engine and the runtime see it.

An :class:`Image` is a value: a digest, the runtime part of its OCI config, and the stack of
unpacked layer directories an overlay mount puts under each container.  Where it came from
(an OCI layout, a registry, a rootfs directory, the host) is the ``images`` package's business;
how it is mounted is the runtime's.  Keeping this module free of both lets each side change
without the other.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["HealthCheck", "Image", "ImageConfig"]

_NS = 1_000_000_000  # OCI/Docker durations are nanoseconds


@dataclass(frozen=True)
class HealthCheck:
    """Docker's HEALTHCHECK: ``test`` as in the config (``["CMD", ...]`` or ``["CMD-SHELL", s]``)."""

    test: tuple[str, ...]
    interval: float = 30.0
    timeout: float = 30.0
    start_period: float = 0.0
    retries: int = 3

    def argv(self) -> list[str] | None:
        """The command to run, or None when the check is disabled (``NONE``)."""
        if not self.test or self.test[0] == "NONE":
            return None
        if self.test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", " ".join(self.test[1:])]
        if self.test[0] == "CMD":
            return list(self.test[1:])
        return list(self.test)


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config that decide how a container runs."""

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    healthcheck: HealthCheck | None = None
    stop_signal: str | None = None
    shell: tuple[str, ...] | None = None

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def labels_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def default_command(self) -> list[str] | None:
        """Entrypoint + Cmd, as Docker combines them; None when the image defines neither."""
        argv = [*(self.entrypoint or ()), *(self.cmd or ())]
        return argv or None

    def with_changes(self, **changes: Any) -> ImageConfig:
        return replace(self, **changes)

    @classmethod
    def from_oci(cls, config: Mapping[str, Any] | None) -> ImageConfig:
        """Read the ``config`` object of an OCI/Docker image configuration."""
        c = dict(config or {})
        env: list[tuple[str, str]] = []
        for item in c.get("Env") or ():
            key, _, value = str(item).partition("=")
            env.append((key, value))
        hc = c.get("Healthcheck")
        health = None
        if isinstance(hc, Mapping) and hc.get("Test"):
            health = HealthCheck(
                test=tuple(str(x) for x in hc["Test"]),
                interval=(hc.get("Interval") or 30 * _NS) / _NS,
                timeout=(hc.get("Timeout") or 30 * _NS) / _NS,
                start_period=(hc.get("StartPeriod") or 0) / _NS,
                retries=int(hc.get("Retries") or 3),
            )

        def argv(value: Any) -> tuple[str, ...] | None:
            if value is None:
                return None
            if isinstance(value, str):
                return tuple(shlex.split(value))
            return tuple(str(x) for x in value)

        return cls(
            entrypoint=argv(c.get("Entrypoint")),
            cmd=argv(c.get("Cmd")),
            env=tuple(env),
            workdir=str(c.get("WorkingDir") or ""),
            user=str(c.get("User") or ""),
            exposed_ports=tuple(sorted((c.get("ExposedPorts") or {}).keys())),
            labels=tuple(sorted((c.get("Labels") or {}).items())),
            healthcheck=health,
            stop_signal=c.get("StopSignal") or None,
            shell=argv(c.get("Shell")),
        )

    def to_oci(self) -> dict[str, Any]:
        """The inverse of :meth:`from_oci` (for commits and builds)."""
        out: dict[str, Any] = {}
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.env:
            out["Env"] = [f"{k}={v}" for k, v in self.env]
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.healthcheck is not None:
            h = self.healthcheck
            out["Healthcheck"] = {
                "Test": list(h.test),
                "Interval": int(h.interval * _NS),
                "Timeout": int(h.timeout * _NS),
                "StartPeriod": int(h.start_period * _NS),
                "Retries": h.retries,
            }
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.shell is not None:
            out["Shell"] = list(self.shell)
        return out


@dataclass(frozen=True)
class Image:
    """A runnable image.

    ``layer_dirs`` are unpacked layer directories, bottom first, in overlayfs's format
    (whiteouts are 0:0 character devices, opaque directories carry the
    ``user.overlay.opaque`` xattr).  ``host_dirs`` are host directories that each container
    sees at the same path through an overlay of their own (the ``host`` image).
    """

    digest: str
    config: ImageConfig = field(default_factory=ImageConfig)
    layers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    reference: str = ""
    layer_dirs: tuple[str, ...] = ()
    host_dirs: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.digest.split(":", 1)[-1][:12]

    def __str__(self) -> str:
        return self.reference or (self.tags[0] if self.tags else self.short_id)

    def derive(self, *, digest: str, layer: str, layer_dir: str, config: ImageConfig | None = None,
               tags: Sequence[str] = (), reference: str = "") -> Image:
        """A new image with one more layer on top (commits and build steps)."""
        return Image(
            digest=digest,
            config=config or self.config,
            layers=(*self.layers, layer),
            tags=tuple(tags),
            reference=reference,
            layer_dirs=(*self.layer_dirs, layer_dir),
            host_dirs=self.host_dirs,
        )
