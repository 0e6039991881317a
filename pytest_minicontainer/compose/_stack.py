"""Starting a compose project: ``engine.compose(path)`` gives a :class:`Stack`, ``stack.up()`` a
:class:`RunningStack` of one container per service.

Every ``up()`` makes a stack of its own: its own networks (``engine.network()``: services find
each other by service name and aliases), its own named volumes (directories in the Engine's
scratch space), its own containers.  So a test can have a fresh stack, and parallel tests
never share one.  Services start in dependency order; a ``depends_on`` condition is waited
for with the project's readiness waits (``service_healthy``: the service's healthcheck, as
the file overrides the image's; ``service_completed_successfully``: its main process exits 0).
Only the public API of the package is used here, imported as a user would import it (the
package's exports, ``errors``, ``wait``): the ``compose-public-api`` contract in
``.importlinter`` and ``tests/unit/test_import_contracts.py`` keep it so.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import Mount
from ..errors import ComposeError, ExecTimeout, MiniContainerError
from ..wait import healthcheck
from ._model import Dependency, Project, Service

if TYPE_CHECKING:
    from .. import Container, Engine, Image, Network

__all__ = ["RunningStack", "Stack"]

#: How long a dependency may take to become healthy or to finish, when nothing else says.
DEPENDENCY_TIMEOUT = 120.0
_stacks = itertools.count(1)


class Stack:
    """A loaded compose project, ready to start (as often as needed) with :meth:`up`.

    Images are resolved (pulled, imported, built) once per Stack, at the first ``up``.
    """

    def __init__(self, engine: Engine, project: Project) -> None:
        self.engine = engine
        self.project = project
        self._images: dict[str, Image] = {}

    def __repr__(self) -> str:
        return f"<Stack {self.project.name!r}: {', '.join(self.project.services)}>"

    def image(self, service: Service) -> Image:
        """The image of ``service``: built from its ``build:`` or resolved from its ``image:``."""
        found = self._images.get(service.name)
        if found is not None:
            return found
        where: dict[str, Any] = {"file": str(self.project.file), "path": f"services.{service.name}",
                                 "service": service.name}
        try:
            if service.build is not None:
                b = service.build
                image = self.engine.build(b.dockerfile_inline if b.dockerfile_inline is not None else b.dockerfile,
                                          b.context, tag=service.image, build_args=dict(b.args), target=b.target,
                                          network=b.network, no_cache=b.no_cache)
            elif service.image is not None:
                image = self.engine.image(service.image, pull=service.pull, platform=service.platform)
            else:  # the loader refuses this; kept for a Project made by hand
                raise ComposeError("has neither image: nor build:", **where)
        except ComposeError:
            raise
        except MiniContainerError as exc:
            raise ComposeError(f"its image could not be made: {exc}", **where) from exc
        self._images[service.name] = image
        return image

    def resolved(self, services: Iterable[str] | None = None) -> bool:
        """Whether the images of ``services`` (and what they depend on) are made already, so
        that starting them builds and pulls nothing."""
        return all(s.name in self._images for s in self.project.plan(services))

    def up(self, services: Iterable[str] | None = None, *, timeout: float = DEPENDENCY_TIMEOUT) -> RunningStack:
        """Start ``services`` (default: all enabled ones) and what they depend on, in order.

        Returns once every service has started, every ``depends_on`` condition held and every
        service with a healthcheck is healthy (as ``docker compose up --wait``); anything that
        fails removes what was started and raises ComposeError naming the service.
        ``timeout`` bounds each wait.  The same as ``start(services).wait(timeout)``.
        """
        return self.start(services).wait(timeout)

    def start(self, services: Iterable[str] | None = None) -> RunningStack:
        """Start, in order, the services that need not wait for anything; :meth:`RunningStack.wait`
        starts the rest and waits until the stack is ready.

        The split lets a caller begin a stack's start-up and do something else while its
        services boot (the plugin starts the next test's stack while the current test runs):
        the services that ``depends_on`` another's health or completion are held back (and
        what depends on them), since starting them would mean waiting here.  A failure removes
        what was started.
        """
        running = RunningStack(self, next(_stacks))
        running._pending = list(self.project.plan(services))
        running._planned = [s.name for s in running._pending]
        try:
            for service in list(running._pending):
                if any(running._held(d) for d in service.depends_on):
                    continue
                running._pending.remove(service)
                for dep in service.depends_on:  # started, or not in the stack: no waiting
                    running._await(dep.service, dep.condition, service.name, dep.required, 0)
                running._start(service)
        except BaseException:
            running.down()
            raise
        return running


class RunningStack(Mapping[str, "Container"]):
    """The containers of one started stack, by service name; a context manager that removes
    them all (and the stack's networks and volumes)."""

    def __init__(self, stack: Stack, number: int) -> None:
        self.stack = stack
        self.engine = stack.engine
        self.project = stack.project
        self.label = f"{self.project.name}-{number}"
        self.containers: dict[str, Container] = {}
        self.networks: dict[str, Network] = {}
        self._volumes: str | None = None
        self._down = False
        self._passed: set[str] = set()  # services whose healthcheck passed
        self._pending: list[Service] = []  # planned, not started yet (Stack.start held them back)
        self._planned: list[str] = []  # every planned service, in start order
        self._ready = False

    def __repr__(self) -> str:
        return f"<RunningStack {self.label}: {', '.join(self.containers)}>"

    def __getitem__(self, service: str) -> Container:
        try:
            return self.containers[service]
        except KeyError:
            raise KeyError(f"no running service {service!r} in this stack (running: "
                           f"{', '.join(self.containers) or 'none'})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.containers)

    def __len__(self) -> int:
        return len(self.containers)

    def __enter__(self) -> RunningStack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.down()

    def wait(self, timeout: float = DEPENDENCY_TIMEOUT) -> RunningStack:
        """Start the services :meth:`Stack.start` held back, each once what it depends on holds,
        then wait until every service with a healthcheck is healthy; returns this stack.

        ``timeout`` bounds each wait; a failure removes the whole stack and raises ComposeError
        naming the service.  Waiting twice does nothing more.
        """
        if self._ready:
            return self
        try:
            while self._pending:
                service = self._pending.pop(0)
                for dep in service.depends_on:
                    self._await(dep.service, dep.condition, service.name, dep.required, timeout)
                self._start(service)
            for name in self._planned:  # as `docker compose up --wait`: a test starts on a ready stack
                if self[name].image.config.healthcheck is not None:
                    self._healthy(name, None, timeout)
        except BaseException:
            self.down()
            raise
        self._ready = True
        return self

    def commit(self) -> Stack:
        """Stop every service (dependents first) and save each one's files as a new image: a
        Stack whose ``up()`` starts clones of this stack as it is now.

        The prepared-state pattern for a whole stack: a session fixture starts the stack,
        seeds it, commits it; each test ups its own clone in milliseconds.  Services are
        stopped first, as a database must be for its files to be consistent; what lies in named
        volumes (directories outside the containers) is not part of the images.
        """
        for name in reversed(list(self.containers)):
            self.containers[name].stop(self.project.services[name].stop_grace_period)
        prepared = Stack(self.engine, self.project)
        prepared._images.update({name: c.commit() for name, c in self.containers.items()})
        return prepared

    def down(self) -> None:
        """Stop and remove every container (dependents first), then the networks and volumes."""
        if self._down:
            return
        self._down = True
        errors: list[BaseException] = []
        for name in reversed(list(self.containers)):
            container = self.containers[name]
            try:
                container.stop(self.project.services[name].stop_grace_period if name in self.project.services
                               else 10)
                container.remove()
            except Exception as exc:
                errors.append(exc)
        for net in self.networks.values():
            try:
                net.remove()
            except Exception as exc:
                errors.append(exc)
        if self._volumes is not None:
            with contextlib.suppress(OSError, MiniContainerError):
                # files of the containers' users: removed in the runtime's user namespace
                self.engine.runtime.remove([self._volumes], now=True)
            shutil.rmtree(self._volumes, ignore_errors=True)
        if errors:
            raise errors[0]

    # -- starting -------------------------------------------------------------------------------
    def _where(self, service: str, key: str | None = None) -> dict[str, Any]:
        path = f"services.{service}" + (f".{key}" if key else "")
        return {"file": str(self.project.file), "path": path, "service": service, "key": key}

    def _networks_of(self, service: Service) -> list[tuple[Network, list[str]]]:
        """The networks ``service`` joins (this stack's own), first the one it starts on, with
        its names on each: the service name, the attachment's aliases, ``container_name``."""
        attachments = [(a.network, a.aliases) for a in service.networks] or [("default", ())]
        out = []
        for key, aliases in attachments:
            net = self.networks.get(key)
            if net is None:
                net = self.engine.network(f"{self.label}_{key}")
                self.networks[key] = net
            names = [service.name, *aliases, *([service.container_name] if service.container_name else [])]
            out.append((net, list(dict.fromkeys(names))))
        return out

    def _volume_dir(self) -> str:
        """This stack's volumes and inline files: in the Engine's scratch space, so that what
        a killed session leaves there is removed by the next one, as containers' layers are."""
        if self._volumes is None:
            path = self.engine.runtime.scratch / "volumes" / f"{self.label}-{os.urandom(4).hex()}"
            path.mkdir(parents=True)
            self._volumes = str(path)
        return self._volumes

    def _mounts(self, service: Service) -> list[Mount]:
        mounts = []
        for v in service.volumes:
            if v.type == "bind":
                assert v.source is not None
                mounts.append(Mount(v.source, v.target, readonly=v.read_only))
                continue
            if v.type != "volume":
                raise ComposeError(f"volume type {v.type!r} is not supported here (bind, volume)",
                                   **self._where(service.name, "volumes"))
            volumes = self._volume_dir()
            name = v.source or f"anonymous-{service.name}-{len(mounts)}"
            path = os.path.join(volumes, name, (v.subpath or "").lstrip("/"))
            os.makedirs(path, exist_ok=True)
            os.chmod(os.path.join(volumes, name), 0o777)  # any user of the image may write, as in a new volume
            mounts.append(Mount(path, v.target, readonly=v.read_only))
        for f in service.files:
            if f.file is not None:
                mounts.append(Mount(str(f.file), f.target, readonly=True))
            else:
                path = os.path.join(self._volume_dir(), f"{f.kind}-{f.name}")
                with open(path, "w", encoding="utf-8") as out:
                    out.write(f.content or "")
                mounts.append(Mount(path, f.target, readonly=True))
        return mounts

    def _start(self, service: Service) -> None:
        image = self.stack.image(service)
        config = image.config
        changes: dict[str, Any] = {}
        check = service.healthcheck_for(config)
        if check != config.healthcheck:
            changes["healthcheck"] = check
        if service.stop_signal:
            changes["stop_signal"] = service.stop_signal
        if changes:  # the file's settings stand in for the image's, for this stack's container
            image = replace(image, config=config.with_changes(**changes))
        nets = [] if service.network_mode in ("none", "host") else self._networks_of(service)
        network: str | Network = service.network_mode or nets[0][0]
        try:
            container = self.engine.run(
                image, list(service.command_for(config)), env=dict(service.environment),
                workdir=service.working_dir, user=service.user, mounts=self._mounts(service), network=network,
                hostname=service.hostname, aliases=(nets[0][1] if nets else None))
        except ComposeError:
            raise
        except (MiniContainerError, ValueError, OSError) as exc:
            raise ComposeError(f"could not start: {exc}", **self._where(service.name)) from exc
        self.containers[service.name] = container
        for net, names in nets[1:]:  # the others: one more interface each (docker network connect)
            try:
                net.connect(container, aliases=names)
            except (MiniContainerError, ValueError, OSError) as exc:
                raise ComposeError(f"could not join network {net.name}: {exc}",
                                   **self._where(service.name, "networks")) from exc
        for port in service.ports:
            try:
                container.publish(port.target)
            except (MiniContainerError, OSError) as exc:
                raise ComposeError(f"port {port.target} could not be published: {exc}",
                                   **self._where(service.name, "ports")) from exc

    def _healthy(self, name: str, dependent: str | None, timeout: float) -> None:
        """Wait (once per service) until ``name``'s healthcheck passes."""
        if name in self._passed:
            return
        try:
            healthcheck().wait(self.containers[name], timeout)
        except MiniContainerError as exc:
            if dependent is None:
                raise ComposeError(f"did not become healthy: {exc}", **self._where(name, "healthcheck")) from exc
            raise ComposeError(f"waited for {name!r} to be healthy: {exc}",
                               **self._where(dependent, "depends_on")) from exc
        self._passed.add(name)

    def _held(self, dep: Dependency) -> bool:
        """Whether ``dep`` holds its dependent back in :meth:`Stack.start`: its service is not
        started yet, or must become healthy or end first (waits are :meth:`wait`'s)."""
        if any(s.name == dep.service for s in self._pending):
            return True
        return (dep.condition != "service_started" and dep.service in self.containers
                and dep.service not in self._passed)

    def _await(self, name: str, condition: str, dependent: str, required: bool, timeout: float) -> None:
        """Hold ``dependent``'s start until ``name`` meets ``condition``."""
        container = self.containers.get(name)
        if container is None:
            if required:
                raise ComposeError(f"depends on {name!r}, which is not part of this stack (its profile is not "
                                   "active)", **self._where(dependent, "depends_on"))
            return
        where = self._where(dependent, "depends_on")
        if condition == "service_healthy":
            if container.image.config.healthcheck is None:
                raise ComposeError(f"waits for {name!r} to be healthy, but {name!r} has no healthcheck "
                                   "(give it one, or use condition: service_started)", **where)
            self._healthy(name, dependent, timeout)
        elif condition == "service_completed_successfully":
            try:
                status: int | None = container.wait(timeout)
            except ExecTimeout:
                status = None
            if status != 0:
                what = "still runs" if status is None else f"exited with status {status}"
                raise ComposeError(f"waits for {name!r} to complete successfully, but it {what}", **where)
