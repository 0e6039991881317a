"""The runtime through the public API: isolation, commands, files, errors, clean-up."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from pytest_minicontainer import (
    ContainerError,
    Engine,
    ExecError,
    ExecTimeout,
    ImageError,
    Mount,
    RuntimeUnavailable,
)


def _procs_in(ns: str) -> dict[int, str]:
    """Live (not zombie) host processes in pid namespace ``ns``, with their start times.

    A namespace's inode number is reused once the namespace is gone (another xdist worker's
    next container may get it at once): the start times tell our processes from later ones.
    """
    found = {}
    parents = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == ns:
                    with open(f"/proc/{name}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if fields[0] != "Z":
                        found[int(name)] = fields[19]
                        parents.add(int(fields[1]))
            except OSError:
                continue
    # Pid 1 is not dumpable: unprivileged, its ns link cannot be read.  It is the parent of
    # the commands, and pid 1 of some namespace (its stat and status stay readable).
    for pid in parents - set(found):
        with contextlib.suppress(OSError):
            if _ns_pid(pid) == 1:
                with open(f"/proc/{pid}/stat") as f:
                    found[pid] = f.read().rsplit(")", 1)[1].split()[19]
    return found


def _alive(procs: dict[int, str]) -> list[int]:
    """Which of ``procs`` (from :func:`_procs_in`) still run: same pid and start time, no zombie."""
    alive = []
    for pid, start in procs.items():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and fields[19] == start:
            alive.append(pid)
    return alive


def _runtime_processes(scratch: str) -> list[int]:
    """Live processes of the runtime whose scratch dir is ``scratch`` (it is in their arguments)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if scratch.encode() not in f.read().split(b"\0"):
                        continue
                with open(f"/proc/{name}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(int(name))
            except OSError:
                continue
    return found


def _ns_pid(pid: int) -> int:
    """The pid of host process ``pid`` inside its own pid namespace."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return -1


def _mounts_of(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(path) in line]


# -- isolation ---------------------------------------------------------------------------------
def test_sees_only_its_own_processes_hostname_and_loopback(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(engine.image(f"rootfs:{busybox_rootfs}"), hostname="box1") as c:
        ps = c.exec(["ps", "-o", "pid,comm"]).stdout.split("\n")[1:]
        pids = sorted(int(line.split()[0]) for line in ps if line.strip())
        assert pids[0] == 1 and len(pids) <= 3, ps  # init, sh for ps, ps itself
        assert c.exec(["hostname"]).stdout.strip() == "box1"
        links = c.exec(["cat", "/proc/net/dev"]).stdout
        ifaces = sorted(line.split(":")[0].strip() for line in links.splitlines()[2:])
        assert ifaces == ["lo"]
        assert "127.0.0.1" in c.exec(["ip", "addr", "show", "lo"]).stdout
        assert c.exec("cat /proc/1/status | grep NSpid").stdout.split()[-1] == "1"


def test_default_hostname_is_the_container_id(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        assert c.exec("hostname").stdout.strip() == c.id
        assert c.exec("echo $HOSTNAME").stdout.strip() == c.id


def test_host_network_shares_the_hosts_interfaces(engine: Engine, busybox_rootfs: Path) -> None:
    with open("/proc/net/dev") as f:
        host_ifaces = sorted(line.split(":")[0].strip() for line in f.read().splitlines()[2:])
    with engine.run(f"rootfs:{busybox_rootfs}", network="host") as c:
        out = c.exec(["cat", "/proc/net/dev"]).stdout
        assert sorted(line.split(":")[0].strip() for line in out.splitlines()[2:]) == host_ifaces
        if os.path.isfile("/etc/resolv.conf"):  # the host's resolver, read-only, as Docker does
            assert c.read_text("/etc/resolv.conf") == Path("/etc/resolv.conf").read_text()
            assert c.exec("echo x >> /etc/resolv.conf").returncode != 0
            assert c.diff() == []


def test_writes_stay_in_the_container(engine: Engine, busybox_rootfs: Path) -> None:
    image = engine.image(f"rootfs:{busybox_rootfs}")
    with engine.run(image) as a, engine.run(image) as b:
        a.exec("echo changed > /data/keep.txt && rm /data/gone.txt && echo new > /data/new.txt", check=True)
        assert a.read_text("/data/keep.txt") == "changed\n"
        assert b.read_text("/data/keep.txt") == "original\n"
        assert b.exec("cat /data/gone.txt").returncode == 0
        assert sorted(map(str, a.diff())) == ["A /data/new.txt", "C /data/keep.txt", "D /data/gone.txt"]
        assert b.diff() == []
    assert (busybox_rootfs / "data" / "keep.txt").read_text() == "original\n"
    assert (busybox_rootfs / "data" / "gone.txt").exists()
    assert not (busybox_rootfs / "data" / "new.txt").exists()


def test_each_container_starts_from_its_image_whatever_the_last_one_did(engine: Engine, busybox_rootfs: Path) -> None:
    """Spares are prepared ahead and scratch space is reused: none of it may carry state."""
    image = engine.image(f"rootfs:{busybox_rootfs}")
    for round_ in range(6):
        with engine.run(image, hostname=f"round{round_}") as c:
            assert c.exec(["hostname"]).stdout.strip() == f"round{round_}"
            assert c.diff() == [], f"round {round_} starts with changes"
            assert c.exec("ls -ld / /data | cut -c1-10").stdout.split() == ["drwxr-xr-x", "drwxr-xr-x"]
            assert set(c.exec("ls /").stdout.split()) == {p.name for p in busybox_rootfs.iterdir()} | {"dev", "proc"}
            c.exec("mkdir /made && echo x > /data/new && chmod 700 / /data && rm /data/gone.txt", check=True)
    with pytest.raises(ContainerError, match="removed"):  # its scratch space may be another's by now
        c.diff()
    with engine.run("host") as c:
        c.exec("mkdir -p /root/left && echo x > /tmp/left", check=True)
    with engine.run("host") as c:
        assert c.exec("test -e /root/left || test -e /tmp/left").returncode == 1
        assert c.diff() == []


def test_spares_follow_the_image_asked_for(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    """A spare prepared for one image must never serve another (or the same with other mounts)."""
    other = tmp_path / "other"
    shutil.copytree(busybox_rootfs, other, symlinks=True)
    (other / "data" / "keep.txt").write_text("other image\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "f").write_text("mounted\n")
    images = {"a": engine.image(f"rootfs:{busybox_rootfs}"), "b": engine.image(f"rootfs:{other}")}
    expected = {"a": "original\n", "b": "other image\n"}
    for name in "aabbabbaab":
        with engine.run(images[name]) as c:
            assert c.read_text("/data/keep.txt") == expected[name], name
            assert not c.exists("/mnt/f")
    for name in "ab":
        with engine.run(images[name], mounts=[Mount(tmp_path / "m", "/mnt", readonly=True)]) as c:
            assert c.read_text("/mnt/f") == "mounted\n" and c.read_text("/data/keep.txt") == expected[name]


def test_runtime_helper_imports_this_package_whatever_the_working_directory(busybox_rootfs: Path,
                                                                           tmp_path: Path) -> None:
    """Another copy of the package in the working directory must not be what the zygote runs."""
    fake = tmp_path / "work" / "pytest_minicontainer"
    (fake / "runtime").mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('the wrong copy was imported')\n")
    (fake / "runtime" / "__init__.py").write_text("")
    (fake / "runtime" / "zygote.py").write_text("raise SystemExit('the wrong zygote ran')\n")
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        from pytest_minicontainer import Engine
        with Engine(store={str(tmp_path / "store")!r}) as e:
            print(e.run("rootfs:{busybox_rootfs}").exec(["true"]).returncode)
    """))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    r = subprocess.run([sys.executable, str(script)], cwd=fake.parent, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "0", r.stderr


def test_host_image_runs_host_python_and_keeps_the_host_untouched(engine: Engine, tmp_path: Path) -> None:
    marker = f"/usr/lib/minicontainer-test-{os.getpid()}"
    with engine.run("host") as c:
        r = c.exec(["python3", "-c", "import sys; print(sys.version_info[0])"], check=True)
        assert r.stdout.strip() == "3"
        c.exec("echo t > /tmp/t && mkdir -p /root/x && echo r > /root/x/f", check=True)
        assert {"A /tmp/t", "A /root/x/f"} <= set(map(str, c.diff()))
        # only system dirs and the running Python are exposed, not the project or the homes
        assert c.exec(["test", "-e", __file__]).returncode == 1
        r = c.exec(f"echo x > {marker} && cat {marker}")
        if os.geteuid() == 0:
            # root's files are root's inside too (every mapping of real root maps uid 0 to
            # itself): the write lands in the writable layer
            assert r.returncode == 0 and r.stdout == "x\n"
            assert "A " + marker in set(map(str, c.diff()))
        else:
            # rootless: host root's files belong to an unmapped id, so /usr is read-only here
            assert r.returncode != 0 and "Permission denied" in r.stderr
    assert not os.path.exists(marker)


def test_mounts_read_only_and_read_write(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "in.txt").write_text("hello")
    mounts = [Mount(ro, "/mnt/ro", readonly=True), Mount(str(rw), "/mnt/rw")]
    with engine.run(f"rootfs:{busybox_rootfs}", mounts=mounts) as c:
        assert c.read_text("/mnt/ro/in.txt") == "hello"
        r = c.exec("echo no > /mnt/ro/x")
        assert r.returncode != 0 and "Read-only" in r.stderr
        c.exec("echo yes > /mnt/rw/out.txt", check=True)
        assert all(not ch.path.startswith("/mnt/") for ch in c.diff())
    assert (rw / "out.txt").read_text() == "yes\n"
    assert not (ro / "x").exists()


def test_dev_is_minimal_and_works(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        names = set(c.exec("ls /dev").stdout.split())
        assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx"} <= names
        assert not names & {"sda", "vda", "mem", "kmsg"}
        assert c.exec("head -c 4 /dev/urandom | wc -c").stdout.strip() == "4"
        assert c.exec("echo x > /dev/null && echo ok").stdout == "ok\n"
        assert c.exec("echo x > /dev/shm/f && cat /dev/shm/f").stdout == "x\n"


def test_symlinked_mount_target_stays_inside(engine: Engine, tmp_path: Path, busybox_rootfs: Path) -> None:
    """An image's absolute symlink must not send a mount (or its mkdir) to the host's tree."""
    rootfs = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(rootfs)], check=True)
    (rootfs / "escape").symlink_to(f"/{tmp_path.name}-outside")
    src = tmp_path / "src"
    src.mkdir()
    with engine.run(f"rootfs:{rootfs}", mounts=[Mount(src, "/escape/sub")]) as c:
        assert c.exec(f"test -d /{tmp_path.name}-outside/sub && echo ok").stdout == "ok\n"
    assert not Path(f"/{tmp_path.name}-outside").exists()


# -- commands ------------------------------------------------------------------------------------
def test_exec_env_workdir_input_and_user(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}", env={"A": "1"}, workdir="/tmp") as c:
        assert c.exec("echo $A $B; pwd", env={"B": "2"}).stdout == "1 2\n/tmp\n"
        assert c.exec(["cat"], input="data").stdout == "data"
        assert c.exec(["pwd"], workdir="/etc").stdout == "/etc\n"
        assert c.exec(["id", "-u"], user="root").stdout == "0\n"
        assert c.exec("echo $HOME", user="root").stdout == "/root\n"
        big = "x" * 1_000_000
        assert c.exec(["wc", "-c"], input=big).stdout.strip() == str(len(big))


def test_missing_command_is_127_with_a_message(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        r = c.exec(["no-such-command"])
        assert r.returncode == 127
        assert "no-such-command" in r.stderr
        with pytest.raises(ExecError) as info:
            c.exec("exit 3", check=True)
        assert info.value.status == 3 and info.value.argv[-1] == "exit 3"


def test_exec_timeout_kills_the_process_tree(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        start = time.monotonic()
        with pytest.raises(ExecTimeout):
            c.exec("sleep 300 & setsid sleep 301 & sleep 302", timeout=0.5)
        assert time.monotonic() - start < 10
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            left = c.exec("ps -o comm | grep -c sleep").stdout.strip()
            if left == "0":
                break
            time.sleep(0.05)
        assert left == "0"


def test_spawn_wait_and_kill(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        p = c.spawn(["sh", "-c", "echo started; exec sleep 100"])
        assert p.returncode is None
        with pytest.raises(ExecTimeout):
            p.wait(timeout=0.2)
        p.kill()
        assert p.wait(timeout=5) == -signal.SIGKILL
        assert p.stdout == "started\n"
        q = c.spawn("exit 4")
        assert q.wait(5) == 4 and q.returncode == 4


def test_files_in_and_out(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)))
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        c.write_bytes("/new/dir/file.bin", b"\x00\x01")
        assert c.read_bytes("/new/dir/file.bin") == b"\x00\x01"
        with pytest.raises(FileNotFoundError):
            c.read_text("/nope")
        assert c.exists("/new/dir/file.bin") and c.exists("/etc") and not c.exists("/nope")
        c.copy_in(src, "/srv")
        assert c.exec("cat /srv/a.txt").stdout == "A"
        c.exec("mkdir /dst", check=True)
        c.copy_in(src / "a.txt", "/dst")
        assert c.read_text("/dst/a.txt") == "A"
        out = tmp_path / "out"
        c.copy_out("/srv", out)
        assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256))
        c.copy_out("/etc/passwd", tmp_path)
        assert (tmp_path / "passwd").read_text().startswith("root:")


def test_main_command_logs_and_wait(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}", command="echo out; echo err >&2; exit 7") as c:
        assert c.wait(timeout=10) == 7
        assert not c.running
        assert "out\n" in c.logs() and "err\n" in c.logs()
        assert c.exec("echo still usable").stdout == "still usable\n"
    with engine.run(f"rootfs:{busybox_rootfs}", command=()) as c:
        assert c.command is None and c.running
        with pytest.raises(ContainerError):
            c.wait(1)


def test_stop_sends_sigterm_then_kills(engine: Engine, busybox_rootfs: Path) -> None:
    c = engine.run(f"rootfs:{busybox_rootfs}", command=["sh", "-c", "trap 'echo bye; exit 0' TERM; "
                                                                    "while true; do sleep 0.05; done"])
    time.sleep(0.3)
    assert c.running
    assert c.stop(timeout=5) == 0
    assert "bye" in c.logs()
    c.remove()
    stubborn = engine.run(f"rootfs:{busybox_rootfs}", command=["sh", "-c", "trap '' TERM; sleep 100"])
    time.sleep(0.2)
    start = time.monotonic()
    assert stubborn.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - start < 5
    stubborn.remove()


def test_user_option_and_unmappable_user(engine: Engine, busybox_rootfs: Path) -> None:
    rt = engine.runtime
    if rt.idmap.max_uid >= 1000:
        with engine.run(f"rootfs:{busybox_rootfs}", user="app") as c:
            assert c.exec("id -u; id -g; echo $HOME").stdout == "1000\n1000\n/home/app\n"
            assert c.exec(["id", "-u"], user="root").stdout == "0\n"
            # a uid without a passwd line: group root, as Docker gives it
            assert c.exec("id -u; id -g", user="1234").stdout == "1234\n0\n"
            assert c.exec("id -u; id -g", user="1234:5").stdout == "1234\n5\n"
    else:
        with pytest.raises(ContainerError, match="subuid"):
            engine.run(f"rootfs:{busybox_rootfs}", user="app")
    with pytest.raises(ContainerError, match="nobody-here"):
        engine.run(f"rootfs:{busybox_rootfs}", user="nobody-here")


# -- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ref", ["rootfs:/does/not/exist", "", "weird:thing"])
def test_bad_image_references(engine: Engine, ref: str) -> None:
    with pytest.raises(ImageError) as info:
        engine.image(ref)
    assert str(info.value)


def test_run_rejects_bad_options(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="network"):
        engine.run(f"rootfs:{busybox_rootfs}", network="")  # ("bridge" names a network of the Engine's)
    with pytest.raises(ContainerError, match="does not exist"):
        engine.run(f"rootfs:{busybox_rootfs}", mounts=[Mount(tmp_path / "missing", "/x")])
    with pytest.raises(TypeError, match="frobnicate"):
        engine.run(f"rootfs:{busybox_rootfs}", frobnicate=True)


@pytest.mark.skipif(not os.path.exists("/usr/bin/unshare"),
                    reason="needs util-linux's unshare: apt-get install util-linux")
def _write_refusal_probe(path: Path, setup: str, call: str) -> None:
    """A script that runs ``setup``, then ``call``, and prints the RuntimeUnavailable it raises."""
    path.write_text(textwrap.dedent("""
        import sys
        sys.path.insert(0, {root!r})
        from pytest_minicontainer import Engine, RuntimeUnavailable
        {setup}
        try:
            {call}
        except RuntimeUnavailable as exc:
            print("CAUSE:", exc.cause)
            print("FIX:", exc.fix)
            sys.exit(0)
        sys.exit("no refusal")
    """.format(root=str(Path(__file__).resolve().parents[2]), call=call,
               setup=setup.replace("\n", "\n        "))))


def test_refusal_is_runtime_unavailable_with_a_fix(tmp_path: Path) -> None:
    """Inside a user namespace whose max_user_namespaces is 0, a real refusal."""
    _write_refusal_probe(tmp_path / "probe.py", "", f"Engine.probe({str(tmp_path / 'store')!r})")
    inner = f"echo 0 > /proc/sys/user/max_user_namespaces && exec {sys.executable} {tmp_path}/probe.py"
    r = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", inner],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "max_user_namespaces" in r.stdout
    assert "sysctl -w user.max_user_namespaces=" in r.stdout
    assert issubclass(RuntimeUnavailable, Exception)


def test_a_store_on_overlayfs_is_refused_with_a_fix(tmp_path: Path, busybox_rootfs: Path) -> None:
    """A store in the home directory of a Docker container lies on overlayfs, which cannot be a
    container's upper layer: the first container says so and names the fix (not a bare
    EINVAL from mount), while images still unpack there.  Made real in a mount namespace of
    its own (``unshare -Urm``), so that it also runs rootless."""
    for d in ("lower", "upper", "work", "merged"):
        (tmp_path / d).mkdir()
    setup = (f"e = Engine(store={str(tmp_path / 'merged' / 'store')!r})\n"
             f"image = e.image('rootfs:{busybox_rootfs}')\n"
             "print('IMAGE:', image.digest)")
    _write_refusal_probe(tmp_path / "probe.py", setup, "e.run(image)")
    # and `minicontainer check` tests the store that will be used ($MINICONTAINER_STORE here)
    inner = (f"mount -t overlay overlay -o lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,"
             f"workdir={tmp_path}/work {tmp_path}/merged && {sys.executable} {tmp_path}/probe.py && "
             f"MINICONTAINER_STORE={tmp_path}/merged/store2 {sys.executable} -m pytest_minicontainer check; "
             "echo CHECK=$?")
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", inner],
                       capture_output=True, text=True, timeout=120)
    if "mount" in r.stderr and "IMAGE:" not in r.stdout:
        pytest.skip(f"overlayfs cannot be mounted in a user namespace here ({r.stderr.strip()}): Linux 5.11+ needed")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "IMAGE: sha256:" in r.stdout
    assert "is on an overlayfs" in r.stdout and "MINICONTAINER_STORE" in r.stdout
    assert "[FAIL] container: the store's run directory" in r.stdout and "CHECK=1" in r.stdout


_NESTED = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r1, w1 = os.pipe(); r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        os._exit(99)
    os.write(w1, b"x"); os.read(r2, 1)
    os.execv(sys.executable, [sys.executable, sys.argv[1]])
os.read(r1, 1)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{name}", "w") as f:
        f.write("0 0 65536\\n")
os.write(w2, b"x")
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@pytest.mark.skipif(not os.path.exists("/usr/bin/unshare"),
                    reason="needs util-linux's unshare: apt-get install util-linux")
@pytest.mark.parametrize("outer", ["map-root-user", "65536-ids"])
def test_root_inside_a_user_namespace_runs_containers(busybox_rootfs: Path, tmp_path: Path, outer: str) -> None:
    """Root in a user namespace that maps only some ids (``unshare -r``, rootless podman, CI
    sandboxes) is not the real root: the maps given to containers are what it has."""
    if outer == "65536-ids" and os.geteuid() != 0:
        pytest.skip("writing a 65536-id map for a nested user namespace needs root: run the suite as root")
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pytest_minicontainer import Engine
        with Engine(store={str(tmp_path / 'store')!r}) as e:
            print("MAP", e.runtime.idmap.describe())
            with e.run("rootfs:{busybox_rootfs}") as c:
                print(c.exec("id -u; cat /proc/self/uid_map", check=True).stdout)
    """))
    if outer == "map-root-user":
        argv = ["unshare", "--user", "--map-root-user", sys.executable, str(probe)]
        lines = ["0 0 1"]
    else:
        (tmp_path / "nested.py").write_text(_NESTED)
        argv = [sys.executable, str(tmp_path / "nested.py"), str(probe)]
        lines = ["0 0 65536"]
    env = {k: v for k, v in os.environ.items() if k != "MINICONTAINER_IDMAP"}  # the automatic choice
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("MAP identity of this user namespace's ids")
    assert out[1] == "0"
    assert [" ".join(line.split()) for line in out[2:] if line.strip()] == lines


# -- no leaks ------------------------------------------------------------------------------------------
def test_stop_and_close_leave_nothing(busybox_rootfs: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Engine(store=store) as e:
        c = e.run(f"rootfs:{busybox_rootfs}", command=["sleep", "100"])
        c.spawn(["sleep", "101"])
        procs = _procs_in(c.exec(["readlink", "/proc/self/ns/pid"]).stdout.strip())
        assert len(procs) >= 3
        c.stop(timeout=0.2)
        # Everything the container ran is gone when stop() returns; the runtime's own init
        # answers just before it exits, and the namespaces' teardown follows at once.
        assert [p for p in _alive(procs) if _ns_pid(p) != 1] == []
        deadline = time.monotonic() + 1.0
        while _alive(procs) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert _alive(procs) == []
        d = e.run(f"rootfs:{busybox_rootfs}", command=["sleep", "100"])
        procs2 = _procs_in(d.exec(["readlink", "/proc/self/ns/pid"]).stdout.strip())
        assert len(procs2) >= 2
        zygote = e.runtime.zygote_pid
    assert _alive(procs2) == []
    assert not os.path.exists(f"/proc/{zygote}") or Path(f"/proc/{zygote}/stat").read_text().split()[2] == "Z"
    assert _mounts_of(store) == []
    assert list((store / "run").iterdir()) == []


def test_sigkill_of_the_owner_kills_its_containers_and_the_next_engine_cleans(
        busybox_rootfs: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pytest_minicontainer import Engine
        e = Engine(store={str(store)!r})
        # a member of a network: the network helper, which holds its namespace, must go too
        c = e.run("rootfs:{busybox_rootfs}", command=["sleep", "300"], network=e.network("n"), aliases=["a"])
        print(c.exec(["readlink", "/proc/self/ns/pid"]).stdout.strip(), e.runtime.zygote_pid, e.runtime.scratch,
              flush=True)
        time.sleep(300)
    """)
    for kill_zygote_too in (False, True):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        ns, zygote, scratch = proc.stdout.readline().split()
        procs = _procs_in(ns)
        assert procs
        if kill_zygote_too:  # the worst case: nobody is left to clean up
            os.kill(int(zygote), signal.SIGKILL)
        proc.kill()
        proc.wait()
        proc.stdout.close()
        deadline = time.monotonic() + 1.0
        while (_alive(procs) or _runtime_processes(scratch)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _alive(procs) == [], "container processes outlived their owner by more than a second"
        # the zygote, the containers' pid 1, the spares made ahead and the network helper (their
        # command line names the engine's scratch dir) are gone too
        assert _runtime_processes(scratch) == []
    # The second crash left scratch space behind; the next engine removes it.
    deadline = time.monotonic() + 5
    with Engine(store=store) as e:
        e.runtime  # noqa: B018 - starting the runtime cleans stale scratch space
        others = [p for p in (store / "run").iterdir() if p.name != e.runtime.engine_id]
        assert others == []
    assert _mounts_of(store) == []


def test_the_kernels_own_files_stay_out_of_reach(engine: Engine, busybox_rootfs: Path) -> None:
    """As real root, root in a container is the host's root: /proc's masks must not come off
    (no CAP_SYS_ADMIN for what runs inside) and no global sysctl may be written, whatever the
    container tries; rootless the host refuses those writes anyway.  Each write puts back
    the value it read, so nothing changes even if one got through."""
    script = (
        "umount /proc/sys; umount /proc/sysrq-trigger; mkdir -p /mnt/p && mount -t proc proc /mnt/p; "
        "for f in /proc/sys/vm/swappiness /mnt/p/sys/vm/swappiness; do "
        "  [ -e $f ] && v=$(cat $f) && (echo $v > $f) && echo wrote $f; done; "
        "unshare -Urm sh -c 'umount /proc/sys; v=$(cat /proc/sys/vm/swappiness); "
        "echo $v > /proc/sys/vm/swappiness && echo wrote nested'; true")
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        # the host's device nodes are bound in: usable, but their modes and owners stay the host's
        mode = oct(os.stat("/dev/full").st_mode & 0o777)[2:]
        assert c.exec(f"chmod {mode} /dev/full").returncode != 0  # the same mode: harmless if let through
        assert c.exec("echo x > /dev/null && head -c 4 /dev/zero | wc -c").stdout.strip() == "4"
        assert c.exec("for x in mount umount unshare; do command -v $x; done").stdout.count("\n") == 3
        assert "wrote" not in c.exec(script).stdout
        if engine.runtime.idmap.kind == "root" and os.geteuid() == 0:
            assert c.exec("hostname other").returncode != 0  # no CAP_SYS_ADMIN, as in Docker
            # nor a user namespace of its own, where root could mount cgroupfs and write the host's
            r = c.exec("unshare -U -r -C -m sh -c 'mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg && echo mounted'")
            assert r.returncode != 0 and "mounted" not in r.stdout


def test_commands_get_no_descriptor_of_pid_1(engine: Engine, busybox_rootfs: Path) -> None:
    """Only stdin, stdout and stderr: pid 1's request sockets in a command would let it answer
    the library in pid 1's place (read another user's input, forge results), and a stray
    copy of an output pipe keeps ``exec`` waiting for a daemon that redirected its own."""
    listing = "ls /proc/self/fd"  # ls's own directory descriptor is 3
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        assert c.exec(listing).stdout.split() == ["0", "1", "2", "3"]
        p = c.spawn(["sh", "-c", listing])
        assert p.wait(10) == 0 and p.stdout.split() == ["0", "1", "2", "3"]
        if engine.runtime.idmap.max_uid >= 1000:  # the fork path of pid 1, for another user
            assert c.exec(listing, user="1000").stdout.split() == ["0", "1", "2", "3"]
        # with a copy of the pipes left in the daemon this would wait for its 60 s (ExecTimeout)
        assert c.exec("sleep 60 </dev/null >/dev/null 2>&1 & exit 0", timeout=20).returncode == 0


_PID1_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
found = []
for what, try_it in (("fd", lambda: os.readlink("/proc/1/fd/1")),
                     ("exe", lambda: os.readlink("/proc/1/exe")),
                     ("environ", lambda: open("/proc/1/environ", "rb").read()),
                     ("mem", lambda: open("/proc/1/mem", "rb"))):
    try:
        try_it()
        found.append(what)
    except PermissionError:
        pass
PTRACE_SEIZE = 0x4206
if libc.ptrace(ctypes.c_long(PTRACE_SEIZE), ctypes.c_long(1), None, None) == 0:
    found.append("ptrace")
print(",".join(found) or "none", open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode())
"""


def test_pid_1_is_out_of_the_containers_reach(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root in a container could ptrace pid 1 (stop it, and the library's every request with
    it, or answer in its place), read /proc/1/environ (the test process's environment: CI
    secrets) or reach what pid 1 holds through /proc/1/fd.  Pid 1 is not dumpable, and holds
    no host file (the zygote's log, the scratch dir's lock); ``ps`` still sees it."""
    monkeypatch.setenv("MINICONTAINER_TEST_SECRET", "not-for-containers")
    with Engine(store=engine.store_path) as e, e.run("host") as c:
        found, cmd = c.exec([sys.executable, "-c", _PID1_PROBE], check=True).stdout.split()
        assert found == "none"
        assert "python" in cmd
        if os.geteuid() == 0:  # from the host (as root), what pid 1 holds
            ns = c.exec(["readlink", "/proc/self/ns/pid"]).stdout.strip()
            init = [p for p in _procs_in(ns) if _ns_pid(p) == 1]
            assert len(init) == 1
            links = []
            for fd in os.listdir(f"/proc/{init[0]}/fd"):
                with contextlib.suppress(OSError):
                    links.append(os.readlink(f"/proc/{init[0]}/fd/{fd}"))
            host_files = [x for x in links if not x.startswith(("socket:", "pipe:", "anon_inode:"))]
            assert [x for x in host_files if x != "/dev/null"] == []


def test_pid_1_reaps_orphans(engine: Engine, busybox_rootfs: Path) -> None:
    """A daemon's child left behind (here a backgrounded ``sleep`` whose shell exits) becomes pid
    1's child; when it ends, pid 1 must collect it, or zombies pile up for the container's life."""
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        c.exec("(sleep 1 </dev/null >/dev/null 2>&1 & echo $! > /tmp/orphan); exit 0", check=True)
        pid = c.read_text("/tmp/orphan").strip()
        assert c.exec(f"cut -d' ' -f4 /proc/{pid}/stat").stdout.strip() == "1"  # pid 1 adopted it
        deadline = time.monotonic() + 10
        while c.exec(f"test -e /proc/{pid}").returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.exec(f"test -e /proc/{pid}").returncode != 0, c.exec(f"cat /proc/{pid}/stat").stdout


_KEYCTL = {"x86_64": (250, 248), "aarch64": (219, 217), "riscv64": (219, 217)}
# In a container (the host image's Python): add a key to the user keyring, then read that
# keyring's id (also through x86_64's x32 number), then set up an io_uring; print each call's
# errno (0: it worked).
_KEYRING_PROBE = """
import ctypes, os, sys
keyctl, add_key = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return 0 if r >= 0 else ctypes.get_errno()
USER_KEYRING, GET_KEYRING_ID = -4, 0
print(call(add_key, ctypes.cast(ctypes.c_char_p(b"user"), ctypes.c_void_p).value,
           ctypes.cast(ctypes.c_char_p(b"left-by-a-test"), ctypes.c_void_p).value,
           ctypes.cast(ctypes.c_char_p(b"secret"), ctypes.c_void_p).value, 6, USER_KEYRING),
      call(keyctl, GET_KEYRING_ID, USER_KEYRING, 0),
      call(keyctl | (1 << 30), GET_KEYRING_ID, USER_KEYRING, 0) if os.uname().machine == "x86_64" else 1,
      call(425, 1, ctypes.addressof(ctypes.create_string_buffer(120))))
"""


def test_containers_cannot_reach_the_shared_kernel_keyring_nor_io_uring(engine: Engine) -> None:
    """Keyrings belong to the user namespace, which every container of an Engine shares: a key
    one test's container stored would be there for the next.  io_uring's kernel threads go on
    while a commit has the container paused.  As in Docker, these calls are refused (EPERM),
    x86_64's x32 variants too; the host itself keeps them."""
    numbers = _KEYCTL.get(os.uname().machine)
    if numbers is None:
        pytest.skip(f"no key syscall numbers known for {os.uname().machine} (see _sys._DENIED_SYSCALLS)")
    argv = [sys.executable, "-c", _KEYRING_PROBE, *map(str, numbers)]
    # the probe itself works on this host: the refusals below come from the container
    outside = subprocess.run(["unshare", "-U", *argv], capture_output=True, text=True)
    if outside.returncode != 0 or outside.stdout.split()[:2] != ["0", "0"]:
        pytest.skip(f"the kernel's keyrings do not work here ({outside.stdout.strip()}{outside.stderr.strip()}): "
                    "a kernel built with CONFIG_KEYS and an unrestricted `unshare -U` are needed")
    for _ in range(2):  # the second container would see the first one's key
        with engine.run("host") as c:
            assert c.exec(argv).stdout.split() == [str(errno.EPERM)] * 4


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="needs real root: it runs a program as another host user (nobody); run the suite as root")
def test_a_set_user_id_program_in_a_writable_layer_is_out_of_other_users_reach() -> None:
    """The writable layer is on the host's filesystem, without ``nosuid``: a set-user-ID root
    program a container leaves there must not be runnable by another user of the host, even
    with the store in a directory everyone may enter (pytest's own tmp dirs are private)."""
    base = Path(tempfile.mkdtemp(prefix="minicontainer-suid-"))
    base.chmod(0o755)
    try:
        with Engine(store=base / "store") as e, e.run("host") as c:
            c.exec("cp /bin/true /tmp/suid && chmod 4755 /tmp/suid", check=True)
            planted = c.upper_dir / "tmp" / "suid"
            assert planted.stat().st_mode & 0o4000
            r = subprocess.run(["runuser", "-u", "nobody", "--", str(planted)], capture_output=True, text=True)
            assert r.returncode != 0 and "ermission denied" in r.stderr, (r.returncode, r.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_container_cannot_change_the_limits_the_next_ones_need(engine: Engine, busybox_rootfs: Path) -> None:
    """The user namespace's limits (/proc/sys/user) are shared by all containers of an Engine;
    rootless, root inside may unmount the read-only /proc/sys.  Without CAP_SYS_RESOURCE
    (as in Docker) it still cannot write them, and the next container starts."""
    image = f"rootfs:{busybox_rootfs}"
    with engine.run(image) as c:
        bounding = int(c.exec("grep CapBnd /proc/self/status | cut -f2").stdout.strip(), 16)
        assert not bounding & (1 << 24)  # CAP_SYS_RESOURCE
        c.exec("umount /proc/sys 2>/dev/null; for f in max_mnt_namespaces max_pid_namespaces; do "
               "echo 0 > /proc/sys/user/$f; done; true")
        assert c.exec("cat /proc/sys/user/max_mnt_namespaces").stdout.strip() != "0"
    with engine.run(image, network="host") as c:  # a fresh clone, no spare: namespaces made now
        assert c.exec(["true"]).returncode == 0


def test_commit_reads_the_layer_of_a_paused_container(engine: Engine, busybox_rootfs: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The writable layer is copied from the host: a process of the container swapping a file
    for a symlink mid-copy could make the copy read the host's file.  So the container's
    processes are stopped meanwhile (as Docker pauses a container it commits), then go on."""
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        p = c.spawn(["sh", "-c", "while :; do :; done"])
        state = f"cut -d' ' -f3 /proc/{p.pid}/stat"
        seen: list[str] = []
        copy = engine.runtime.copy

        def watched(*args: object) -> object:
            seen.append(c.exec(state).stdout.strip())
            return copy(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(engine.runtime, "copy", watched)
        c.commit()
        assert seen == ["T"]
        assert c.exec(state).stdout.strip() in ("R", "S")
        p.kill()


# -- bad input from the user ------------------------------------------------------------------------
def test_mounts_that_cannot_be_made_say_why(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    src_dir, src_file = tmp_path / "d", tmp_path / "f"
    src_dir.mkdir()
    src_file.write_text("x")
    image = f"rootfs:{busybox_rootfs}"
    cases = [
        (Mount(str(src_dir), "/etc/passwd"), rf"cannot mount the directory {src_dir} on /etc/passwd: the image has a"
                                             " file there"),
        (Mount(str(src_file), "/bin"), rf"cannot mount the file {src_file} on /bin: the image has a directory there"),
        (Mount(str(src_file), "/etc/passwd/x"), r"cannot make the mount point /etc/passwd/x: one of its parents is"
                                                " not a directory"),
        (Mount(str(src_dir), "/"), r"root cannot be a mount target"),
        (Mount(str(src_dir), "/data/.."), r"root cannot be a mount target"),
    ]
    for mount, message in cases:
        with pytest.raises(ContainerError, match=message):
            engine.run(image, mounts=[mount])
    assert list(src_dir.iterdir()) == [] and src_file.read_text() == "x"  # no mount point made on the host


def test_bad_environment_is_refused_up_front(engine: Engine, busybox_rootfs: Path) -> None:
    for env, message in (({"A=B": "1"}, "'A=B'"), ({"": "1"}, "''"), ({"X": None}, "'X' is None"),
                         ({"X": "a\0b"}, "'X' holds a NUL")):
        with pytest.raises(ValueError, match=message):
            engine.run(f"rootfs:{busybox_rootfs}", env=env)
    with engine.run(f"rootfs:{busybox_rootfs}", env={"PORT": 8080}) as c:  # numbers become text
        assert c.exec("echo $PORT").stdout == "8080\n"


def test_a_committed_image_does_not_keep_the_old_hostname(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        image = c.commit()
    with engine.run(image) as d:
        assert d.exec('echo "$HOSTNAME $(hostname)"').stdout == f"{d.hostname} {d.hostname}\n"
    with engine.run(f"rootfs:{busybox_rootfs}", env={"HOSTNAME": "chosen"}) as c:
        kept = c.commit()  # asked for: kept
    with engine.run(kept) as d:
        assert d.exec("echo $HOSTNAME").stdout == "chosen\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the rootfs to an id the runtime does not map needs root: "
                    "run the suite as root")
def test_host_network_over_a_rootfs_of_unmapped_ids(busybox_rootfs: Path, tmp_path: Path) -> None:
    """Rootless over a directory of another user (here: a single mapping over uid 12345's tree),
    /etc cannot be copied up to hold the host's resolver file: the container starts without it."""
    root = tmp_path / "theirs"
    shutil.copytree(busybox_rootfs, root, symlinks=True)
    subprocess.run(["chown", "-hR", "12345:12345", str(root)], check=True)
    with Engine(store=tmp_path / "store", idmap="single") as e, \
            e.run(f"rootfs:{root}", network="host") as c:
        assert c.exec(["cat", "/etc/passwd"]).returncode == 0
        assert c.exec(["ls", "/etc/resolv.conf"]).returncode != 0


def test_the_namespace_runs_only_the_listed_functions(engine: Engine, tmp_path: Path) -> None:
    """``Runtime.call`` names a function: only those of ``_namespace_calls.ALLOWED`` run (issue 15)."""
    from pytest_minicontainer.errors import ContainerError
    from pytest_minicontainer.store import TreeAccess

    (tmp_path / "t").mkdir()
    assert str(engine.runtime.call("pytest_minicontainer.store._treehash", "tree_digest",
                                   str(tmp_path / "t"))).startswith("sha256:")
    for module, function in (("pytest_minicontainer.store._fs", "atomic_write_json"),
                             ("pytest_minicontainer.runtime.client", "Runtime"), ("os", "system")):
        with pytest.raises(ContainerError, match="is not a function the user namespace runs"):
            engine.runtime.call(module, function, str(tmp_path / "x"))
    with pytest.raises(ValueError, match="is not a function the user namespace runs"):
        TreeAccess().call("store._fs", "atomic_write_json", str(tmp_path / "x"), {})
    assert not (tmp_path / "x").exists()
