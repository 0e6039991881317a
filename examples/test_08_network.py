"""Networks: an app container reaches its database by name, as on a Docker or compose network.

* ``network="backend"`` (the marker's, or ``container_factory``'s) puts a container on a
  private network that belongs to **this test**: every test (and every xdist worker) that says
  "backend" gets its own, so parallel tests never see each other's services.
* ``aliases=[...]`` are extra names; every member is also found by its hostname and its id,
  through an ``/etc/hosts`` that the network keeps current as members come and go.
* ``container.ip`` is the member's address; nothing outside the network reaches it, and
  ``connect()``, ``publish()`` and the readiness waits work as for any container.
* A session fixture can share one network on purpose: ``minicontainer.network("shared")``.

The "database" here is busybox ``nc`` answering every connection with a line.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pytest_minicontainer import Container, wait

# -ll: a server that goes on after the first connection; -e: what each connection gets
DATABASE = ["nc", "-ll", "-p", "5432", "-e", "echo", "hello from the database"]


def query(client: Container, host: str) -> str:
    """What ``host:5432`` says to ``client`` (the app's side of the conversation)."""
    return client.exec(f"nc -w 5 {host} 5432 </dev/null", timeout=30).stdout.strip()


@pytest.mark.container("busybox", command=DATABASE, network="backend", aliases=["db"], ready=wait.port(5432))
def test_the_app_finds_its_database_by_name(container: Container,
                                            container_factory: Callable[..., Container]) -> None:
    app = container_factory("busybox", network="backend")
    assert query(app, "db") == "hello from the database"
    assert query(app, container.ip) == "hello from the database"


def test_only_members_reach_it(container_factory: Callable[..., Container]) -> None:
    db = container_factory("busybox", command=DATABASE, network="backend", aliases=["db"], ready=wait.port(5432))
    outsider = container_factory("busybox", network="frontend")  # another network of this test
    assert query(outsider, "db") == ""  # the name means nothing there
    assert query(outsider, db.ip) == ""  # and the address leads nowhere
