"""Start here: the ``container`` fixture gives each test a clean, throw-away container.

With no marker the image is ``host``: a read-only view of this machine's system with a
writable layer of its own, so the host's tools (and ``python3``) run isolated and nothing a
test writes reaches the host.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pytest_minicontainer import Container


def test_run_a_command(container: Container) -> None:
    result = container.exec(["echo", "hello from a container"])
    assert result.returncode == 0
    assert result.stdout == "hello from a container\n"


def test_a_string_is_a_shell_command(container: Container) -> None:
    result = container.exec("echo $((6 * 7)) && exit 3")
    assert (result.returncode, result.stdout) == (3, "42\n")


def test_the_container_has_its_own_hostname_and_processes(container: Container) -> None:
    assert container.exec("hostname").stdout.strip() != socket.gethostname()
    # Only the container's own processes are visible: its pid 1 and this `ps`-like listing.
    pids = [p for p in container.exec("ls /proc").stdout.split() if p.isdigit()]
    assert "1" in pids
    assert len(pids) < 10


def test_writes_stay_in_the_container(container: Container, tmp_path: Path) -> None:
    container.write_text("/etc/written-by-a-test", "only in this container\n")
    assert container.read_text("/etc/written-by-a-test") == "only in this container\n"
    assert not Path("/etc/written-by-a-test").exists()
    # diff() lists what the test changed, as the failure report shows it.
    assert ("A", "/etc/written-by-a-test") in [(c.kind, c.path) for c in container.diff()]


def test_the_hosts_python_runs_inside(container: Container) -> None:
    result = container.exec(["python3", "-c", "import sys; print(sys.version_info[0])"], check=True)
    assert result.stdout == "3\n"
