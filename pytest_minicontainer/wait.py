"""Readiness: wait until a container's service can be used, or say precisely why it cannot.

A test that talks to a server must not start before the server answers.  Each strategy here
is one way to tell (a port accepts, a log line appeared, a command succeeds, the image's
HEALTHCHECK passes, an HTTP endpoint answers) and has ``.wait(container, timeout)``, so any
of them serves as the ``container`` marker's ``ready=`` or can be called directly::

    from pytest_minicontainer import wait

    wait.all_of(wait.log(r"Ready to accept connections"), wait.port(6379)).wait(c, 30)
    (wait.port(8080) & wait.http("/health", 8080)).wait(c, 30)

Every probe runs *inside* the container's network namespace (sockets come from its pid 1),
so nothing needs to be published first.  A strategy gives up early when the main process has
exited: waiting for a dead server only turns a clear failure into a slow one.  Giving up
raises :class:`~pytest_minicontainer.errors.WaitTimeout`, which carries what was awaited, the
last reason it was not ready, the main process's state and the tail of its logs.
"""

from __future__ import annotations

import http.client as _httpclient
import itertools
import re
import socket
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol

from .errors import ContainerError, ExecTimeout, WaitTimeout
from .network import LOOPBACKS

if TYPE_CHECKING:
    from ._processes import ExecResult
    from .image import Image

__all__ = ["AllOf", "Exec", "HealthCheckWait", "Http", "Log", "Port", "Strategy", "Target", "all_of", "exec",
           "health_now", "healthcheck", "http", "log", "port"]


class Target(Protocol):
    """What the strategies read from a container (a :class:`~pytest_minicontainer.Container` is
    one): a socket factory in its network namespace, its liveness, its main process's status
    and logs, ``exec`` and the image's HEALTHCHECK.  Nothing of its internals."""

    @property
    def id(self) -> str: ...

    @property
    def image(self) -> Image: ...

    @property
    def command(self) -> list[str] | None: ...

    @property
    def running(self) -> bool: ...

    @property
    def exit_status(self) -> int | None: ...

    def logs(self) -> str: ...

    def socket(self, family: str = "inet") -> socket.socket: ...

    def exec(self, cmd: str | Sequence[str], *, timeout: float | None = None) -> ExecResult: ...

#: Pause between two attempts: short at first (most services are up within ~100 ms), then
#: longer, so a slow service is not hammered with probes.
_FIRST_DELAY = 0.01
_MAX_DELAY = 0.25


class Strategy:
    """One readiness condition: subclasses implement :meth:`check` (a single attempt)."""

    def describe(self) -> str:
        """What is awaited, for messages ("port 6379", "log /ready/")."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<wait {self.describe()}>"

    def __and__(self, other: Strategy) -> AllOf:
        return AllOf(self, other)

    def check(self, container: Target, budget: float) -> str | None:
        """One attempt: None when ready, else why not.  ``budget`` bounds how long it may block."""
        raise NotImplementedError

    def wait(self, container: Target, timeout: float) -> None:
        """Poll :meth:`check` until it passes; raise WaitTimeout when ``timeout`` passes first.

        The main process's state is read *before* each attempt, so a service that printed its
        "ready" line and exited still counts as ready, while one that died never makes the
        test wait out the whole timeout.
        """
        self.poll(container, timeout, time.monotonic() + timeout)

    def reset(self) -> None:
        """Forget what earlier attempts found (called as each wait begins): a strategy that
        counts failures (``healthcheck``) starts counting again."""

    def poll(self, container: Target, timeout: float, deadline: float) -> None:
        """:meth:`wait` with a ``deadline`` (``time.monotonic()``) that :class:`AllOf` shares
        among its strategies; ``timeout`` is the whole wait's, for the message."""
        self.reset()
        start = time.monotonic()
        delay = _FIRST_DELAY
        while True:
            status = _exit_status(container)
            remaining = deadline - time.monotonic()
            try:
                reason = self.check(container, max(0.05, remaining))
            except _Unready as exc:
                raise _timeout(container, self.describe(), str(exc), timeout, start) from None
            if reason is None:
                return
            if status is not None or not container.running:
                raise _timeout(container, self.describe(), reason, timeout, start)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout(container, self.describe(), reason, timeout, None)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_DELAY)


class _Unready(Exception):
    """A check found a condition that waiting cannot fix (the image has no HEALTHCHECK...)."""


class Port(Strategy):
    """A TCP connect to ``host:number`` inside the container succeeds.

    The probe is a real connection, closed at once: a server that serves a single connection
    and exits (``nc -l``) is used up by it; wait for such a server with ``log`` instead.
    """

    def __init__(self, number: int, host: str | None = None) -> None:
        if not 0 < int(number) < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {number!r}")
        self.number = int(number)
        self.host = host  # None: 127.0.0.1, then ::1

    def describe(self) -> str:
        return f"port {self.number}"

    def check(self, container: Target, budget: float) -> str | None:
        found = _connect(container, self.host, self.number, min(budget, 2.0))
        if isinstance(found, str):
            return found
        found[0].close()
        return None


class Log(Strategy):
    """The main process's output (stdout and stderr) matches ``pattern`` (``times`` times)."""

    def __init__(self, pattern: str | re.Pattern[str], times: int = 1) -> None:
        self.pattern = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        self.times = times

    def describe(self) -> str:
        extra = f" x{self.times}" if self.times != 1 else ""
        return f"log /{self.pattern.pattern}/{extra}"

    def check(self, container: Target, budget: float) -> str | None:
        if not container.command and not container.logs():
            raise _Unready("the container has no main process, so nothing is logged (start it with command=...)")
        found = sum(1 for _ in itertools.islice(self.pattern.finditer(container.logs()), self.times))
        if found >= self.times:
            return None
        return "no line matched yet" if not found else f"matched {found} of {self.times} times"


class Exec(Strategy):
    """A command run in the container exits with status 0 (``pg_isready``, ``redis-cli ping``)."""

    def __init__(self, argv: str | Sequence[str], attempt_timeout: float = 10.0) -> None:
        self.argv: str | list[str] = argv if isinstance(argv, str) else [str(a) for a in argv]
        self.attempt_timeout = attempt_timeout

    def describe(self) -> str:
        shown = self.argv if isinstance(self.argv, str) else " ".join(self.argv)
        return f"exec {shown!r}"

    def check(self, container: Target, budget: float) -> str | None:
        return _run_check(container, self.argv, min(budget, self.attempt_timeout))


class HealthCheckWait(Strategy):
    """The image's HEALTHCHECK command passes.

    Docker runs the check every ``interval`` (30 s by default), far too slow a pace for tests,
    so this polls at the usual readiness pace, giving each run the check's own ``timeout``.
    The container counts as *unhealthy*, and the wait stops at once, only where Docker would
    have said so: ``retries`` failures in a row, no earlier than ``start_period`` plus
    ``retries`` intervals after the start.
    """

    def __init__(self, fail_unhealthy: bool = True) -> None:
        self.fail_unhealthy = fail_unhealthy
        self._failures = 0
        self._started = 0.0

    def describe(self) -> str:
        return "healthcheck"

    def reset(self) -> None:
        self._failures = 0
        self._started = time.monotonic()

    def check(self, container: Target, budget: float) -> str | None:
        hc = container.image.config.healthcheck
        argv = hc.argv() if hc is not None else None
        if hc is None or argv is None:
            what = "no HEALTHCHECK" if hc is None else "HEALTHCHECK NONE"
            raise _Unready(f"image {container.image} has {what}: use another strategy (port, log, exec, http)")
        reason = _run_check(container, argv, min(budget, hc.timeout))
        if reason is None:
            self._failures = 0
            return None
        self._failures += 1
        unhealthy_after = hc.start_period + hc.retries * hc.interval
        if (self.fail_unhealthy and self._failures >= hc.retries
                and time.monotonic() - self._started >= unhealthy_after):
            raise _Unready(f"unhealthy: {self._failures} failed checks in a row, last: {reason}")
        return reason


class Http(Strategy):
    """An HTTP GET of ``path`` on ``port`` inside the container answers with ``status``."""

    def __init__(self, path: str = "/", port: int = 80, status: int | Collection[int] = 200,
                 host: str | None = None, body: str | re.Pattern[str] | None = None) -> None:
        if not path.startswith("/"):
            raise ValueError(f"the path must start with '/', not {path!r}")
        self.path = path
        self.port = int(port)
        self.status = frozenset((status,) if isinstance(status, int) else status)
        self.host = host
        self.body = re.compile(body) if isinstance(body, str) else body

    def describe(self) -> str:
        want = "/".join(str(s) for s in sorted(self.status))
        return f"http GET :{self.port}{self.path} -> {want}"

    def check(self, container: Target, budget: float) -> str | None:
        limit = min(budget, 5.0)
        found = _connect(container, self.host, self.port, limit)
        if isinstance(found, str):
            return found
        sock, host = found
        conn = _SocketHTTPConnection(sock, host, self.port, limit)
        try:
            conn.request("GET", self.path, headers={"Connection": "close", "User-Agent": "pytest-minicontainer"})
            response = conn.getresponse()
            text = response.read(1 << 20).decode(errors="replace")
        except (OSError, _httpclient.HTTPException) as exc:
            return f"GET {self.path} failed: {type(exc).__name__}: {exc}"
        finally:
            conn.close()
        if response.status not in self.status:
            return f"GET {self.path} answered {response.status} {response.reason}"
        if self.body is not None and not self.body.search(text):
            return f"GET {self.path} answered {response.status} but the body does not match /{self.body.pattern}/"
        return None


class AllOf(Strategy):
    """Every strategy passes, checked in order, all within one shared timeout."""

    def __init__(self, *strategies: Strategy) -> None:
        if not strategies:
            raise ValueError("all_of() needs at least one strategy")
        for s in strategies:
            if not isinstance(s, Strategy):
                raise TypeError(f"all_of() takes wait strategies, not {s!r}")
        self.strategies: tuple[Strategy, ...] = tuple(
            inner for s in strategies for inner in (s.strategies if isinstance(s, AllOf) else (s,)))

    def describe(self) -> str:
        return "all of (" + ", ".join(s.describe() for s in self.strategies) + ")"

    def check(self, container: Target, budget: float) -> str | None:
        for s in self.strategies:
            reason = s.check(container, budget)
            if reason is not None:
                return f"{s.describe()}: {reason}"
        return None

    def wait(self, container: Target, timeout: float) -> None:
        """Wait for each in turn; a failure names the strategy that did not pass."""
        deadline = time.monotonic() + timeout
        for s in self.strategies:
            try:
                s.poll(container, timeout, deadline)
            except WaitTimeout as exc:
                raise WaitTimeout(exc.container_id, f"{s.describe()} (in {self.describe()})", exc.reason,
                                  timeout, exc.exit_status, exc.has_main, container.logs(), exc.elapsed) from None


class _SocketHTTPConnection(_httpclient.HTTPConnection):
    """An HTTPConnection over a socket already connected inside the container."""

    def __init__(self, sock: socket.socket, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.sock = sock

    def connect(self) -> None:  # the socket is connected already
        pass


# -- factories: the names tests read ----------------------------------------------------------
def port(number: int, host: str | None = None) -> Port:
    """Ready when ``host:number`` inside the container accepts a TCP connection."""
    return Port(number, host)


def log(pattern: str | re.Pattern[str], times: int = 1) -> Log:
    """Ready when the main process's output matches ``pattern`` (a regex, multi-line) ``times`` times."""
    return Log(pattern, times)


# ``exec`` shadows the builtin inside this module only: callers write ``wait.exec(...)``.
def exec(argv: str | Sequence[str], attempt_timeout: float = 10.0) -> Exec:
    """Ready when ``argv`` (a list, or a string for ``/bin/sh -c``) exits 0 in the container."""
    return Exec(argv, attempt_timeout)


def healthcheck(fail_unhealthy: bool = True) -> HealthCheckWait:
    """Ready when the image's HEALTHCHECK passes (an error when the image defines none)."""
    return HealthCheckWait(fail_unhealthy)


def http(path: str = "/", port: int = 80, status: int | Collection[int] = 200, *,
         host: str | None = None, body: str | re.Pattern[str] | None = None) -> Http:
    """Ready when ``GET path`` on ``port`` answers ``status`` (and its body matches ``body``)."""
    return Http(path, port, status, host, body)


def all_of(*strategies: Strategy) -> AllOf:
    """Ready when every strategy is, in order, within one timeout (also ``a & b``)."""
    return AllOf(*strategies)


# -- helpers ------------------------------------------------------------------------------------
def _connect(container: Target, host: str | None, port: int, timeout: float) -> tuple[socket.socket, str] | str:
    """(a socket connected to ``port`` inside the container, the address it reached), or why not.

    Without ``host``: 127.0.0.1, then ::1, as ``Container.connect`` and ``publish`` look.
    """
    why = ""
    for h in (host,) if host else LOOPBACKS:
        try:
            sock = container.socket("inet6" if ":" in h else "inet")
        except ContainerError as exc:
            return str(exc)
        sock.settimeout(timeout)
        try:
            sock.connect((h, port))
        except OSError as exc:
            sock.close()
            why += f"{'; ' if why else ''}connecting to {h}:{port} failed: {exc.strerror or exc}"
            continue
        return sock, h
    return why


def _exit_status(container: Target) -> int | None:
    return container.exit_status


def health_now(container: Target, timeout: float = 5.0) -> str:
    """The image's healthcheck, run once now: "passing" or "failing: why"; "" for an image
    without one or a container that no longer runs (failure reports show it)."""
    hc = container.image.config.healthcheck
    argv = hc.argv() if hc is not None else None
    if hc is None or argv is None or not container.running:
        return ""
    reason = _run_check(container, argv, min(hc.timeout, timeout))
    return "passing" if reason is None else f"failing: {reason}"


def _run_check(container: Target, argv: str | list[str], timeout: float) -> str | None:
    try:
        result = container.exec(argv, timeout=max(0.05, timeout))
    except ExecTimeout:
        return f"the check ran longer than {timeout:g}s"
    except ContainerError as exc:
        return f"the check could not run: {exc}"
    if result.returncode == 0:
        return None
    out = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
    return f"exited with status {result.returncode}" + (f": {' | '.join(out)}" if out else "")


def _timeout(container: Target, what: str, reason: str, timeout: float, start: float | None) -> WaitTimeout:
    status = _exit_status(container)
    elapsed = None if start is None else time.monotonic() - start
    if status is None and not container.running:
        reason += " (the container is stopped)"
    return WaitTimeout(container.id, what, reason, timeout, status, bool(container.command),
                       container.logs(), elapsed)
