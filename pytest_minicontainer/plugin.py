"""The ``pytest11`` entry point: options and ini keys, the marker, hooks, header and reports.

Nothing here imports the engine: a run whose tests use no container only pays for parsing
options.  The engine is created by the ``minicontainer`` fixture the first time a test needs it
(:mod:`pytest_minicontainer.fixtures`).

Each command-line option has an ini key of the same name with ``_`` (the option wins), so a
project sets its defaults in ``pyproject.toml`` and a developer overrides them per run.
Settings reach the Engine as its arguments (``session.Settings``); the plugin writes no
environment variable (xdist workers read the same ini file and inherit the same environment).
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .ahead import Ahead
from .fixtures import CONTAINERS_KEY, REPORTS_KEY, Tracked, exit_status
from .fixtures import compose as compose
from .fixtures import container as container
from .fixtures import container_factory as container_factory
from .fixtures import container_image as container_image
from .fixtures import minicontainer as minicontainer
from .image import Image
from .markers import COMPOSE_SIGNATURE, MARKER_SIGNATURE, iter_problems
from .paths import CACHE_FROM_ENV, CACHE_TO_ENV
from .session import PLUGIN_NAME, STATE_KEY, Session, Settings, anchored_reference, ini_dir

if TYPE_CHECKING:
    from .images.registry import RegistryOptions

PULL = ("missing", "always", "never")
#: The deepest look-ahead: more containers starting at once than that only compete with the
#: running test for the CPU (see the README's benchmark of the look-ahead's depth).
MAX_AHEAD = 4
KEEP = ("never", "failed", "always")
UNAVAILABLE = ("error", "skip")
#: How many log lines and changed paths a failure report shows per container.
LOG_LINES = 10
DIFF_LINES = 20
KEPT_SECTION = "minicontainer kept"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("minicontainer", "throw-away containers (pytest-minicontainer)")

    def add(name: str, help: str, default: str | None, choices: tuple[str, ...] | None = None) -> None:
        ini = "minicontainer_" + name.replace("-", "_")
        if choices:
            help = f"{help} ({'|'.join(choices)}, default {default})"
        group.addoption(f"--minicontainer-{name}", dest=ini, default=None, choices=choices, help=help,
                        metavar=None if choices else "DIR")
        parser.addini(ini, help, default=default)

    add("store", "directory of the image store, shared by all xdist workers; default "
        "$MINICONTAINER_STORE, else ~/.cache/pytest-minicontainer", None)
    add("pull", "when to fetch a named image from its registry", "missing", PULL)
    add("keep", "keep containers' writable layers after their tests, and print where", "never", KEEP)
    add("unavailable", "what tests that need containers do on a host that cannot run them",
        "error", UNAVAILABLE)
    group.addoption("--minicontainer-ahead", dest="minicontainer_ahead", default=None, metavar="N",
                    help="start the next N tests' declared containers while the current test runs: 1 (the "
                    f"default) to {MAX_AHEAD}, or 0 (off); without xdist only (a worker knows only its next "
                    "test); ini minicontainer_ahead")
    parser.addini("minicontainer_ahead", f"start the next N tests' declared containers ahead: 1 (default) to "
                  f"{MAX_AHEAD}, or 0",
                  default="1")
    parser.addini("minicontainer_image", "default image of the `container` fixture (default host)",
                  default="host")
    parser.addini("minicontainer_registry_mirror", "a Docker Hub mirror (host[:port]) tried first, falling "
                  "back to Docker Hub; $MINICONTAINER_REGISTRY_MIRROR wins", default="")
    parser.addini("minicontainer_registry_timeout", "seconds one registry request may wait for an answer "
                  "(default 30); $MINICONTAINER_REGISTRY_TIMEOUT wins", default="")
    parser.addini("minicontainer_max_layer_size", "what one image layer may unpack to (e.g. 64G; default 32G); "
                  "$MINICONTAINER_MAX_LAYER_SIZE wins", default="")
    group.addoption("--minicontainer-cache-from", dest="minicontainer_cache_from", action="append", default=None,
                    metavar="REF", help="a registry build cache every build of the session takes steps from "
                    "(repeatable; ini minicontainer_cache_from; default $MINICONTAINER_CACHE_FROM)")
    group.addoption("--minicontainer-cache-to", dest="minicontainer_cache_to", default=None, metavar="REF",
                    help="a registry name every build of the session writes its steps to as a cache "
                    "(ini minicontainer_cache_to; default $MINICONTAINER_CACHE_TO)")
    parser.addini("minicontainer_cache_from", "registry build caches builds take steps from (one per line)",
                  type="linelist", default=[])
    parser.addini("minicontainer_cache_to", "a registry name builds write their steps to as a cache", default="")
    parser.addini("minicontainer_insecure_registries", "registries (host[:port]) reachable over plain HTTP "
                  "besides loopback ones; $MINICONTAINER_INSECURE_REGISTRIES wins", type="linelist", default=[])


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspec

    pluginmanager.add_hookspecs(hookspec)


def _setting(config: pytest.Config, name: str, choices: tuple[str, ...] | None = None) -> str | None:
    value = config.getoption(name, None)
    if value is None:
        value = config.getini(name) or None
        if value is not None and choices and value not in choices:
            raise pytest.UsageError(f"ini key {name} = {value!r}: must be one of {', '.join(choices)}")
    return value  # type: ignore[no-any-return]


def _store(config: pytest.Config) -> str | None:
    """Option (relative to the invocation dir), else ini (relative to the ini file), else env."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and "minicontainer_store" in workerinput:
        return workerinput["minicontainer_store"]  # type: ignore[no-any-return]  # the controller decided
    option = config.getoption("minicontainer_store")
    if option:
        return str(config.invocation_params.dir / Path(option).expanduser())
    ini = config.getini("minicontainer_store")
    if ini:
        return str(ini_dir(config) / Path(ini).expanduser())
    return os.environ.get("MINICONTAINER_STORE") or None


def _default_image(config: pytest.Config) -> str:
    """The ini key's image, a local path in it taken relative to the ini file (as the store's).

    Otherwise ``rootfs:tests/rootfs`` would work from the project's root and not from ``tests/``
    with the same ini file.
    """
    return anchored_reference(str(config.getini("minicontainer_image") or "host").strip(), ini_dir(config))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{COMPOSE_SIGNATURE}: the compose file whose services the test's `compose` fixture starts "
        "(a fresh stack per test; relative paths from the ini file's directory)",
    )
    config.addinivalue_line(
        "markers",
        f"{MARKER_SIGNATURE}: options of the test's `container` fixture; markers combine key by "
        "key, the closest (function > class > module) wins.",
    )
    settings = Settings(
        store=_store(config),
        pull=_setting(config, "minicontainer_pull", PULL) or "missing",
        keep=_setting(config, "minicontainer_keep", KEEP) or "never",
        image=_default_image(config),
        unavailable=_setting(config, "minicontainer_unavailable", UNAVAILABLE) or "error",
        cache_from=_cache_from(config),
        cache_to=_cache_to(config),
        registry=_registry_options(config),
        max_layer_size=_max_layer_size(config),
    )
    session = Session(config, settings)
    session.ahead = Ahead(_ahead(config))
    config.stash[STATE_KEY] = session
    config.pluginmanager.register(session, PLUGIN_NAME)
    config.pluginmanager.register(KeptSummary(), "minicontainer-kept-summary")


def _ahead(config: pytest.Config) -> int:
    """``--minicontainer-ahead`` / ini ``minicontainer_ahead``: how many tests ahead (0 to MAX_AHEAD)."""
    value = config.getoption("minicontainer_ahead") or config.getini("minicontainer_ahead") or "1"
    try:
        depth = int(str(value))
    except ValueError:
        depth = -1
    if not 0 <= depth <= MAX_AHEAD:
        raise pytest.UsageError(f"minicontainer_ahead = {value!r}: give how many tests ahead to start containers"
                                f" for, 1 (the next test, the default) to {MAX_AHEAD}, or 0 (off)")
    return depth


def _cache_from(config: pytest.Config) -> tuple[str, ...] | None:
    """The registry build caches every build of the session takes steps from: the options, else
    ``$MINICONTAINER_CACHE_FROM``, else the ini key; None for none of them (the engine's default).

    Passed to the Engine (``Engine(cache_from=)``), not written to ``os.environ``: each xdist
    worker reads the same options, ini file and inherited environment, so all agree.
    """
    option: list[str] = config.getoption("minicontainer_cache_from") or []
    if option:
        return tuple(option)
    if os.environ.get(CACHE_FROM_ENV):
        return tuple(os.environ[CACHE_FROM_ENV].replace(",", " ").split())
    ini: list[str] = config.getini("minicontainer_cache_from")
    return tuple(ini) if ini else None


def _cache_to(config: pytest.Config) -> str | None:
    """Where every build of the session writes its steps as a cache (as :func:`_cache_from`)."""
    value = config.getoption("minicontainer_cache_to") or os.environ.get(CACHE_TO_ENV) or \
        config.getini("minicontainer_cache_to")
    return str(value) if value else None


def _registry_options(config: pytest.Config) -> RegistryOptions | None:
    """The registry ini keys (mirror, insecure registries, timeout) as the Engine's ``registry``.

    Each variable of the environment that is set wins over its ini key, as the option does over
    the ini key elsewhere; None when no key is set (the engine then reads the environment).
    Passed to the Engine, not written to ``os.environ``: each xdist worker reads the same ini
    file and inherited environment, so all agree.  A bad timeout stops the run at its start.
    """
    mirror = config.getini("minicontainer_registry_mirror")
    insecure: list[str] = config.getini("minicontainer_insecure_registries")
    timeout = config.getini("minicontainer_registry_timeout")
    if not mirror and not insecure and not timeout:
        return None
    from .errors import ImageError
    from .images.registry import INSECURE_ENV, MIRROR_ENV, TIMEOUT_ENV, RegistryOptions

    ini = {MIRROR_ENV: str(mirror), INSECURE_ENV: ",".join(insecure), TIMEOUT_ENV: str(timeout)}
    merged = {name: os.environ.get(name) or value for name, value in ini.items()}
    try:
        return RegistryOptions.from_env(merged)
    except ImageError as exc:
        source = "" if os.environ.get(TIMEOUT_ENV) else " (ini minicontainer_registry_timeout)"
        raise pytest.UsageError(f"{exc}{source}") from None


def _max_layer_size(config: pytest.Config) -> int | None:
    """Ini ``minicontainer_max_layer_size`` in bytes (``64G``), as the Engine's ``max_layer_size``.

    None when ``$MINICONTAINER_MAX_LAYER_SIZE`` is set (it wins, and the engine reads it) or the
    key is not; like :func:`_registry_options`, never written to the environment.
    """
    value = str(config.getini("minicontainer_max_layer_size") or "").strip()
    if not value:
        return None
    from .errors import ImageError
    from .images import MAX_LAYER_ENV, max_layer_size  # only when the key is set: a run without pays nothing

    if os.environ.get(MAX_LAYER_ENV):
        return None

    try:
        return max_layer_size({MAX_LAYER_ENV: value})
    except ImageError:
        raise pytest.UsageError(f"ini key minicontainer_max_layer_size = {value!r} is not a size: give bytes or"
                                " a number with K, M, G or T (e.g. 64G), or leave it out for the default of 32G"
                                ) from None


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Show the image in test ids when ``container_image`` is parametrized with Image objects."""
    if argname == "container_image" and isinstance(val, Image):
        return str(val)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Turn bad ``container`` markers into a collection error naming each test and the problem.

    A collection error (rather than a ``UsageError``) is what pytest itself gives for an
    unknown marker under ``--strict-markers``, and it reaches the terminal under xdist too.
    """
    report: pytest.CollectReport = yield
    if report.outcome != "passed":
        return report
    problems = [
        f"{item.nodeid}: @pytest.mark.container: {problem}"
        for item in report.result
        if isinstance(item, pytest.Item)
        for problem in iter_problems(item.iter_markers("container"))
    ]
    if problems:
        report.outcome = "failed"
        report.result = []
        report.longrepr = (
            "invalid container marker" + ("s" if len(problems) > 1 else "") + ":\n  "
            + "\n  ".join(dict.fromkeys(problems))
            + f"\n  signature: @pytest.mark.{MARKER_SIGNATURE}"
        )
    return report


def _describe(tracked: Tracked) -> str:
    """The failure-report section of one container: what ran, what it said, what it changed."""
    c = tracked.container

    def attempt(what: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # a broken container must not hide the test's own failure
            return f"<{what} unavailable: {type(exc).__name__}: {exc}>"

    lines = [f"image:   {c.image} ({c.image.digest.split(':', 1)[0]}:{c.image.short_id})"]
    if tracked.ahead_ms is not None:
        lines.append(f"started: {tracked.ahead_ms:.0f} ms before the test (--minicontainer-ahead: its clock and"
                     " logs began then)")
    if c.ip is not None:
        names = ", ".join((c.hostname, *c.aliases))
        lines.append(f"network: {c.network}, address {c.ip}, names {names}")
    from .wait import health_now  # the report is made only when a test used containers

    health = attempt("health", lambda: health_now(c))
    if health:
        lines.append(f"health:  {health}")
    status = attempt("status", lambda: exit_status(c))
    if c.command is None or list(c.command) == []:
        lines.append("command: none (exec only)")
    else:
        state = "still running" if status is None else f"exit status {status}"
        lines.append(f"command: {shlex.join(c.command)}  ->  {state}")
    logs = attempt("logs", c.logs)
    if isinstance(logs, str) and logs.strip():
        tail = logs.rstrip("\n").splitlines()
        lines.append(f"logs (last {min(LOG_LINES, len(tail))} of {len(tail)} lines):")
        lines += [f"  | {line}" for line in tail[-LOG_LINES:]]
    changes = attempt("diff", c.diff)
    if isinstance(changes, str):
        lines.append(changes)
    elif changes:
        lines.append(f"changes ({len(changes)}):")
        lines += [f"  {ch.kind} {ch.path}" for ch in changes[:DIFF_LINES]]
        if len(changes) > DIFF_LINES:
            lines.append(f"  ... and {len(changes) - DIFF_LINES} more")
    else:
        lines.append("changes: none")
    if tracked.kept is not None:
        lines.append(f"kept:    {tracked.kept}")
        lines.append(f"shell:   {tracked.shell}")
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report (for keep=failed) and add container sections to failures.

    The sections are built here, while the containers still run: the fixtures remove them
    during teardown, after this report is made.
    """
    report: pytest.TestReport = yield
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    tracked = item.stash.get(CONTAINERS_KEY, [])
    if tracked and report.when in ("setup", "call") and report.failed:
        keep = item.config.stash[STATE_KEY].settings.keep != "never"
        for t in tracked:
            if keep:
                # A layer that cannot be kept must not hide the report of the test's failure.
                with contextlib.suppress(Exception):
                    t.keep()
            what = f"service {t.service}, " if t.service else ""
            report.sections.append((f"minicontainer {what}{t.container.id} ({t.container.image})", _describe(t)))
    elif tracked and report.when == "teardown":
        kept = [t for t in tracked if t.kept is not None]
        if kept:
            report.sections.append((KEPT_SECTION, "\n".join(
                f"{t.container.id} ({t.container.image}): {t.kept}\n  shell: {t.shell}" for t in kept
            )))
    return report


class KeptSummary:
    """Lists kept containers at the end of the run, whichever process ran their tests.

    It reads the ``minicontainer kept`` section of teardown reports, which xdist ships from
    the workers to the controller, so the list is complete with ``-n``.
    """

    def __init__(self) -> None:
        self.kept: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            self.kept += [(report.nodeid, text) for name, text in report.sections if name == KEPT_SECTION]

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.kept:
            return
        tr = terminalreporter
        tr.write_sep("=", f"minicontainer: kept the writable layers of {len(self.kept)} test(s)")
        for nodeid, text in self.kept:
            tr.write_line(nodeid)
            for line in text.splitlines():
                tr.write_line("  " + line)
