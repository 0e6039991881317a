"""Load and faults: many containers, a killed pytest, a killed import, a full disk, threads.

Each test is bounded in time and checks what must hold afterwards: no process, no mount, no
scratch space left, and a store that still works.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pytest_minicontainer import Engine, StoreError

ROOT = str(Path(__file__).resolve().parents[2])


def _processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line contains ``text`` (zombies are already dead)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{name}: {cmdline}")
    return found


def _mounts_mentioning(text: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if text in line]


def _leftover_scratch(store: Path) -> list[Path]:
    run = store / "run"
    return [p for p in run.iterdir()] if run.is_dir() else []


def test_many_threads_start_containers_at_once(engine: Engine, busybox_rootfs: Path) -> None:
    image = engine.image(f"rootfs:{busybox_rootfs}")
    errors: list[BaseException] = []
    seen: list[str] = []

    def work(n: int) -> None:
        try:
            for i in range(3):
                with engine.run(image, hostname=f"t{n}-{i}") as c:
                    seen.append(c.exec(["hostname"], check=True).stdout.strip())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sorted(seen) == sorted(f"t{n}-{i}" for n in range(12) for i in range(3))
    assert engine.containers == []


SUITE = """
import pytest

@pytest.mark.parametrize("n", range({count}))
def test_in_a_container(container, n):
    container.write_text("/tmp/n", str(n))
    assert container.exec("cat /tmp/n").stdout == str(n)
    assert container.diff()[-1].path == "/tmp/n"
"""


def test_200_container_tests_with_xdist_leave_nothing(pytester: pytest.Pytester, busybox_rootfs: Path,
                                                      engine: Engine, tmp_path: Path) -> None:
    store = tmp_path / "store"
    pytester.makepyfile(test_many=SUITE.format(count=200))
    pytester.makeini(f"[pytest]\nminicontainer_image = rootfs:{busybox_rootfs}\n")
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", f"--minicontainer-store={store}",
                                           timeout=600)
    result.assert_outcomes(passed=200)
    assert _processes_mentioning(str(store)) == []
    assert _mounts_mentioning(str(store)) == []
    assert _leftover_scratch(store) == []


SLOW_SUITE = """
import time

def test_first(container):
    container.exec("echo started > /tmp/x")
    print("STARTED", flush=True)

def test_long(container):
    container.spawn(["sleep", "1234567"])
    time.sleep(60)
"""


def test_sigkill_of_pytest_leaves_no_container_and_the_next_session_cleans(
        pytester: pytest.Pytester, busybox_rootfs: Path, engine: Engine, tmp_path: Path) -> None:
    store = tmp_path / "store"
    pytester.makepyfile(test_slow=SLOW_SUITE)
    pytester.makeini(f"[pytest]\nminicontainer_image = rootfs:{busybox_rootfs}\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s",
                             f"--minicontainer-store={store}", "test_slow.py"],
                            cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while not _processes_mentioning("sleep 1234567") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_mentioning("sleep 1234567"), "the test never started its container"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 1.0
    while (_processes_mentioning("sleep 1234567") or _processes_mentioning(str(store))) and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    assert _processes_mentioning("sleep 1234567") == []
    assert _processes_mentioning(str(store)) == []
    assert _mounts_mentioning(str(store)) == []
    # The next session cleans whatever is left and runs green.
    pytester.makepyfile(test_slow=SLOW_SUITE.replace("time.sleep(60)", "pass"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--minicontainer-store={store}", timeout=120)
    result.assert_outcomes(passed=2)
    assert _leftover_scratch(store) == []


def _big_rootfs_tarball(busybox_rootfs: Path, dest: Path, megabytes: int) -> Path:
    tree = dest.parent / "big-tree"
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(tree)], check=True)
    for i in range(megabytes):
        (tree / "data" / f"blob{i}").write_bytes(os.urandom(1 << 20))
    subprocess.run(["tar", "-cf", str(dest), "-C", str(tree), "."], check=True)
    return dest


def test_killed_while_unpacking_then_the_next_use_succeeds(busybox_rootfs: Path, tmp_path: Path) -> None:
    tarball = _big_rootfs_tarball(busybox_rootfs, tmp_path / "big.tar", 64)
    store = tmp_path / "store"
    script = f"import sys; sys.path.insert(0, {ROOT!r}); from pytest_minicontainer import Engine; " \
             f"Engine(store={str(store)!r}).image('rootfs:{tarball}')"
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    tmp = store / "tmp"
    while time.monotonic() < deadline and not (tmp.is_dir() and any(p.is_dir() for p in tmp.iterdir())):
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    with Engine(store=store) as e:
        image = e.image(f"rootfs:{tarball}")
        with e.run(image) as c:
            assert c.exec("ls /data | grep -c blob").stdout.strip() == "64"
    e.store.gc()
    assert [p for p in tmp.iterdir()] == []


@pytest.mark.skipif(not os.path.exists("/usr/bin/unshare"),
                    reason="needs util-linux's unshare: apt-get install util-linux")
def test_full_disk_is_a_clear_error_and_the_store_recovers(busybox_rootfs: Path, tmp_path: Path) -> None:
    """A store on an 8 MiB tmpfs (made in a user namespace): unpacking 16 MiB must fail cleanly."""
    tarball = _big_rootfs_tarball(busybox_rootfs, tmp_path / "big.tar", 16)
    small = tmp_path / "small.tar"
    subprocess.run(["tar", "-cf", str(small), "-C", str(busybox_rootfs), "."], check=True)
    mnt = tmp_path / "fs"
    mnt.mkdir()
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {ROOT!r})
        from pytest_minicontainer import Engine, StoreError
        store = {str(mnt / 'store')!r}
        filler = {str(mnt / 'filler')!r}
        with open(filler, "wb") as f:
            f.write(b"x" * (5 << 20))
        e = Engine(store=store)
        try:
            e.image("rootfs:{tarball}")
        except StoreError as exc:
            print("ERROR:", exc)
        else:
            sys.exit("no error on a full disk")
        os.unlink(filler)
        image = e.image("rootfs:{small}")
        with e.run(image) as c:
            print("RAN:", c.exec("echo ok").stdout.strip())
        e.close()
    """)
    inner = f"mount -t tmpfs -o size=8m tmpfs {mnt} && exec {sys.executable} -c \"$0\""
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", inner, script],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, MINICONTAINER_IDMAP="single"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ERROR:" in r.stdout and ("full" in r.stdout or "space" in r.stdout)
    assert "RAN: ok" in r.stdout
    assert issubclass(StoreError, Exception)


def test_prune_during_a_session_keeps_the_layers_it_uses(busybox_rootfs: Path, tmp_path: Path) -> None:
    """``rmi`` then ``prune`` while containers run from that image: their layers stay."""
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(busybox_rootfs), "."], check=True)
    store = tmp_path / "store"
    with Engine(store=store) as e:
        image = e.image(f"rootfs:{tarball}")
        with e.run(image, command=["sleep", "100"]) as c:
            removed = e.store.remove_image(image.digest)
            assert removed
            from pytest_minicontainer.cli import _clean_run_dir

            e.store.gc(run_cleaner=_clean_run_dir)
            assert all(Path(d).is_dir() for d in image.layer_dirs)
            assert c.exec("cat /data/keep.txt").stdout == "original\n"
            with e.run(image) as again:  # a new container of the same image still starts
                assert again.exec("true").returncode == 0
    e.store.gc()  # the session has ended: now the layers go
    assert not any(Path(d).exists() for d in image.layer_dirs)
