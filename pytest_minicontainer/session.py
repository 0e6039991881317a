"""The plugin's state in one pytest process, as a plugin object of its own.

:class:`Session` holds the settings read from options and ini keys, the lazily created
engine, the look-ahead and the compose stacks, and implements the hooks that need them
(the next test, the look-ahead's start and drop, the header, xdist's node set-up).  The
plugin registers one per ``pytest.Config`` with ``config.pluginmanager.register``, as
pytest-xdist registers its ``DSession``; the fixtures reach it through ``config.stash``.
Settings reach the Engine as arguments, never through ``os.environ``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from .ahead import Ahead, declared
from .markers import ComposeSpec, compose_spec, spec_from_markers
from .options import RunOptions
from .paths import default_store_path

if TYPE_CHECKING:
    from .compose import Stack
    from .container import Container
    from .engine import Engine
    from .errors import RuntimeUnavailable
    from .image import Image
    from .images.registry import RegistryOptions

__all__ = ["PLUGIN_NAME", "STATE_KEY", "Session", "Settings", "anchored_reference", "declared_image", "ini_dir"]

#: The name the session object is registered under (``config.pluginmanager.get_plugin``).
PLUGIN_NAME = "minicontainer-session"

# References that name a file or directory on this machine (see ``images.resolve``).
LOCAL_PREFIXES = ("rootfs:", "oci:", "oci-archive:", "docker-archive:")


def ini_dir(config: pytest.Config) -> Path:
    """Where relative paths of the configuration start: the ini file's directory, else rootdir."""
    return config.inipath.parent if config.inipath else config.rootpath


def anchored_reference(ref: str, base: Path) -> str:
    """``ref`` with a relative local path (``rootfs:tests/rootfs``) made absolute from ``base``."""
    for prefix in LOCAL_PREFIXES:
        rest = ref[len(prefix):]
        if ref.startswith(prefix) and rest and not rest.startswith(("/", "~")):
            return prefix + str(base / rest)
    return ref


@dataclass(frozen=True)
class Settings:
    """The plugin's options, each resolved from its command-line option or else its ini key."""

    store: str | None = None
    pull: str = "missing"
    keep: str = "never"
    image: str = "host"
    unavailable: str = "error"
    # the registry build caches of every build (option, else environment, else ini key);
    # None: the engine's own default (the environment)
    cache_from: tuple[str, ...] | None = None
    cache_to: str | None = None
    # the registry ini keys and the layer size cap (the environment winning over each key);
    # None: the engine's own default (the environment, read when used)
    registry: RegistryOptions | None = None
    max_layer_size: int | None = None


@dataclass(eq=False)
class Session:
    """The plugin's state in this process, and the hooks that use it: one per ``pytest.Config``
    (xdist workers each have their own), registered as a plugin object (as xdist registers its
    session) under :data:`PLUGIN_NAME`; the fixtures find it in ``config.stash[STATE_KEY]``.
    """

    config: pytest.Config
    settings: Settings
    _engine: Engine | None = field(default=None, init=False)
    _refused: RuntimeUnavailable | None = field(default=None, init=False)
    _stacks: dict[tuple[Any, ...], Stack] = field(default_factory=dict, init=False)
    ahead: Ahead = field(default_factory=lambda: Ahead(0), init=False)  # set from the option at configure
    next_item: pytest.Item | None = field(default=None, init=False)  # the test after the running one
    _order: dict[int, int] | None = field(default=None, init=False)  # id(item) -> its place in session.items

    def _announce(self, line: str) -> None:
        """An image the session pulled or built, as a line of pytest's terminal (none with -q).

        Written past the capture, as pytest's own header lines are: a first run that pulls
        for minutes says why it takes long, in the test that made it wait.
        """
        # An xdist worker's terminal is not the user's: its lines would go nowhere useful.
        if self.config.get_verbosity() < 0 or hasattr(self.config, "workerinput"):
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:  # -p no:terminal
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(f"minicontainer: {line}")

    def engine(self) -> Engine:
        """The session's engine, created on first call; raises RuntimeUnavailable on a refusing host.

        Starting the runtime here makes a host's refusal surface once, in the fixture.
        """
        if self._refused is not None:
            raise self._refused
        if self._engine is None:
            from .engine import Engine  # heavy: only once a test needs a container
            from .errors import RuntimeUnavailable

            engine = Engine(
                self.settings.store,
                cache_from=self.settings.cache_from,
                cache_to=self.settings.cache_to,
                registry=self.settings.registry,
                max_layer_size=self.settings.max_layer_size,
                image_resolver=self._resolve_image,
                on_start=self._started,
                on_finish=self._finished,
                on_options=self._options,
                pull=self.settings.pull,
                announce=self._announce,
            )
            try:
                engine.start()
            except RuntimeUnavailable as exc:
                engine.close()
                self._refused = exc
                raise
            self._engine = engine
        return self._engine

    def stack(self, spec: ComposeSpec) -> Stack:
        """The session's Stack of a compose marker's file (and its env and profiles): loaded and
        its images made once, started per test."""
        found = self._stacks.get(_stack_key(spec))
        if found is None:
            found = self._stacks[_stack_key(spec)] = self.engine().compose(spec.path, env=dict(spec.env) or None,
                                                              profiles=spec.profiles)
        return found

    def describe(self) -> str:
        """The header line: runtime mode, id mapping and store, without starting anything.

        Before the engine exists the facts come from the id-map choice the runtime will make
        (a cheap read of /etc/subuid) and the store path rules, so a run that needs no
        container still gets its header for free.
        """
        if self._engine is not None:
            e = self._engine
            return f"{e.mode}, id mapping {e.id_mapping}, store {e.store_path}"
        from .runtime.idmap import choose

        idmap = choose()
        mode = "root" if os.geteuid() == 0 and idmap.kind == "root" else "rootless"
        return f"{mode}, id mapping {idmap.describe()}, store {self.settings.store or default_store_path()}"

    def refused(self, exc: RuntimeUnavailable) -> NoReturn:
        """Skip or fail the current test, as ``minicontainer_unavailable`` says."""
        __tracebackhide__ = True
        if self.settings.unavailable == "skip":
            pytest.skip(f"minicontainer: containers cannot run on this host: {exc.cause} (fix: {exc.fix})")
        pytest.fail(
            f"minicontainer: containers cannot run on this host: {exc.cause}\n  fix: {exc.fix}\n"
            "  (or pass --minicontainer-unavailable=skip to skip the tests that need containers)",
            pytrace=False,
        )

    def close(self) -> None:
        self.ahead.drop()
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.close()

    def start_ahead(self, item: pytest.Item) -> None:
        """Start ``item``'s declared container and compose stack now, if it has them and an
        engine runs already."""
        if self.ahead.depth <= 0 or self._engine is None:
            return
        names = getattr(item, "fixturenames", ())
        if "container" in names:
            spec = spec_from_markers(item.iter_markers("container"))
            image = declared(item, spec, self.settings.image)
            if image is not None:
                options = spec.run_options()
                options.image = declared_image(image, self.config)
                self.ahead.start(item.nodeid, self._engine, options)
        marker = item.get_closest_marker("compose") if "compose" in names else None
        if marker is not None:
            try:
                compose = compose_spec(marker, ini_dir(self.config))
            except TypeError:
                return  # the test's setup reports the mistake
            # only a stack an earlier test loaded: loading and building are the test's own work
            stack = self._stacks.get(_stack_key(compose))
            if stack is not None:
                self.ahead.start_stack(item.nodeid, self._engine, stack, compose)

    def _resolve_image(self, reference: str) -> Image | str | None:
        hook = self.config.hook.pytest_minicontainer_resolve_image
        result: Image | str | None = hook(config=self.config, engine=self._engine, reference=reference)
        return result

    def _options(self, options: RunOptions) -> None:
        self.config.hook.pytest_minicontainer_container_options(config=self.config, options=options)

    def _started(self, container: Container) -> None:
        self.config.hook.pytest_minicontainer_container_started(config=self.config, container=container)

    def _finished(self, container: Container, exit_status: int | None) -> None:
        self.config.hook.pytest_minicontainer_container_finished(
            config=self.config, container=container, exit_status=exit_status
        )

    # -- hooks (this object is a registered plugin) ------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item,
                                nextitem: pytest.Item | None) -> Generator[None, object, object]:
        """Remember which test runs next in this process: its container may start ahead."""
        self.next_item = nextitem
        try:
            return (yield)
        finally:
            self.next_item = None

    def upcoming(self, nextitem: pytest.Item | None) -> list[pytest.Item]:
        """The tests the look-ahead starts for: ``nextitem`` and, with a depth above 1, those
        after it in the session's order.

        pytest names only the next test; without xdist the rest of the run order is the
        session's item list.  An xdist worker gets its tests from the controller as it goes,
        so there only ``nextitem`` is known: the depth is 1 under ``-n``.
        """
        if nextitem is None or self.ahead.depth <= 0:
            return []
        if self.ahead.depth == 1 or hasattr(self.config, "workerinput"):
            return [nextitem]
        items: list[pytest.Item] = nextitem.session.items
        if self._order is None or len(self._order) != len(items):
            self._order = {id(it): i for i, it in enumerate(items)}
        at = self._order.get(id(nextitem))
        if at is None or items[at] is not nextitem:
            return [nextitem]
        return items[at:at + self.ahead.depth]

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        """While this test runs, the next ones' declared containers start (``ahead``)."""
        for upcoming in self.upcoming(self.next_item):
            self.start_ahead(upcoming)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item,
                                nextitem: pytest.Item | None) -> Generator[None, object, object]:
        """A container started ahead for a test that did not take it (skipped, failed in setup,
        asked for something else) goes with that test; the coming tests' stay."""
        try:
            return (yield)
        finally:
            self.ahead.drop(keep={it.nodeid for it in self.upcoming(nextitem)})

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close()  # normally the session fixture did; this covers interrupted runs

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: every worker uses the store the controller resolved, so all share one."""
        if self.settings.store is not None:
            node.workerinput["minicontainer_store"] = self.settings.store

    def pytest_report_header(self, config: pytest.Config) -> str:
        """``minicontainer: rootless, id mapping ..., store ...``; starts nothing (see describe)."""
        return f"minicontainer: {self.describe()}"


STATE_KEY = pytest.StashKey[Session]()


def _stack_key(spec: ComposeSpec) -> tuple[Any, ...]:
    """What one session Stack serves: the file, its interpolation env and profiles (not the
    services a test starts of it)."""
    return (spec.path, spec.env, spec.profiles)


def declared_image(image: str | Image, config: pytest.Config) -> str | Image:
    """The image a test declares (marker, parametrized ``container_image``, ini key), a relative
    local path in it taken from the ini file's directory.

    So ``rootfs:tests/rootfs`` means one tree whether pytest runs from the project or from
    ``tests/``.  A path passed to ``container_factory`` in code stays relative to the working
    directory of that moment, as for ``open()``.
    """
    return anchored_reference(image, ini_dir(config)) if isinstance(image, str) else image
