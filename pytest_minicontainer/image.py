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

from ._shapes import wrong_shape

__all__ = ["DEFAULT_PATH", "HealthCheck", "Image", "ImageConfig"]

_NS = 1_000_000_000  # OCI/Docker durations are nanoseconds
# PATH where an image sets none: Docker's (and BuildKit's ``system.DefaultPathEnv``) for Linux
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
    volumes: tuple[str, ...] = ()  # VOLUME paths: directories whose data stays in the container's layer
    onbuild: tuple[str, ...] = ()  # ONBUILD triggers: instructions a build FROM this image runs first

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
    def from_oci(cls, config: Mapping[str, Any] | None, *, what: str = "image config",
                 where: str | None = None) -> ImageConfig:
        """Read the ``config`` object of an OCI/Docker image configuration.

        Image configs come from files anyone can write, so each field's JSON shape is checked
        (as Docker's own types have it: ``Env`` an array of strings, ``Labels`` an object of
        strings, durations in nanoseconds...) and a wrong one is an :class:`ImageError` naming
        the field; ``what``/``where`` name the config and its file for the message.
        """
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise wrong_shape(what, where, "config", "a JSON object", config)
        c = _Fields(config, what, where, "config.")
        env: list[tuple[str, str]] = []
        for item in c.strings("Env") or ():
            key, _, value = item.partition("=")
            env.append((key, value))
        hc = c.object("Healthcheck")
        health = None
        if hc and hc.get("Test"):
            h = _Fields(hc, what, where, "config.Healthcheck.")
            health = HealthCheck(
                test=tuple(h.strings("Test") or ()),
                interval=(h.number("Interval") or 30 * _NS) / _NS,
                timeout=(h.number("Timeout") or 30 * _NS) / _NS,
                start_period=(h.number("StartPeriod") or 0) / _NS,
                retries=int(h.number("Retries") or 3),
            )
        labels = c.object("Labels") or {}
        if not all(isinstance(v, str) for v in labels.values()):
            raise wrong_shape(what, where, "config.Labels", "a JSON object of strings", labels)
        return cls(
            entrypoint=c.argv("Entrypoint"),
            cmd=c.argv("Cmd"),
            env=tuple(env),
            workdir=c.string("WorkingDir"),
            user=c.string("User"),
            exposed_ports=tuple(sorted((c.object("ExposedPorts") or {}).keys())),
            labels=tuple(sorted(labels.items())),
            healthcheck=health,
            stop_signal=c.string("StopSignal") or None,
            shell=c.argv("Shell"),
            volumes=tuple(sorted((c.object("Volumes") or {}).keys())),
            onbuild=tuple(c.strings("OnBuild") or ()),
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
        if self.volumes:
            out["Volumes"] = {p: {} for p in self.volumes}
        if self.onbuild:
            out["OnBuild"] = list(self.onbuild)
        return out


class _Fields:
    """Typed reads of one JSON object of an image config: absent or null is None, a wrong type an ImageError."""

    def __init__(self, doc: Mapping[str, Any], what: str, where: str | None, prefix: str) -> None:
        self.doc, self.what, self.where, self.prefix = doc, what, where, prefix

    def _check(self, key: str, kind: str, ok: bool) -> Any:
        value = self.doc.get(key)
        if value is not None and not ok:
            raise wrong_shape(self.what, self.where, self.prefix + key, kind, value)
        return value

    def string(self, key: str) -> str:
        value: str | None = self._check(key, "a string", isinstance(self.doc.get(key), str))
        return value or ""

    def strings(self, key: str) -> list[str] | None:
        v = self.doc.get(key)
        value: list[str] | None = self._check(key, "a JSON array of strings",
                                              isinstance(v, list) and all(isinstance(x, str) for x in v))
        return value

    def object(self, key: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._check(key, "a JSON object", isinstance(self.doc.get(key), dict))
        return value

    def number(self, key: str) -> float | None:
        """A JSON number (durations are integer nanoseconds; a Go duration string like "1s" is not one)."""
        v = self.doc.get(key)
        value: float | None = self._check(key, "a number (nanoseconds for durations)",
                                          isinstance(v, (int, float)) and not isinstance(v, bool))
        return value

    def argv(self, key: str) -> tuple[str, ...] | None:
        """Entrypoint/Cmd/Shell: an array of strings, or (as some tools write it) one shell-quoted string."""
        value = self.doc.get(key)
        if isinstance(value, str):
            try:
                return tuple(shlex.split(value))
            except ValueError as exc:  # unbalanced quotes
                raise wrong_shape(self.what, self.where, self.prefix + key, f"valid shell words ({exc})",
                                  value) from None
        strings = self.strings(key)
        return None if strings is None else tuple(strings)


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
