"""Readiness strategies against a stand-in container: polling, composition and failure messages.

The strategies only use a handful of container facts (its main process's state, its logs, a
socket from its network namespace, exec, the image's HEALTHCHECK), so a fake that provides
them with host sockets and scripted results checks the logic without namespaces; the
integration tests run the same strategies against real servers in real containers.
"""

from __future__ import annotations

import http.server
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_minicontainer import ContainerError, ExecResult, ExecTimeout, HealthCheck, WaitTimeout, wait
from tests.conftest import http_server


class FakeMain:
    def __init__(self) -> None:
        self.status: int | None = None

    def wait(self, timeout: float | None = None) -> int | None:
        return self.status


@dataclass
class FakeRuntime:
    alive: bool = True

    def socket(self, family: str = "inet") -> socket.socket:
        return socket.socket(socket.AF_INET6 if family == "inet6" else socket.AF_INET)


@dataclass
class FakeConfig:
    healthcheck: HealthCheck | None = None


@dataclass
class FakeImage:
    config: FakeConfig = field(default_factory=FakeConfig)

    def __str__(self) -> str:
        return "fake-image"


class FakeContainer:
    """What the strategies read from a Container, scripted by the test."""

    def __init__(self, main: bool = True) -> None:
        self.id = "fake0001"
        self._main: FakeMain | None = FakeMain() if main else None
        self._rt = FakeRuntime()
        self.image = FakeImage()
        self.log_text = ""
        self.exec_results: list[Any] = []
        self.exec_calls: list[tuple[Any, float | None]] = []

    # the narrow interface the strategies use (wait.Target), scripted through _main and _rt
    @property
    def command(self) -> list[str] | None:
        return ["main"] if self._main is not None else None

    @property
    def exit_status(self) -> int | None:
        return None if self._main is None else self._main.status

    @property
    def running(self) -> bool:
        return self._rt.alive and self.exit_status is None

    def socket(self, family: str = "inet") -> socket.socket:
        return self._rt.socket(family)

    def logs(self) -> str:
        return self.log_text

    def exec(self, cmd: Any, *, timeout: float | None = None) -> ExecResult:
        self.exec_calls.append((cmd, timeout))
        result = self.exec_results.pop(0) if len(self.exec_results) > 1 else self.exec_results[0]
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, ExecResult)
        return result


def ok() -> ExecResult:
    return ExecResult(0, "", "")


def failed(message: str = "connection refused") -> ExecResult:
    return ExecResult(1, "", message + "\n")


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/health" else 404
        body = b"all good\n" if code == 200 else b"nope\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


@pytest.fixture
def http_port() -> Iterator[int]:
    with http_server(_Handler) as port:
        yield port


def wait_for(strategy: wait.Strategy, c: FakeContainer, timeout: float = 0.3) -> None:
    strategy.wait(c, timeout)  # type: ignore[arg-type]


# -- port ----------------------------------------------------------------------------------------
def test_port_is_ready_when_it_accepts(listening_port: int) -> None:
    wait_for(wait.port(listening_port), FakeContainer())


def test_port_timeout_says_what_why_and_shows_the_logs(closed_port: int) -> None:
    c = FakeContainer()
    c.log_text = "booting\nloading config\nstill loading\n"
    with pytest.raises(WaitTimeout) as info:
        wait_for(wait.port(closed_port), c)
    err = info.value
    text = str(err)
    assert f"port {closed_port} timed out after 0.3s" in text
    assert "Connection refused" in text
    assert "the main process is still running" in text
    assert "still loading" in text and "loading config" in text
    assert err.exit_status is None and not err.exited and err.logs_tail[-1] == "still loading"
    assert isinstance(err, ContainerError)


def test_a_dead_main_process_ends_the_wait_at_once(closed_port: int) -> None:
    c = FakeContainer()
    c.log_text = "fatal: cannot bind\n"
    assert c._main is not None
    c._main.status = 3
    with pytest.raises(WaitTimeout) as info:
        wait_for(wait.port(closed_port), c, timeout=60)  # would hang a minute if it waited on
    assert info.value.exit_status == 3 and info.value.exited
    assert "the main process exited with status 3" in str(info.value)
    assert "gave up after" in str(info.value) and "fatal: cannot bind" in str(info.value)


def test_without_a_main_process_the_message_says_so(closed_port: int) -> None:
    with pytest.raises(WaitTimeout, match="the container has no main process"):
        wait_for(wait.port(closed_port), FakeContainer(main=False))


def test_port_range_is_checked() -> None:
    with pytest.raises(ValueError, match="between 1 and 65535"):
        wait.port(70000)


# -- log -----------------------------------------------------------------------------------------
def test_log_matches_a_regex_over_lines() -> None:
    c = FakeContainer()
    c.log_text = "starting\n* Ready to accept connections tcp\n"
    wait_for(wait.log(r"^\* Ready to accept"), c)


def test_log_counts_occurrences() -> None:
    c = FakeContainer()
    c.log_text = "ready\n"
    with pytest.raises(WaitTimeout, match=r"log /ready/ x2 timed out .*matched 1 of 2 times"):
        wait_for(wait.log("ready", times=2), c)
    c.log_text += "ready\n"
    wait_for(wait.log("ready", times=2), c)


def test_a_log_line_printed_before_exit_still_counts() -> None:
    c = FakeContainer()
    c.log_text = "migration done\n"
    assert c._main is not None
    c._main.status = 0
    wait_for(wait.log("done"), c)


def test_log_without_a_main_process_fails_at_once() -> None:
    with pytest.raises(WaitTimeout, match="no main process, so nothing is logged"):
        wait_for(wait.log("x"), FakeContainer(main=False), timeout=60)


# -- exec ----------------------------------------------------------------------------------------
def test_exec_polls_until_the_command_succeeds() -> None:
    c = FakeContainer()
    c.exec_results = [failed(), failed(), ok()]
    wait_for(wait.exec(["redis-cli", "ping"]), c, timeout=5)
    assert [cmd for cmd, _ in c.exec_calls] == [["redis-cli", "ping"]] * 3


def test_exec_failure_shows_the_command_output() -> None:
    c = FakeContainer()
    c.exec_results = [failed("no server on socket")]
    with pytest.raises(WaitTimeout, match=r"exec 'pg_isready' timed out .*status 1: no server on socket"):
        wait_for(wait.exec(["pg_isready"]), c)


def test_a_hanging_check_counts_as_not_ready() -> None:
    c = FakeContainer()
    c.exec_results = [ExecTimeout(["sleep"], 0.1)]
    with pytest.raises(WaitTimeout, match="ran longer than"):
        wait_for(wait.exec("sleep 100", attempt_timeout=0.1), c)
    assert all(t is not None and t <= 0.3 for _, t in c.exec_calls)


# -- healthcheck ---------------------------------------------------------------------------------
def test_healthcheck_runs_the_image_command_with_its_timeout() -> None:
    c = FakeContainer()
    c.image.config.healthcheck = HealthCheck(("CMD-SHELL", "wget -q -O- localhost/health"), timeout=2.0)
    c.exec_results = [failed(), ok()]
    wait_for(wait.healthcheck(), c, timeout=5)
    assert c.exec_calls[0][0] == ["/bin/sh", "-c", "wget -q -O- localhost/health"]
    assert all(t is not None and t <= 2.0 for _, t in c.exec_calls)


def test_healthcheck_reports_unhealthy_only_when_docker_would() -> None:
    c = FakeContainer()
    c.image.config.healthcheck = HealthCheck(("CMD", "false"), interval=0.01, retries=2)
    c.exec_results = [failed("down")]
    with pytest.raises(WaitTimeout, match=r"unhealthy: \d+ failed checks in a row, last: exited with status 1: down"):
        wait_for(wait.healthcheck(), c, timeout=60)


def test_healthcheck_in_its_start_period_is_not_unhealthy_yet() -> None:
    c = FakeContainer()
    c.image.config.healthcheck = HealthCheck(("CMD", "false"), interval=0.01, retries=1, start_period=60)
    c.exec_results = [failed("down")]
    with pytest.raises(WaitTimeout) as info:
        wait_for(wait.healthcheck(), c, timeout=0.3)
    assert "timed out after 0.3s" in str(info.value) and "unhealthy" not in str(info.value)


@pytest.mark.parametrize("hc", [None, HealthCheck(("NONE",))])
def test_healthcheck_without_one_in_the_image_says_so(hc: HealthCheck | None) -> None:
    c = FakeContainer()
    c.image.config.healthcheck = hc
    with pytest.raises(WaitTimeout, match=r"image fake-image has (no HEALTHCHECK|HEALTHCHECK NONE)"):
        wait_for(wait.healthcheck(), c, timeout=60)


# -- http ----------------------------------------------------------------------------------------
def test_http_status_and_body(http_port: int) -> None:
    c = FakeContainer()
    wait_for(wait.http("/health", http_port), c)
    wait_for(wait.http("/health", http_port, body="all good"), c)
    wait_for(wait.http("/missing", http_port, status=404), c)
    wait_for(wait.http("/missing", http_port, status=(200, 404)), c)


def test_http_wrong_status_is_in_the_message(http_port: int) -> None:
    with pytest.raises(WaitTimeout, match=r"http GET :\d+/missing -> 200 timed out .*answered 404"):
        wait_for(wait.http("/missing", http_port), FakeContainer())


def test_http_body_mismatch_is_in_the_message(http_port: int) -> None:
    with pytest.raises(WaitTimeout, match="body does not match /ready/"):
        wait_for(wait.http("/health", http_port, body="ready"), FakeContainer())


def test_http_refused(closed_port: int) -> None:
    with pytest.raises(WaitTimeout, match="Connection refused"):
        wait_for(wait.http("/", closed_port), FakeContainer())


# -- composition ---------------------------------------------------------------------------------
def test_all_of_waits_for_each_and_names_the_one_that_failed(listening_port: int, closed_port: int) -> None:
    c = FakeContainer()
    c.log_text = "up\n"
    wait_for(wait.all_of(wait.log("up"), wait.port(listening_port)), c)
    with pytest.raises(WaitTimeout) as info:
        wait_for(wait.log("up") & wait.port(closed_port), c)
    assert f"port {closed_port} (in all of (log /up/, port {closed_port}))" in str(info.value)


def test_and_flattens() -> None:
    combined = wait.port(1) & wait.port(2) & wait.log("x")
    assert isinstance(combined, wait.AllOf) and len(combined.strategies) == 3


def test_all_of_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        wait.all_of()
    with pytest.raises(TypeError, match="wait strategies"):
        wait.all_of(lambda c: True)  # type: ignore[arg-type]


def test_a_stopped_container_is_named_in_the_message(closed_port: int) -> None:
    c = FakeContainer(main=False)
    c._rt.alive = False
    with pytest.raises(WaitTimeout, match="the container is stopped"):
        wait_for(wait.port(closed_port), c, timeout=60)

