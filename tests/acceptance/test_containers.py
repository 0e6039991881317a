"""Real test files that use containers, run through pytest in a subprocess.

Each inner run shares the outer session's store (``mc_store``) so images are prepared once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

RunPytest = Callable[..., pytest.RunResult]


def test_outcomes_and_isolation(crun: RunPytest, pytester: pytest.Pytester) -> None:
    marker = pytester.path / "host-must-not-see-this"
    pytester.makepyfile(
        f"""
        import pytest

        def test_exec(container):
            r = container.exec(["sh", "-c", "echo out; echo err >&2; exit 4"])
            assert (r.returncode, r.stdout, r.stderr) == (4, "out\\n", "err\\n")

        def test_write_stays_inside(container):
            container.exec("mkdir -p {marker.parent} && echo x > {marker}", check=True)
            assert container.read_text("{marker}") == "x\\n"

        def test_host_untouched():
            import os
            assert not os.path.exists("{marker}")

        def test_fails(container):
            assert container.exec("exit 3").returncode == 0

        @pytest.mark.container(image="rootfs:/does/not/exist")
        def test_bad_image_errors(container):
            pass
        """
    )
    result = crun("-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1, errors=1)
    assert not marker.exists()


def test_failure_section(crun: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.container(command=["sh", "-c", "for i in $(seq 1 40); do echo line$i; done; exit 7"])
        def test_main_process_failed(container):
            container.write_text("/etc/added-by-test", "new\\n")
            assert container.wait(timeout=10) == 7
            assert False, "the test failed"

        def test_passes(container):
            container.write_text("/etc/added-by-passing-test", "new\\n")
        """
    )
    result = crun()
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*AssertionError: the test failed*",
        "*- minicontainer * (host) -*",
        "image:   host (sha256:*)",
        "command: sh -c 'for i in * exit 7'  ->  exit status 7",
        "logs (last 10 of 40 lines):",
        "  | line31",
        "*  | line40",
        "changes (*):",
        "*  A /etc/added-by-test",
    ])
    assert "| line30" not in out  # short: only the last lines
    assert "added-by-passing-test" not in out  # passing tests get no section


def test_container_factory_and_cleanup(crun: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        seen = []

        def test_factory(container_factory):
            a = container_factory()
            b = container_factory("host", env={"X": "1"}, hostname="bee", command=["sleep", "600"])
            assert a.id != b.id
            assert b.exec("echo $X $(hostname)").stdout == "1 bee\\n"
            a.write_text("/tmp/only-a", "a")
            assert b.exec(["test", "-e", "/tmp/only-a"]).returncode == 1
            seen.extend([a, b])

        def test_removed_after_the_test():
            assert len(seen) == 2 and not any(c.running for c in seen)

        def test_rejects_unknown_options(container_factory):
            with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
                container_factory(colour="red")
            with pytest.raises(TypeError, match="env must be a dict"):
                container_factory(env=["A=1"])
        """
    )
    crun("-p", "no:randomly").assert_outcomes(passed=3)


def test_marker_options_reach_the_container(crun: RunPytest, pytester: pytest.Pytester) -> None:
    data = pytester.mkdir("data")
    (data / "in.txt").write_text("from host\n")
    pytester.makepyfile(
        f"""
        import pytest

        pytestmark = pytest.mark.container(env={{"LEVEL": "module", "KEEP": "yes"}}, workdir="/tmp")

        def test_module(container):
            assert container.exec("echo $LEVEL:$KEEP:$(pwd)").stdout == "module:yes:/tmp\\n"

        @pytest.mark.container(env={{"LEVEL": "function"}}, mounts=["{data}:/data:ro"])
        def test_function_overrides_env_keeps_workdir(container):
            assert container.exec("echo $LEVEL:$KEEP:$(pwd)").stdout == "function::/tmp\\n"
            assert container.read_text("/data/in.txt") == "from host\\n"
            assert container.exec("echo x > /data/new").returncode != 0

        @pytest.mark.container(command="echo started via sh; sleep 600")
        def test_command_string(container):
            import time
            for _ in range(100):
                if "started via sh" in container.logs():
                    break
                time.sleep(0.05)
            assert container.command == ["/bin/sh", "-c", "echo started via sh; sleep 600"]
            assert "started via sh" in container.logs()

        @pytest.mark.container(network="host")
        def test_network_host(container):
            import socket
            assert container.exec("hostname").returncode == 0
        """
    )
    crun().assert_outcomes(passed=4)


def test_ready_callable_strategy_and_timeout(crun: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def flag(c):
            return c.exec(["test", "-e", "/tmp/mc-example-ready"]).returncode == 0

        class FileStrategy:
            def wait(self, container, timeout):
                import time
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if flag(container):
                        return True
                    time.sleep(0.05)
                return False

        @pytest.mark.container(command=["sh", "-c", "sleep 0.3; touch /tmp/mc-example-ready; sleep 600"],
                               ready=flag, timeout=20)
        def test_ready_callable(container):
            assert flag(container)

        @pytest.mark.container(command=["sh", "-c", "sleep 0.3; touch /tmp/mc-example-ready; sleep 600"],
                               ready=FileStrategy(), timeout=20)
        def test_ready_strategy(container):
            assert flag(container)

        @pytest.mark.container(command=["sleep", "600"], ready=flag, timeout=0.5)
        def test_never_ready(container):
            pass

        @pytest.mark.container(command=["sleep", "600"], ready=FileStrategy(), timeout=0.5)
        def test_strategy_gives_up(container):
            pass

        @pytest.mark.container(command=["sh", "-c", "echo cannot start; exit 3"], ready=flag, timeout=60)
        def test_main_process_dies(container):
            pass

        from pytest_minicontainer import wait

        @pytest.mark.container(command=["sh", "-c", "sleep 0.2; echo server up; sleep 600"],
                               ready=wait.log("server up"), timeout=20)
        def test_library_strategy(container):
            assert "server up" in container.logs()

        @pytest.mark.container(command=["sleep", "600"], ready=wait.log("never printed"), timeout=0.5)
        def test_library_strategy_times_out(container):
            pass
        """
    )
    result = crun("-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=4)
    result.stdout.fnmatch_lines_random([
        "E   *ContainerError: container * (host) was not ready: ready check flag still returned False "
        "after the timeout of 0.5s",
        "E   *ContainerError: container * (host) was not ready: FileStrategy.wait() gave up after 0.5s",
        "E   *ContainerError: container * (host) was not ready: its main process exited with status 3*",
        "E   *WaitTimeout: *never printed*",
        "  | cannot start",
    ])
    # The process that died was noticed at once, not after the 60 s timeout.
    assert result.duration < 50


def test_marker_ports_publish_a_service(crun: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_ports="""
        import socket
        import pytest
        from pytest_minicontainer import wait

        SERVER = ["python3", "-c", "import socket; s = socket.socket(); "
                  "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 8123)); "
                  "s.listen()\\nwhile True:\\n c, _ = s.accept(); c.sendall(b'hello from inside'); c.close()"]

        @pytest.mark.container(command=SERVER, ports=[8123], ready=wait.port(8123), timeout=20)
        def test_published(container):
            host, port = container.ports[8123]
            assert host == "127.0.0.1" and port != 8123
            with socket.create_connection((host, port), timeout=10) as sock:
                data = b""
                while chunk := sock.recv(100):
                    data += chunk
            assert data == b"hello from inside"
        """,
        test_bad_ports="""
        import pytest

        @pytest.mark.container(ports=["80"])
        def test_bad_ports(container):
            pass
        """,
    )
    result = crun("test_ports.py")
    result.assert_outcomes(passed=1)
    result = crun("test_bad_ports.py")
    result.stdout.fnmatch_lines(["*ports must be a list of port numbers*"])
    assert result.ret != 0


def test_hooks_from_a_conftest(crun: RunPytest, pytester: pytest.Pytester) -> None:
    events = pytester.path / "events.jsonl"
    pytester.makeconftest(
        f"""
        import json

        def _log(**event):
            with open({str(events)!r}, "a") as f:
                f.write(json.dumps(event) + "\\n")

        def pytest_minicontainer_container_options(config, options):
            options["env"]["FROM_HOOK"] = "yes"
            _log(event="options", image=str(options["image"]))

        def pytest_minicontainer_resolve_image(config, engine, reference):
            if reference.startswith("myimg:"):
                return "host"
            return None

        def pytest_minicontainer_container_started(config, container):
            _log(event="started", id=container.id, image=str(container.image))

        def pytest_minicontainer_container_finished(config, container, exit_status):
            _log(event="finished", id=container.id, status=exit_status)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.container(image="myimg:latest", command=["sh", "-c", "exit 5"])
        def test_marker_image(container):
            assert container.exec("echo $FROM_HOOK").stdout == "yes\\n"
            assert container.wait(timeout=10) == 5

        def test_factory(container_factory):
            c = container_factory("myimg:other", env={"X": "1"}, command=["sleep", "600"])
            assert c.exec("echo $FROM_HOOK$X").stdout == "yes1\\n"

        def test_engine_run(minicontainer):
            with minicontainer.run("myimg:direct", command=()) as c:
                assert c.exec("echo $FROM_HOOK").stdout == "yes\\n"
        """
    )
    crun("-p", "no:randomly").assert_outcomes(passed=3)
    log = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["image"] for e in log if e["event"] == "options"] == ["myimg:latest", "myimg:other", "myimg:direct"]
    started = [e for e in log if e["event"] == "started"]
    finished = {e["id"]: e["status"] for e in log if e["event"] == "finished"}
    assert len(started) == 3 and set(finished) == {e["id"] for e in started}
    first, second, _direct = (e["id"] for e in started)
    assert finished[first] == 5
    assert finished[second] != 5  # killed by the teardown: a signal status, not 5


def _kept_dir(out: str) -> Path:
    line = next(line for line in out.splitlines() if line.startswith("kept:"))
    return Path(line.split(None, 1)[1])


def test_keep_failed(crun: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_fails(container):
            container.write_text("/etc/evidence.txt", "look here\\n")
            assert False

        def test_passes(container):
            container.write_text("/etc/not-kept.txt", "x")
        """
    )
    result = crun("--minicontainer-keep=failed")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "kept:    /*",
        "shell:   *",
        "*= minicontainer: kept the writable layers of 1 test(s) =*",
        "*::test_fails",
    ])
    kept = _kept_dir(out)
    found = [p for p in kept.rglob("evidence.txt")]
    assert found and found[0].read_text() == "look here\n"
    assert not list(kept.rglob("not-kept.txt"))
    assert [line for line in out.splitlines() if line.startswith("kept:")] == [f"kept:    {kept}"]
    # The printed command really opens a shell on the kept files.
    shell = next(line for line in out.splitlines() if line.startswith("shell:")).split(None, 1)[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    opened = subprocess.run(shell, shell=True, input="cat /etc/evidence.txt\n", capture_output=True,
                            text=True, env=env, timeout=60)
    # -t: the shell has a terminal, which echoes what is typed and shows the prompt ("# ")
    assert any(line.endswith("look here") for line in opened.stdout.splitlines()), opened.stdout + opened.stderr


def test_keep_always_and_never(crun: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_passes(container):
            container.write_text("/etc/kept-anyway.txt", "x")
        """
    )
    result = crun("--minicontainer-keep=always", "-n", "2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*= minicontainer: kept the writable layers of 1 test(s) =*",
        "*::test_passes",
        "  * (host): /*",
        "    shell: *",
    ])
    kept = Path(next(line for line in result.stdout.lines if "(host): /" in line).split("(host): ", 1)[1])
    assert list(kept.rglob("kept-anyway.txt"))

    pytester.makeini("[pytest]\nminicontainer_keep = never\n")
    result = crun()
    result.assert_outcomes(passed=1)
    assert "kept" not in result.stdout.str()


def test_parametrized_images_run(crun: RunPytest, pytester: pytest.Pytester) -> None:
    rootfs = pytester.mkdir("rootfs")
    for d in ("bin", "etc", "tmp", "proc", "dev"):
        (rootfs / d).mkdir()
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "cat", "echo", "test"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "os").write_text("tiny\n")
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.parametrize("container_image", ["host", "rootfs:{rootfs}"])
        def test_each_image(container, container_image):
            has_python = container.exec(["test", "-e", "/usr/bin/python3"]).returncode == 0
            assert has_python == (container_image == "host")
        """
    )
    result = crun("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random([
        "*::test_each_image[[]host[]] PASSED*",
        f"*::test_each_image[[]rootfs:{rootfs}[]] PASSED*",
    ])


def test_snapshot_pattern(crun: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def snapshot(minicontainer):
            with minicontainer.run("host", command=()) as c:
                c.exec("mkdir -p /srv/mc-example-app && echo v1 > /srv/mc-example-app/VERSION", check=True)
                return c.commit()

        @pytest.mark.parametrize("n", range(3))
        def test_clone(container_factory, snapshot, n):
            c = container_factory(snapshot)
            assert c.read_text("/srv/mc-example-app/VERSION") == "v1\\n"
            assert c.exec("ls /srv/mc-example-app").stdout == "VERSION\\n"  # no other test's file
            c.write_text(f"/srv/mc-example-app/from-test-{n}", "x")
        """
    )
    crun().assert_outcomes(passed=3)


XDIST_FILE = """
    import json, os, socket
    import pytest

    @pytest.mark.parametrize("n", range(8))
    def test_many(container, minicontainer, n):
        container.write_text("/tmp/mine", str(n))
        assert container.read_text("/tmp/mine") == str(n)
        # Every container has its own network namespace: the same port binds in all of them.
        p = container.spawn(["python3", "-c", "import socket, time; s = socket.socket(); "
                             "s.bind(('127.0.0.1', 18080)); s.listen(); time.sleep(60)"])
        r = container.exec(["python3", "-c", "import socket, time\\n"
                            "for _ in range(200):\\n"
                            "    try:\\n"
                            "        socket.create_connection(('127.0.0.1', 18080)).close(); break\\n"
                            "    except OSError: time.sleep(0.02)\\n"
                            "else: raise SystemExit(1)"])
        assert r.returncode == 0, r.stderr
        p.kill()
        with open(os.environ["RECORD"], "a") as f:
            f.write(json.dumps({"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "id": container.id,
                                "store": str(minicontainer.store_path)}) + "\\n")
"""


@pytest.mark.parametrize("workers", [None, "2"])
def test_xdist_shares_the_store_not_containers(
    crun: RunPytest, pytester: pytest.Pytester, mc_store: Path, monkeypatch: pytest.MonkeyPatch,
    workers: str | None,
) -> None:
    record = pytester.path / "record.jsonl"
    monkeypatch.setenv("RECORD", str(record))
    pytester.makepyfile(XDIST_FILE)
    result = crun(*(["-n", workers] if workers else []))
    result.assert_outcomes(passed=8)
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    assert len({r["id"] for r in rows}) == 8
    assert {r["store"] for r in rows} == {str(mc_store)}
    if workers:
        assert {r["worker"] for r in rows} == {"gw0", "gw1"}


def test_store_from_env(crun: RunPytest, pytester: pytest.Pytester, mc_store: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINICONTAINER_STORE", str(mc_store))
    pytester.makepyfile(
        f"""
        def test_store(minicontainer):
            assert str(minicontainer.store_path) == {str(mc_store)!r}
        """
    )
    crun(store=False).assert_outcomes(passed=1)


def test_header_line(crun: RunPytest, pytester: pytest.Pytester, mc_store: Path) -> None:
    pytester.makepyfile("def test_it(container):\n    pass\n")
    result = crun()
    mode = "root" if os.geteuid() == 0 else "rootless"
    result.stdout.fnmatch_lines([f"minicontainer: {mode}, id mapping *, store {mc_store}"])


def _refusing_host() -> list[str]:
    """A command prefix that runs pytest where creating user namespaces fails (ENOSPC)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs util-linux's unshare(1) to build a refusing host: apt-get install util-linux")
    return [unshare, "--user", "--map-root-user", "sh", "-c",
            'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh"]


@pytest.mark.parametrize("mode", ["skip", "error"])
def test_unavailable_host(containers_available: None, pytester: pytest.Pytester, mc_store: Path,
                          mode: str) -> None:
    pytester.makepyfile(
        """
        def test_needs_a_container(container):
            pass

        def test_plain():
            pass
        """
    )

    result = pytester.run(*_refusing_host(), sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                          f"--minicontainer-store={pytester.path / 'store'}",
                          f"--minicontainer-unavailable={mode}", "-rs", timeout=120)
    if mode == "skip":
        result.assert_outcomes(passed=1, skipped=1)
        result.stdout.fnmatch_lines(["SKIPPED * minicontainer: containers cannot run on this host:*(fix: *)"])
    else:
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines([
            "*ERROR at setup of test_needs_a_container*",
            "minicontainer: containers cannot run on this host: *",
            "  fix: *",
            "  (or pass --minicontainer-unavailable=skip to skip the tests that need containers)",
        ])
        assert "During handling" not in result.stdout.str()


def test_default_store_follows_xdg_cache_home(crun: RunPytest, pytester: pytest.Pytester,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With no option, ini key or MINICONTAINER_STORE, header and engine agree on the default."""
    cache = pytester.path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    pytester.makepyfile(
        f"""
        def test_store(minicontainer):
            assert str(minicontainer.store_path) == {str(cache / "pytest-minicontainer")!r}
        """
    )
    result = crun(store=False)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"minicontainer: *, store {cache}/pytest-minicontainer"])


def test_xdist_workers_share_one_unpacked_image(crun: RunPytest, pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A rootfs tarball used by both workers is unpacked into the shared store once."""
    rootfs = pytester.mkdir("rootfs")
    (rootfs / "bin").mkdir()
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sh").symlink_to("busybox")
    tarball = pytester.path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(rootfs, arcname=".")
    store = pytester.path / "fresh-store"
    record = pytester.path / "workers.txt"
    monkeypatch.setenv("RECORD", str(record))
    pytester.makepyfile(
        f"""
        import os, pytest

        @pytest.mark.parametrize("n", range(6))
        @pytest.mark.container(image="rootfs:{tarball}")
        def test_x(container, n):
            assert container.exec("echo ok").stdout == "ok\\n"
            with open(os.environ["RECORD"], "a") as f:
                f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
        """
    )
    crun("-n", "2", f"--minicontainer-store={store}", store=False).assert_outcomes(passed=6)
    assert set(record.read_text().split()) == {"gw0", "gw1"}
    assert len(list((store / "layers").iterdir())) == 1


@pytest.mark.parametrize("how", ["option", "ini"])
def test_pull_never_keeps_off_the_network(crun: RunPytest, pytester: pytest.Pytester, how: str) -> None:
    """``never`` must fail on an image missing from the store instead of asking a registry."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.container(image="no-such-image-minicontainer:1")
        def test_it(container):
            pass
        """
    )
    if how == "ini":
        pytester.makeini("[pytest]\nminicontainer_pull = never\n")
    result = crun(*(["--minicontainer-pull=never"] if how == "option" else []))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no-such-image-minicontainer:1*pull policy is 'never'*"])
    assert "RegistryError" not in result.stdout.str()  # no registry was asked


def test_relative_image_paths(crun: RunPytest, pytester: pytest.Pytester, busybox_rootfs: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The ini key's ``rootfs:`` path is relative to the ini file, wherever pytest runs (as the
    store's), and so is one a test declares (marker, parametrized ``container_image``); one
    passed to ``container_factory`` in code means the working directory of that moment."""
    for name in ("ini", "a", "b"):
        root = pytester.path / name / "rootfs"
        shutil.copytree(busybox_rootfs, root, symlinks=True)
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc" / "which").write_text(f"{name}\n")
    pytester.makeini("[pytest]\nminicontainer_image = rootfs:ini/rootfs\n")
    sub = pytester.mkpydir("tests")
    (sub / "test_paths.py").write_text(
        "import pytest\n\n"
        "def test_ini(container):\n"
        "    assert container.read_text('/etc/which') == 'ini\\n'\n\n"
        "@pytest.mark.parametrize('d', ['a', 'b'])\n"
        "def test_cwd(container_factory, monkeypatch, d):\n"
        f"    monkeypatch.chdir({str(pytester.path)!r} + '/' + d)\n"
        "    assert container_factory('rootfs:rootfs').read_text('/etc/which') == d + '\\n'\n\n"
        "@pytest.mark.container('rootfs:a/rootfs')\n"
        "def test_marker(container):\n"
        "    assert container.read_text('/etc/which') == 'a\\n'\n\n"
        "@pytest.mark.parametrize('container_image', ['rootfs:b/rootfs'])\n"
        "def test_parametrized(container):\n"
        "    assert container.read_text('/etc/which') == 'b\\n'\n"
    )
    monkeypatch.chdir(sub)
    crun().assert_outcomes(passed=5)
