"""``@pytest.mark.compose`` and the ``compose`` fixture (issue 18): a fresh stack per test, under
``-n 2`` too; the failure report has a section per service."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.conftest import RunPytest
from tests.integration.test_compose_stack import write_project

SUITE = """
import pytest

@pytest.mark.compose("shop", env={{"ROOTFS": {rootfs!r}}})
@pytest.mark.parametrize("n", range(4))
def test_own_stack(compose, n):
    db, app = compose["db"], compose["app"]
    assert app.exec("nc -w 2 db 5432 </dev/null", timeout=30).stdout.strip() == "db says hello"
    db.write_text("/var/lib/db/owner", str(n))  # another test's stack never sees it
    assert app.exec("ls /var/lib/db 2>/dev/null; true").stdout == ""  # the app has no volume
    assert db.read_text("/var/lib/db/owner") == str(n)

@pytest.mark.compose("shop", services=["db"], env={{"ROOTFS": {rootfs!r}}})
def test_fails(compose):
    assert set(compose) == {{"db"}}
    assert compose["db"].exec("echo broken").stdout == "fine"

def test_no_marker(compose):
    pass
"""


def test_a_fresh_stack_per_test(crun: RunPytest, pytester: pytest.Pytester, busybox_rootfs: Path) -> None:
    write_project(pytester.path / "shop")
    pytester.makepyfile(SUITE.format(rootfs=str(busybox_rootfs)))
    for args in ((), ("-n", "2")):
        result = crun(*args)
        result.assert_outcomes(passed=4, failed=1, errors=1)
        out = result.stdout.str()
        assert "minicontainer service db, " in out  # the failure's section names the service
        assert "health:  passing" in out  # db's healthcheck, run for the report
        assert "the compose fixture needs @pytest.mark.compose(path" in out
