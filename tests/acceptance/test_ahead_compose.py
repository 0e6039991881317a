"""``--minicontainer-ahead`` for ``@pytest.mark.compose``: the next test's stack starts while the
current test runs (issue 21).

``Stack.start`` starts the services that need not wait (here ``db``) ahead; the test's own
setup starts the rest (``app`` waits for ``db``'s health) and waits.  Each service's main
process writes the machine's uptime when it started into its log, and the tests compare it
with when they began.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.conftest import RunPytest

COMPOSE = """
services:
  db:
    image: "rootfs:${ROOTFS}"
    command: ["sh", "-c", "cut -d' ' -f1 /proc/uptime; exec sleep 1000"]
    healthcheck:
      test: ["CMD-SHELL", "test -e /proc/1"]
      interval: 1s
  app:
    image: "rootfs:${ROOTFS}"
    depends_on:
      db: {condition: service_healthy}
    command: ["sh", "-c", "cut -d' ' -f1 /proc/uptime; exec sleep 1000"]
"""

SUITE = """
import os
import time

import pytest

MARK = pytest.mark.compose("stack", env={{"ROOTFS": {rootfs!r}}})


def record(compose, n):
    now = float(open("/proc/uptime").read().split()[0])
    for name in ("db", "app"):
        compose[name].wait_for_log(r"^\\d")
    db, app = (float(compose[name].logs().split()[0]) for name in ("db", "app"))
    with open(os.environ["AHEAD_LOG"], "a") as f:
        f.write(f"{{n}} {{now - db:.3f}} {{now - app:.3f}}\\n")


@MARK
@pytest.mark.parametrize("n", range(3))
def test_stack(compose, n):
    record(compose, n)
    time.sleep(0.4)  # the next test's stack starts meanwhile
    if os.environ.get("FAIL_LAST") and n == 2:
        assert False, "fails to show the report"


@MARK
@pytest.mark.skip(reason="skipped: its stack must not outlive it")
def test_skipped(compose):
    pass


def test_last_sees_no_leftover(minicontainer):
    assert minicontainer.containers == []
"""


def test_the_next_tests_stack_is_started_ahead(crun: RunPytest, pytester: pytest.Pytester, busybox_rootfs: Path,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "stack").mkdir()
    (pytester.path / "stack" / "compose.yaml").write_text(COMPOSE)
    pytester.makepyfile(test_suite=SUITE.format(rootfs=str(busybox_rootfs)))
    log = tmp_path / "ahead.log"
    monkeypatch.setenv("AHEAD_LOG", str(log))
    crun("-p", "no:randomly", "-rs").assert_outcomes(passed=4, skipped=1)
    rows = {int(n): (float(db), float(app)) for n, db, app in (line.split() for line in log.read_text().splitlines())}
    assert rows[0][0] < 0.3  # the first stack: the session loaded the file in its test
    for n in (1, 2):  # db started during the test before; app, waiting for db's health, in its own
        assert rows[n][0] > 0.3, rows
        assert rows[n][1] < 0.3, rows

    log.unlink()
    crun("--minicontainer-ahead=0", "-rs").assert_outcomes(passed=4, skipped=1)
    rows = {int(n): (float(db), float(app)) for n, db, app in (line.split() for line in log.read_text().splitlines())}
    assert all(db < 0.3 for db, _app in rows.values()), rows  # each started by its own test

    monkeypatch.setenv("FAIL_LAST", "1")
    result = crun("-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    # db's section says it started ahead; app's (started in the test's setup) does not
    result.stdout.re_match_lines([r".*db.*", r"started: \d+ ms before the test \(--minicontainer-ahead: .*"],
                                 consecutive=False)
    assert result.stdout.str().count("ms before the test") == 1


def test_stacks_ahead_under_xdist(crun: RunPytest, pytester: pytest.Pytester, busybox_rootfs: Path,
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "stack").mkdir()
    (pytester.path / "stack" / "compose.yaml").write_text(COMPOSE)
    pytester.makepyfile(test_suite=SUITE.format(rootfs=str(busybox_rootfs)).replace("range(3)", "range(6)"))
    monkeypatch.setenv("AHEAD_LOG", str(tmp_path / "ahead.log"))
    crun("-n", "2", "-rs").assert_outcomes(passed=7, skipped=1)
