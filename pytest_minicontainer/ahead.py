"""Start the next test's container while the current test runs (``--minicontainer-ahead``).

A seeded database cloned per test costs the container a few milliseconds and the service's
own start-up (postgres: about 100 ms) much more.  pytest tells a plugin which test runs next
(``nextitem``), and a test's ``container`` is declared before it runs (its marker, its
parametrized ``container_image``), so that container can start while the previous test runs:
when the next test begins, its service has been starting for as long as the previous test
took.  The readiness wait still happens in the test's own setup, usually at once.

Only what is the same whenever it is made is started ahead: the ``container`` fixture of a
test whose ``container_image`` is the plugin's own (the marker's image, a parametrized one or
the ini default), without bind mounts (their sources may change meanwhile) and not on a
test's own named network; and the ``compose`` fixture's stack of a ``compose`` marker, once
the session made its images (an earlier test used that file): ``Stack.start`` starts the
services that need not wait, the test's ``RunningStack.wait`` the rest (what waits for a
dependency's health) and the health waits.  ``container_factory`` calls are not predicted (their arguments are
values computed in the test).  A container started ahead belongs to nobody until its test
takes it: ``Engine.containers`` does not list it, and one not taken (the next test was
skipped, failed in setup, or asked for something else) is removed at that test's teardown.
Under xdist each worker knows its own next test; ``-k``, ``--lf`` and reordering plugins
change which test that is, never what runs.  The image of a session fixture's commit is
started ahead too, once the fixture ran (before that, the start fails quietly).

Memory: nothing is started ahead while the machine has less than ``MIN_AVAILABLE`` bytes
available (``MemAvailable``), so a suite near the memory limit never holds one container
more than it would without look-ahead.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .options import NETWORKS, RunOptions

if TYPE_CHECKING:
    import pytest

    from .compose import RunningStack, Stack
    from .container import Container
    from .engine import Engine
    from .image import Image
    from .markers import ComposeSpec, ContainerSpec

__all__ = ["MIN_AVAILABLE", "Ahead", "Prepared", "PreparedStack", "memory_available", "spec_key"]

MIN_AVAILABLE = 512 << 20


def memory_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Prepared:
    """A container started for a test that has not begun yet."""

    key: str
    container: Container
    started: float  # time.monotonic() when it was started


@dataclass
class PreparedStack:
    """A compose stack started (``Stack.start``, not waited for) for a test that has not begun."""

    key: ComposeSpec
    stack: RunningStack
    started: float


def spec_key(options: RunOptions) -> str:
    """What two starts must agree on for one to stand for the other: the image and every option."""
    image = options.image
    name = image if isinstance(image, str) or image is None else image.digest
    return json.dumps([name, options.keywords()], sort_keys=True, default=str)


class Ahead:
    """The containers started ahead in this process (one pytest session or xdist worker)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth  # 0: off; N: the next N tests' containers
        self._prepared: dict[str, Prepared] = {}  # by the nodeid of the test it is for
        self._stacks: dict[str, PreparedStack] = {}  # likewise, compose stacks

    @staticmethod
    def _room() -> bool:
        """Whether there is memory to start something ahead (see the module's docstring)."""
        available = memory_available()
        return available is None or available >= MIN_AVAILABLE

    def start(self, nodeid: str, engine: Engine, options: RunOptions) -> None:
        """``engine.start_container(options)`` for the test ``nodeid``; a failure leaves it to the
        test (hooks see the same options as when the test starts it itself)."""
        if self.depth <= 0 or nodeid in self._prepared or not self._room():
            return  # (memory is short: the test starts its container itself, as without look-ahead)
        from .errors import MiniContainerError

        started = time.monotonic()
        try:
            container = engine.start_container(options)
        except (MiniContainerError, OSError, ValueError):
            return  # the test will start it itself and report what goes wrong
        engine.reserve(container)
        self._prepared[nodeid] = Prepared(spec_key(options), container, started)

    def start_stack(self, nodeid: str, engine: Engine, stack: Stack, key: ComposeSpec) -> None:
        """``stack.start(key.services)`` for the test ``nodeid``, if the stack's images are made
        (a build or pull here would hold up the running test); a failure leaves it to the test."""
        if self.depth <= 0 or nodeid in self._stacks or not self._room():
            return
        from .errors import MiniContainerError

        started = time.monotonic()
        try:
            if not stack.resolved(key.services):  # (an unknown service: the test reports it)
                return
            running = stack.start(key.services)
        except (MiniContainerError, OSError, ValueError):
            return
        for container in running.values():
            engine.reserve(container)
        self._stacks[nodeid] = PreparedStack(key, running, started)

    def take_stack(self, nodeid: str, key: ComposeSpec, engine: Engine) -> PreparedStack | None:
        """The stack started for ``nodeid`` if it was started from the same marker."""
        prepared = self._stacks.get(nodeid)
        if prepared is None or prepared.key != key:
            return None
        del self._stacks[nodeid]
        for container in prepared.stack.values():
            engine.release(container)
        return prepared

    def take(self, nodeid: str, engine: Engine, options: RunOptions) -> Prepared | None:
        """The container started for ``nodeid`` if it was started from the same ``options``."""
        prepared = self._prepared.get(nodeid)
        if prepared is None or prepared.key != spec_key(options):
            return None
        del self._prepared[nodeid]
        engine.release(prepared.container)
        return prepared

    def drop(self, keep: Collection[str] = ()) -> None:
        """Remove every container and stack started ahead but those for the tests ``keep`` (nodeids)."""
        from .errors import MiniContainerError

        for nodeid in [n for n in self._prepared if n not in keep]:
            prepared = self._prepared.pop(nodeid)
            with contextlib.suppress(MiniContainerError, OSError):
                prepared.container.remove()
        for nodeid in [n for n in self._stacks if n not in keep]:
            with contextlib.suppress(MiniContainerError, OSError):
                self._stacks.pop(nodeid).stack.down()


def declared(item: pytest.Item, spec: ContainerSpec, default: str | Image) -> str | Image | None:
    """The image of the test's ``container`` if it can be started ahead (see the module's
    docstring): its parametrized ``container_image``, else the marker's, else ``default``."""
    if "container" not in getattr(item, "fixturenames", ()) or spec.mounts:
        return None
    if spec.network is not None and spec.network not in NETWORKS:
        return None  # the test's own network, made when it starts
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    if "container_image" in params:
        return params["container_image"]  # type: ignore[no-any-return]
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.get("container_image") if info is not None else None
    if not defs or getattr(defs[-1].func, "__module__", "") != "pytest_minicontainer.fixtures":
        return None  # a conftest's container_image: a value the test computes
    return spec.image if spec.image is not None else default
