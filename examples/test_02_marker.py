"""The ``container`` marker configures the ``container`` fixture.

Markers combine key by key and the closest one wins: here the module picks the environment
and one test overrides a single key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_minicontainer import Container, wait

pytestmark = pytest.mark.container(env={"GREETING": "hello"}, workdir="/tmp")


def test_module_options_apply(container: Container) -> None:
    assert container.exec("echo $GREETING from $(pwd)").stdout == "hello from /tmp\n"


@pytest.mark.container(workdir="/")
def test_a_closer_marker_overrides_one_key(container: Container) -> None:
    assert container.exec("echo $GREETING from $(pwd)").stdout == "hello from /\n"


def _flag_file_exists(c: Container) -> bool:
    return c.exec(["test", "-e", "/tmp/mc-example-ready"]).returncode == 0


@pytest.mark.container(
    command=["sh", "-c", "sleep 0.2; touch /tmp/mc-example-ready; sleep 600"],
    ready=_flag_file_exists,
    timeout=10,
)
def test_wait_until_a_check_passes(container: Container) -> None:
    """``command`` starts a main process; ``ready`` makes the fixture wait until it is up.

    Any callable taking the container works: it is polled until it returns true.
    """
    assert container.running
    assert _flag_file_exists(container)


@pytest.mark.container(
    command=["sh", "-c", "sleep 0.2; echo 'listening'; sleep 600"],
    ready=wait.log("listening"),
    timeout=10,
)
def test_wait_with_a_strategy(container: Container) -> None:
    """The ``wait`` module has ready-made strategies: log lines, ports, HTTP, commands."""
    assert "listening" in container.logs()


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    (tmp_path / "input.txt").write_text("from the host\n")
    return tmp_path


def test_mounts(container_factory: Callable[..., Container], shared_dir: Path) -> None:
    """Markers take static values; for a per-test path, pass options to ``container_factory``."""
    c = container_factory(mounts=[f"{shared_dir}:/data:ro"])
    assert c.read_text("/data/input.txt") == "from the host\n"
    assert c.exec("echo x > /data/new").returncode != 0  # read-only
