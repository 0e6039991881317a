"""The fixtures, in the three levels pytest-httpserver made familiar.

* ``container_image`` (function): small and overridable; says *which* image.
* ``minicontainer`` (session): owns the expensive thing, the :class:`Engine`, created on first
  use so that a run whose tests need no container never starts a runtime or touches a store.
* ``container_factory`` / ``container`` (function): hand each test clean containers and
  remove them afterwards, whatever the test did.

:class:`~pytest_minicontainer.session.Session` (the plugin object of this process) holds the
settings and the lazily created engine; here is which containers each test used (for failure
reports and ``keep``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .markers import (
    COMPOSE_SIGNATURE,
    MARKER_KEYS,
    ContainerSpec,
    MarkerError,
    check_options,
    compose_spec,
    spec_from_markers,
)
from .options import NETWORKS
from .session import STATE_KEY, Session, Settings, anchored_reference, declared_image, ini_dir

if TYPE_CHECKING:
    from .compose import RunningStack
    from .container import Container
    from .engine import Engine
    from .errors import RuntimeUnavailable
    from .image import Image
    from .networks import Network

__all__ = ["STATE_KEY", "Settings", "State", "anchored_reference", "compose", "container", "container_factory",
           "container_image", "ini_dir", "minicontainer"]

#: The plugin's per-process state (its former name here).
State = Session

#: How long ``ready=`` may take when the marker gives no ``timeout=``.
DEFAULT_READY_TIMEOUT = 60.0
FACTORY_KEYS = (*MARKER_KEYS[1:], "hostname")


@dataclass
class Tracked:
    """A container a test used, and whether (and where) its writable layer was kept."""

    container: Container
    kept: Path | None = None
    shell: str = ""
    service: str = ""  # the compose service it runs, for the report's section title
    ahead_ms: float | None = None  # started this long before the test (--minicontainer-ahead)

    def keep(self) -> None:
        if self.kept is None:
            self.kept = self.container.keep()
            self.shell = self.container.shell_command()


def exit_status(container: Container) -> int | None:
    """The main process's exit status if it has ended (None while it runs or if there is none)."""
    return container.exit_status


CONTAINERS_KEY = pytest.StashKey[list[Tracked]]()
REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()


def item_failed(item: pytest.Item) -> bool:
    """Whether the test failed so far (setup or call): decides ``--minicontainer-keep=failed``."""
    reports = item.stash.get(REPORTS_KEY, {})
    return any(r.failed for r in reports.values())


def wait_ready(container: Container, ready: Any, timeout: float | None) -> None:
    """Block until ``ready`` says the container is ready; raise ContainerError when it never does.

    A callable is polled: it is ready once it returns a true value or None (so a function that
    raises until the service answers works too).  A wait strategy (anything with
    ``.wait(container, timeout)``) does its own waiting; returning False means it timed out.
    """
    __tracebackhide__ = True
    from .errors import ContainerError

    limit = DEFAULT_READY_TIMEOUT if timeout is None else timeout
    name = getattr(ready, "__name__", None) or type(ready).__name__

    def fail(why: str) -> ContainerError:
        # The failure report's section for this container shows its logs and changes.
        return ContainerError(f"container {container.id} ({container.image}) was not ready: {why}")

    waiter = getattr(ready, "wait", None)
    if callable(waiter):
        if waiter(container, limit) is False:
            raise fail(f"{name}.wait() gave up after {limit:g}s")
        return
    deadline = time.monotonic() + limit
    delay = 0.01
    last = "it was never called"
    while True:
        exited = exit_status(container)
        try:
            result = ready(container)
        except Exception as exc:
            last = f"raised {type(exc).__name__}: {exc}"
        else:
            if result is None or result:
                return
            last = f"returned {result!r}"
        if exited is not None:
            raise fail(f"its main process exited with status {exited} (ready check {name} {last})")
        if time.monotonic() >= deadline:
            raise fail(f"ready check {name} still {last} after the timeout of {limit:g}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


class ContainerFactory:
    """``container_factory(image=None, **options)``: start containers that go away after the test.

    ``image`` is a reference string or an :class:`Image` and defaults to ``container_image``;
    ``options`` are those of the ``container`` marker plus ``hostname``.  Every container it
    started is stopped and removed when the test ends (kept first if ``--minicontainer-keep``
    says so).
    """

    def __init__(self, request: pytest.FixtureRequest, engine: Engine, default_image: str | Image) -> None:
        self._request = request
        self._engine = engine
        self._default_image = default_image
        self._state = request.config.stash[STATE_KEY]
        self._tracked: list[Tracked] = []
        self._networks: dict[str, Network] = {}  # the test's own networks, by the name it used

    def __call__(self, image: str | Image | None = None, **options: Any) -> Container:
        __tracebackhide__ = True
        try:
            checked = check_options({"image": image, **options}, allowed=("image", *FACTORY_KEYS))
        except MarkerError as exc:
            raise TypeError(f"container_factory(): {exc}") from None
        if checked["image"] is None:
            checked["image"] = self._default_image
        return self.start(ContainerSpec(**checked))

    def start(self, spec: ContainerSpec, *, declared: bool = False) -> Container:
        """Start one container from ``spec``, after the ``container_options`` hook had its say.

        ``declared``: it is the test's ``container``, which may have been started ahead
        (``pytest_minicontainer.ahead``): then that one is taken.
        """
        __tracebackhide__ = True
        options = spec.run_options()
        options.network = self._network(options.network)
        options.image = spec.image or self._default_image  # the engine calls the container_options hook
        from .errors import RuntimeUnavailable

        item = self._request.node
        prepared = self._state.ahead.take(item.nodeid, self._engine, options) if declared else None
        refusal: RuntimeUnavailable | None = None
        if prepared is not None:
            container = prepared.container
        else:
            try:
                container = self._engine.start_container(options)
            except RuntimeUnavailable as exc:  # e.g. overlayfs refused: known only at the first container
                refusal = exc
        if refusal is not None:  # outside the except block: no "during handling" chain
            self._state.refused(refusal)
        tracked = Tracked(container)
        if prepared is not None:
            tracked.ahead_ms = (time.monotonic() - prepared.started) * 1000
        self._tracked.append(tracked)
        item.stash.setdefault(CONTAINERS_KEY, []).append(tracked)
        if spec.ready is not None:
            wait_ready(container, spec.ready, spec.timeout)
        return container

    def _network(self, value: Any) -> Any:
        """A network name means the test's own network of that name, made on first use.

        So parallel tests (and xdist workers) that each say ``network="backend"`` never see
        each other's services; a Network object (e.g. a session fixture's) is used as it is.
        """
        if not isinstance(value, str) or value in NETWORKS:
            return value
        net = self._networks.get(value)
        if net is None:
            net = self._engine.network(f"{value} [{self._request.node.nodeid}]")
            self._networks[value] = net
        return net

    def close(self) -> None:
        """Keep (per ``--minicontainer-keep``), stop and remove every container, newest first,
        then the test's networks."""
        keep = self._state.settings.keep
        keep_all = keep == "always" or (keep == "failed" and item_failed(self._request.node))
        errors: list[BaseException] = []
        while self._tracked:
            tracked = self._tracked.pop()
            try:
                if keep_all:
                    tracked.keep()
                tracked.container.stop()
                tracked.container.remove()
            except Exception as exc:  # remove the others before reporting
                errors.append(exc)
        while self._networks:
            try:
                self._networks.popitem()[1].remove()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def minicontainer(pytestconfig: pytest.Config) -> Iterator[Engine]:
    """The session's Engine (created on first use; one per xdist worker, all sharing one store)."""
    from .errors import RuntimeUnavailable

    state = pytestconfig.stash[STATE_KEY]
    try:
        engine = state.engine()
    except RuntimeUnavailable as exc:
        refusal = exc  # reported outside the except block: no "during handling" chain
    else:
        yield engine
        state.close()
        return
    state.refused(refusal)


@pytest.fixture
def container_image(request: pytest.FixtureRequest) -> str | Image:
    """The image of ``container``: the marker's ``image``, else the ini key ``minicontainer_image``.

    Override this fixture, or parametrize it (``@pytest.mark.parametrize("container_image",
    [...])``, directly or with ``indirect=True``) to run a test against several images.
    """
    param = getattr(request, "param", None)
    if param is not None:
        return param  # type: ignore[no-any-return]
    spec = spec_from_markers(request.node.iter_markers("container"))
    if spec.image is not None:
        return spec.image
    return request.config.stash[STATE_KEY].settings.image


@pytest.fixture
def container_factory(
    request: pytest.FixtureRequest, minicontainer: Engine, container_image: str | Image
) -> Iterator[ContainerFactory]:
    """Start containers with ``container_factory(image=None, **options)``; all removed after the test."""
    factory = ContainerFactory(request, minicontainer, declared_image(container_image, request.config))
    yield factory
    factory.close()


@pytest.fixture
def container(
    request: pytest.FixtureRequest, container_factory: ContainerFactory, container_image: str | Image
) -> Container:
    """A clean, started container from ``container_image`` with the ``container`` marker's options."""
    __tracebackhide__ = True
    spec = spec_from_markers(request.node.iter_markers("container"))
    return container_factory.start(replace(spec, image=declared_image(container_image, request.config)), declared=True)


@pytest.fixture
def compose(request: pytest.FixtureRequest, minicontainer: Engine) -> Iterator[RunningStack]:
    """A fresh running stack of the test's ``@pytest.mark.compose(path, ...)``: ``compose["db"]``.

    Each test gets its own (networks, volumes, containers), removed after it; the project's
    images are resolved and built once per session.  A relative path starts at the ini file's
    directory, as images' do.
    """
    __tracebackhide__ = True
    marker = request.node.get_closest_marker("compose")
    if marker is None:
        pytest.fail(f"the compose fixture needs @pytest.mark.{COMPOSE_SIGNATURE} on the test", pytrace=False)
    spec = compose_spec(marker, ini_dir(request.config))
    state = request.config.stash[STATE_KEY]
    stack = state.stack(spec)
    prepared = state.ahead.take_stack(request.node.nodeid, spec, minicontainer)
    early: dict[str, float] = {}  # services started ahead: how long before the test
    if prepared is not None:  # started while the previous test ran (--minicontainer-ahead)
        early = dict.fromkeys(prepared.stack, (time.monotonic() - prepared.started) * 1000)
        running = prepared.stack.wait()
    else:
        running = stack.up(None if spec.services is None else list(spec.services))
    tracked = request.node.stash.setdefault(CONTAINERS_KEY, [])
    tracked += [Tracked(c, service=name, ahead_ms=early.get(name)) for name, c in running.items()]
    yield running
    running.down()
