"""``--minicontainer-ahead``: the next test's declared container starts while the current test runs.

Each inner run uses the busybox rootfs; a container's main process writes the machine's
uptime when it started into its log (``/proc/uptime``), and the tests compare it with when
they began.  Leftovers are looked for with ``Engine.containers`` (containers in use) and the
engine's own record of every container it started.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

RunPytest = Callable[..., pytest.RunResult]

# The inner suites' common head: a main process that logs when it started, and the clock.
HEAD = """
import os
import time

import pytest

STARTED = "cut -d' ' -f1 /proc/uptime; exec sleep 1000"


def uptime():
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])

"""

SUITE = HEAD + """

@pytest.mark.container("rootfs:{rootfs}", command=STARTED)
def test_first(container):
    time.sleep(0.4)  # the next test's container starts meanwhile


@pytest.mark.container("rootfs:{rootfs}", command=STARTED)
def test_second(container):
    began = uptime()
    container.wait_for_log(r"^\\d")
    started = float(container.logs().split()[0])
    early = began - started
    with open(os.environ["AHEAD_LOG"], "a") as f:
        f.write(f"{{early:.3f}}\\n")
    if os.environ.get("FAIL_SECOND"):
        assert False, "fails to show the report"
"""


def _suite(pytester: pytest.Pytester, rootfs: Path, extra: str = "") -> None:
    pytester.makepyfile(test_suite=SUITE.format(rootfs=rootfs) + extra)


def test_the_next_tests_container_is_started_ahead(crun: RunPytest, pytester: pytest.Pytester,
                                                    busybox_rootfs: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _suite(pytester, busybox_rootfs)
    log = tmp_path / "ahead.log"
    monkeypatch.setenv("AHEAD_LOG", str(log))
    crun("-p", "no:randomly").assert_outcomes(passed=2)
    assert float(log.read_text().split()[-1]) > 0.3  # started during test_first's 0.4 s
    crun("--minicontainer-ahead=0").assert_outcomes(passed=2)
    assert float(log.read_text().split()[-1]) < 0.3  # started by its own test


def test_the_failure_report_says_when_it_started(crun: RunPytest, pytester: pytest.Pytester, busybox_rootfs: Path,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _suite(pytester, busybox_rootfs)
    monkeypatch.setenv("AHEAD_LOG", str(tmp_path / "ahead.log"))
    monkeypatch.setenv("FAIL_SECOND", "1")
    result = crun()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r"started: \d+ ms before the test \(--minicontainer-ahead: .*"])
    result = crun("--minicontainer-ahead=0")
    result.assert_outcomes(passed=1, failed=1)
    assert "ms before the test" not in result.stdout.str()


LEFTOVERS = """

@pytest.mark.container("rootfs:{rootfs}", command=STARTED)
@pytest.mark.skip(reason="skipped: its container must not outlive it")
def test_third_skipped(container):
    pass


@pytest.mark.container("rootfs:{rootfs}", command=STARTED)
def test_fourth_deselected(container):
    pass


def test_last_sees_no_leftover(minicontainer):
    assert minicontainer.containers == []
    # nor one started ahead for the skipped test (those are not in the public list)
    assert not minicontainer._containers, list(minicontainer._containers)
"""


def test_a_skipped_or_deselected_next_test_leaves_nothing(crun: RunPytest, pytester: pytest.Pytester,
                                                          busybox_rootfs: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _suite(pytester, busybox_rootfs, LEFTOVERS.format(rootfs=busybox_rootfs))
    monkeypatch.setenv("AHEAD_LOG", str(tmp_path / "ahead.log"))
    result = crun("-k", "not fourth", "-rs")
    result.assert_outcomes(passed=3, skipped=1, deselected=1)


def test_ahead_under_xdist_and_a_bad_setting(crun: RunPytest, run: RunPytest, pytester: pytest.Pytester,
                                             busybox_rootfs: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    extra = "".join(f"""

@pytest.mark.container("rootfs:{busybox_rootfs}", command=STARTED)
def test_more_{n}(container):
    assert container.exec("true").returncode == 0
""" for n in range(6))
    _suite(pytester, busybox_rootfs, extra)
    monkeypatch.setenv("AHEAD_LOG", str(tmp_path / "ahead.log"))
    crun("-n", "2").assert_outcomes(passed=8)
    bad = run("--minicontainer-ahead=9")
    assert bad.ret != 0
    assert "minicontainer_ahead = '9': give how many tests ahead" in bad.stderr.str()


DEEPER = HEAD + """

@pytest.mark.container("rootfs:{rootfs}", command=STARTED)
@pytest.mark.parametrize("n", range(4))
def test_step(container, n):
    began = uptime()
    container.wait_for_log(r"^\\d")
    with open(os.environ["AHEAD_LOG"], "a") as f:
        f.write(f"{{n}} {{began - float(container.logs().split()[0]):.3f}}\\n")
    time.sleep(0.4)
"""


def test_a_deeper_look_ahead_starts_the_tests_after_the_next(crun: RunPytest, pytester: pytest.Pytester,
                                                             busybox_rootfs: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """--minicontainer-ahead=2: while test 0 runs, tests 1 and 2 start theirs; so test 2's
    container was up for about two tests' time when it began (one with the default depth)."""
    pytester.makepyfile(test_deeper=DEEPER.format(rootfs=busybox_rootfs))
    log = tmp_path / "ahead.log"
    monkeypatch.setenv("AHEAD_LOG", str(log))

    def early() -> dict[int, float]:
        rows = dict(line.split() for line in log.read_text().splitlines())
        log.unlink()
        return {int(n): float(seconds) for n, seconds in rows.items()}

    crun("-p", "no:randomly", "--minicontainer-ahead=2").assert_outcomes(passed=4)
    deep = early()
    assert deep[2] > 0.6 and deep[3] > 0.6, deep  # started during the test two before
    crun("-p", "no:randomly").assert_outcomes(passed=4)
    default = early()
    # during the test just before: up for one test's time (0.4 s), one less than with depth 2
    assert default[2] > 0.3 and default[3] > 0.3, default
    assert deep[2] - default[2] > 0.2 and deep[3] - default[3] > 0.2, (deep, default)


PREPARED = """
import os
import time

import pytest


@pytest.fixture(scope="session")
def seeded(minicontainer):
    with minicontainer.run("rootfs:{rootfs}", command=()) as c:
        c.write_text("/seed", "from the session fixture\\n")
        return c.commit("ahead/seeded:1")


@pytest.mark.container("ahead/seeded:1", command="cut -d' ' -f1 /proc/uptime; exec sleep 1000")
@pytest.mark.parametrize("n", range(3))
def test_clone(seeded, container, n):
    assert container.read_text("/seed") == "from the session fixture\\n"
    container.wait_for_log(r"^\\d")  # the first clone starts with its test: its line may still come
    with open(os.environ["AHEAD_LOG"], "a") as f:
        f.write(f"{{n}} {{container.logs().split()[0]}} {{open('/proc/uptime').read().split()[0]}}\\n")
    time.sleep(0.8)  # long beside a loaded machine's start-up: the margins below stay wide
"""


def test_clones_of_a_session_fixtures_commit_are_started_ahead(crun: RunPytest, pytester: pytest.Pytester,
                                                               busybox_rootfs: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_prepared=PREPARED.format(rootfs=busybox_rootfs))
    log = tmp_path / "ahead.log"
    monkeypatch.setenv("AHEAD_LOG", str(log))
    crun().assert_outcomes(passed=3)
    rows = [line.split() for line in log.read_text().splitlines()]
    early = {int(n): float(now) - float(started) for n, started, now in rows}
    assert early[0] < 0.5, early  # the first clone: the commit did not exist before its test
    assert early[1] > 0.6 and early[2] > 0.6, early  # the others started during the test before them
