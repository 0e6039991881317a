"""Networks in pytest (issue 17): a network name in the marker or ``container_factory`` is the
test's own, so parallel tests never see each other's services; failure reports name it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.conftest import RunPytest

SUITE = """
import pytest

SERVE = ["nc", "-ll", "-p", "7000", "-e", "sh", "-c", "echo pong from $(hostname)"]

def ask(client, host):
    for _ in range(100):  # until the server listens
        got = client.exec(f"nc -w 2 {host} 7000 </dev/null", timeout=30).stdout.strip()
        if got:
            return got
    return ""

@pytest.mark.parametrize("n", range(4))
def test_own_backend(container_factory, n):
    db = container_factory(command=SERVE, network="backend", aliases=["db"], hostname=f"db{n}")
    app = container_factory(command=(), network="backend")
    assert ask(app, "db") == f"pong from db{n}"  # this test's db, never another's
    members = [c for c in (db, app)]
    assert {c.network for c in members} == {db.network}
    assert db.network == f"backend [test_each_test_has_its_own_named_network.py::test_own_backend[{n}]]"
    assert db.ip != app.ip

@pytest.mark.container(command=SERVE, network="backend", aliases=["svc"])
def test_marker(container, container_factory):
    client = container_factory(command=(), network="backend")
    assert ask(client, "svc").startswith("pong from ")

@pytest.fixture(scope="session")
def shared(minicontainer):
    with minicontainer.network("shared") as net:  # one network for the whole session, on purpose
        yield net

@pytest.mark.parametrize("n", range(2))
def test_session_network(container_factory, shared, n):
    svc = container_factory(command=SERVE, network=shared, aliases=[f"svc{n}"])
    assert svc.network == "shared" and svc.ip in [str(h) for h in shared.subnet.hosts()]
    client = container_factory(command=(), network=shared)
    assert ask(client, f"svc{n}").startswith("pong from ")

def test_fails_with_network_in_report(container_factory):
    db = container_factory(command=SERVE, network="backend", aliases=["db"], hostname="dbhost")
    assert ask(db, "db") == "nothing"  # fails, with the network in the report
"""


def test_each_test_has_its_own_named_network(crun: RunPytest, pytester: pytest.Pytester,
                                             busybox_rootfs: Path) -> None:
    pytester.makeini(f"[pytest]\nminicontainer_image = rootfs:{busybox_rootfs}\n")
    pytester.makepyfile(SUITE)
    for args in ((), ("-n", "2")):
        result = crun(*args)
        result.assert_outcomes(passed=7, failed=1)
        out = result.stdout.str()
        own = "network: backend [test_each_test_has_its_own_named_network.py::test_fails_with_network_in_report]"
        assert own in out, out
        assert "names dbhost, db" in out
