"""The model of a compose project once read, interpolated, validated and resolved.

Every value here is final: paths are absolute, variables substituted, short syntaxes expanded,
durations in seconds.  What is left open is only what needs the image (its Entrypoint, Cmd
and HEALTHCHECK, which the file may override in part: :meth:`Service.command_for`,
:meth:`Service.healthcheck_for`) and what needs a running stack (directories for named
volumes and tmpfs mounts, the networks themselves).  Starting a service then takes only the
public Engine API: ``engine.build(...)`` or ``engine.image(...)``, then ``engine.run(image,
command, env=, workdir=, user=, mounts=, network=, aliases=, hostname=, ports=)``, and the
``pytest_minicontainer.wait`` strategies for health.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import ComposeError, HealthCheck, ImageConfig
from ._plan import plan as _plan

__all__ = ["Build", "Dependency", "FileMount", "HealthcheckOverride", "Network", "NetworkAttachment", "Port",
           "Project", "Service", "Volume", "VolumeMount"]

#: depends_on conditions, as the Compose Specification names them.
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


@dataclass(frozen=True)
class Build:
    """``build:``: what ``engine.build(containerfile, context, build_args=, target=, network=,
    no_cache=, tag=service.image)`` needs.

    ``dockerfile`` is an absolute path, or None for the builder's default (``Containerfile``,
    then ``Dockerfile`` in the context); ``dockerfile_inline`` is the file's text instead.
    ``args`` holds only the arguments that have a value (``args: [VERSION]`` takes VERSION
    from the interpolation environment, and is left out when that has none, so the
    Dockerfile's ``ARG`` default applies).
    """

    context: Path
    dockerfile: Path | None = None
    dockerfile_inline: str | None = None
    args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    network: str = "host"
    no_cache: bool = False

    @property
    def containerfile(self) -> str | None:
        """The first argument of ``engine.build``: the file's path or its text (None: the default)."""
        if self.dockerfile_inline is not None:
            return self.dockerfile_inline
        return str(self.dockerfile) if self.dockerfile is not None else None


@dataclass(frozen=True)
class Port:
    """One published container port (``ports:``, short and long syntax, ranges expanded).

    Every port is published on 127.0.0.1 at a port the kernel picks (as ``engine.run(ports=)``
    does): stacks of parallel tests cannot share one host port.  ``published`` and
    ``host_ip`` keep what the file asked for, for reports.
    """

    target: int
    published: int | None = None
    host_ip: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class VolumeMount:
    """One entry of ``volumes:`` or ``tmpfs:``.

    ``type`` is ``bind`` (``source``: an absolute host path that exists), ``volume``
    (``source``: the key of a project volume, or None for an anonymous one; ``subpath`` a
    directory inside it; ``nocopy``: do not fill a new volume with the image's files at
    ``target``, which Docker does otherwise) or ``tmpfs`` (an empty directory for this
    container; ``mode`` its permissions).
    """

    type: str
    target: str
    source: str | None = None
    read_only: bool = False
    nocopy: bool = False
    subpath: str | None = None
    mode: int | None = None


@dataclass(frozen=True)
class FileMount:
    """A ``configs:`` or ``secrets:`` grant: one read-only file at ``target`` in the container.

    Its content is the host file ``file``, or else the string ``content`` (inline ``content:``
    or an ``environment:`` source, read when the file was loaded).
    """

    kind: str  # "config" or "secret"
    name: str
    target: str
    file: Path | None = None
    content: str | None = None


@dataclass(frozen=True)
class HealthcheckOverride:
    """A service's ``healthcheck:``.  Fields it leaves out come from the image's HEALTHCHECK, as
    Docker merges them; :meth:`resolve` does that merge."""

    test: tuple[str, ...] | None = None  # ("CMD", ...) or ("CMD-SHELL", "..."); None: the image's
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None
    start_interval: float | None = None  # accepted; readiness waits poll faster than any interval
    disable: bool = False

    def resolve(self, image: HealthCheck | None) -> HealthCheck | None:
        """The check to run: this override over the image's (None: no check, or disabled).

        A zero or absent field takes the image's value, else Docker's default (30 s, 30 s,
        0 s, 3 retries): Docker treats zero as "not set" too.
        """
        if self.disable:
            return None
        base = image or HealthCheck(test=())
        test = self.test or base.test
        if not test:
            return None
        return HealthCheck(
            test=test,
            interval=self.interval or base.interval,
            timeout=self.timeout or base.timeout,
            start_period=self.start_period or base.start_period,
            retries=self.retries or base.retries,
        )


@dataclass(frozen=True)
class Dependency:
    """One ``depends_on`` entry: start ``service`` first and wait for ``condition``.

    ``required=False``: a dependency that is not part of the stack (its profile is not
    active) is skipped instead of refused.  ``restart`` is kept for reports; nothing here
    restarts services.
    """

    service: str
    condition: str = "service_started"
    required: bool = True
    restart: bool = False


@dataclass(frozen=True)
class NetworkAttachment:
    """A service's membership of one project network: ``aliases`` are every name it answers to
    there (the service name, its ``container_name``, then the file's ``aliases``), ready for
    ``engine.run(..., aliases=...)``."""

    network: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Network:
    """A project network (``networks:``, and the implicit ``default`` when services use it).

    ``name`` is the file's ``name:`` (reports only: each stack makes its own networks).
    Networks have no way out here (as ``internal: true``): a stack's services reach each other.
    """

    key: str
    name: str | None = None
    internal: bool = False


@dataclass(frozen=True)
class Volume:
    """A project named volume: a directory per stack, shared by the services that mount it."""

    key: str
    name: str | None = None


@dataclass(frozen=True)
class Service:
    """One service, resolved.

    ``image`` is the reference for ``engine.image(image, pull=pull, platform=platform)``
    (``rootfs:``/``oci:``/... paths made absolute from the compose file's directory) or, with
    ``build``, the tag to give the built image (may be None).  ``environment`` is the
    ``env_file`` files then ``environment``, merged as the spec says; the image's own ENV
    goes below it (``engine.run`` does that).  ``command``/``entrypoint`` are None where the
    image's apply; ``hostname`` None gives the engine's default.  ``network_mode`` is None
    (the ``networks`` apply), ``"none"`` or ``"host"``.
    """

    name: str
    image: str | None = None
    build: Build | None = None
    pull: str | None = None  # "always", "missing", "never" or None (the engine's default)
    platform: str | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    ports: tuple[Port, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    files: tuple[FileMount, ...] = ()
    healthcheck: HealthcheckOverride | None = None
    depends_on: tuple[Dependency, ...] = ()
    networks: tuple[NetworkAttachment, ...] = ()
    network_mode: str | None = None
    profiles: tuple[str, ...] = ()
    stop_signal: str | None = None
    stop_grace_period: float = 10.0
    labels: Mapping[str, str] = field(default_factory=dict)
    container_name: str | None = None
    restart: str = "no"

    def command_for(self, config: ImageConfig) -> tuple[str, ...]:
        """The main process's argv over an image with ``config``, as Docker combines them.

        ``entrypoint`` replaces the image's ENTRYPOINT *and* drops its CMD; ``command``
        replaces CMD.  An empty result means the image and the file name no command.
        """
        entrypoint = self.entrypoint if self.entrypoint is not None else (config.entrypoint or ())
        if self.command is not None:
            command = self.command
        elif self.entrypoint is not None:
            command = ()
        else:
            command = config.cmd or ()
        return (*entrypoint, *command)

    def healthcheck_for(self, config: ImageConfig) -> HealthCheck | None:
        """The health check of this service over an image with ``config`` (None: none)."""
        if self.healthcheck is None:
            return config.healthcheck
        return self.healthcheck.resolve(config.healthcheck)

    def enabled(self, profiles: Iterable[str]) -> bool:
        """Whether the service is part of the stack with ``profiles`` active (``*``: all)."""
        active = set(profiles)
        return not self.profiles or "*" in active or bool(active.intersection(self.profiles))


@dataclass(frozen=True)
class Project:
    """A compose project: its name, file and everything declared in it, in file order.

    ``profiles`` are the active profiles it was loaded with; :meth:`plan` chooses and orders
    the services to start.
    """

    name: str
    file: Path
    services: Mapping[str, Service] = field(default_factory=dict)
    networks: Mapping[str, Network] = field(default_factory=dict)
    volumes: Mapping[str, Volume] = field(default_factory=dict)
    profiles: frozenset[str] = frozenset()

    @property
    def directory(self) -> Path:
        """Where relative paths of the file start."""
        return self.file.parent

    def __getitem__(self, name: str) -> Service:
        return self.service(name)

    def service(self, name: str) -> Service:
        """The service called ``name``; a ComposeError naming the known ones otherwise."""
        found = self.services.get(name)
        if found is None:
            known = ", ".join(self.services) or "none"
            raise ComposeError(f"no service {name!r} in this file (services: {known})", file=str(self.file))
        return found

    def plan(self, services: Iterable[str] | None = None) -> tuple[Service, ...]:
        """The services to start for ``services`` (None: all those the active profiles enable),
        with what they depend on, dependencies first; see ``_plan`` for the profile rules."""
        return _plan(self, services)
