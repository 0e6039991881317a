"""Benchmarks of pytest-minicontainer, measured side by side with the alternatives.

Run everything:        python benchmarks/bench.py
Run some:              python benchmarks/bench.py lifecycle reuse

Every figure is a median over repeated runs, printed next to the same work done by another
tool in the same run (bwrap, docker, GNU tar) as a ratio, so that results from different
machines compare.  Nothing here asserts a time limit: that is not what tests are for.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_minicontainer import Container, Engine

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
BENCHMARKS: dict[str, Callable[[Path, int], None]] = {}


def benchmark(func: Callable[[Path, int], None]) -> Callable[[Path, int], None]:
    BENCHMARKS[func.__name__.removeprefix("bench_")] = func
    return func


def median_ms(func: Callable[[], object], n: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        func()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def make_rootfs(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    for d in ("etc", "tmp", "proc", "dev"):
        (root / d).mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "true", "cat", "ls", "readlink"):
        (root / "bin" / applet).symlink_to("busybox")
    return root


def row(name: str, ms: float, base: float | None = None, base_name: str = "") -> None:
    ratio = f"  ({ms / base:.2f}x {base_name})" if base else ""
    print(f"  {name:<44} {ms:9.2f} ms{ratio}")


def docker_works() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@benchmark
def bench_lifecycle(work: Path, n: int) -> None:
    """Create the clone, start, one exec of /bin/true, stop and remove: per container."""
    rootfs = make_rootfs(work / "rootfs")
    with Engine(store=work / "store") as engine:
        image = engine.image(f"rootfs:{rootfs}")

        def one() -> None:
            with engine.run(image) as c:
                c.exec(["/bin/true"])

        ours = median_ms(one, n)
        row("minicontainer: run + exec true + remove", ours)
        host = engine.image("host")

        def one_host() -> None:
            with engine.run(host) as c:
                c.exec(["/bin/true"])

        row("minicontainer (host image)", median_ms(one_host, n), ours, "of the busybox figure")
    if shutil.which("bwrap"):
        argv = ["bwrap", "--unshare-all", "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev",
                "/bin/true"]
        bw = median_ms(lambda: subprocess.run(argv, check=True), n)
        row("bwrap --unshare-all ... /bin/true", bw)
        print(f"  => minicontainer / bwrap = {ours / bw:.2f}x (target <= 1.5x)")
    else:
        print("  bwrap not installed (apt-get install bubblewrap): no baseline")
    if docker_works():
        # The same busybox tree, imported (no registry needed), so both run the same /bin/true.
        tag = "minicontainer-bench/busybox:latest"
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
        try:
            dk = median_ms(lambda: subprocess.run(["docker", "run", "--rm", "--network", "none", tag, "/bin/true"],
                                                  check=True, capture_output=True), max(5, n // 5), warmup=1)
        finally:
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        row("docker run --rm --network none (same tree)", dk)
        print(f"  => docker / minicontainer = {dk / ours:.1f}x faster (target >= 50x)")
    else:
        print("  docker: no daemon answers here, no baseline")


@benchmark
def bench_exec(work: Path, n: int) -> None:
    """One exec of /bin/true in a running container, against a plain subprocess on the host."""
    rootfs = make_rootfs(work / "rootfs-exec")
    with Engine(store=work / "store") as engine, engine.run(f"rootfs:{rootfs}") as c:
        ours = median_ms(lambda: c.exec(["/bin/true"]), n)
        host = median_ms(lambda: subprocess.run([str(rootfs / "bin" / "true")], check=True), n)
        row("exec /bin/true in a running container", ours, host, "of subprocess.run on the host")
        row("subprocess.run on the host", host)


@benchmark
def bench_reuse(work: Path, n: int) -> None:
    """engine.image() of an image already in the store (target <= 20 ms)."""
    rootfs = make_rootfs(work / "rootfs-reuse")
    tarball = work / "rootfs.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(rootfs), "."], check=True)
    with Engine(store=work / "store") as engine:
        start = time.perf_counter()
        engine.image(f"rootfs:{tarball}")
        first = (time.perf_counter() - start) * 1000
        again = median_ms(lambda: engine.image(f"rootfs:{tarball}"), n)
        row("first engine.image(rootfs tarball): unpack", first)
        row("engine.image() of a stored image", again, first, "of the first")


_SINK = """
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 9000)); srv.listen(16)
buf = bytearray(1 << 20)
def serve(conn):
    with conn:
        mode = conn.recv(9)
        if mode[:1] == b"D":  # download: send the asked number of bytes
            left = int.from_bytes(mode[1:9], "big")
            while left:
                left -= conn.send(memoryview(buf)[:min(left, len(buf))])
            return
        total = len(mode)  # upload: count until end of data, answer the count
        while n := conn.recv_into(buf):
            total += n
        conn.sendall(str(total).encode())
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,)).start()
"""


@benchmark
def bench_publish(work: Path, n: int) -> None:
    """Throughput through publish() against a direct loopback connection (target >= 0.5x)."""
    size = 64 << 20
    chunk = memoryview(bytearray(1 << 20))

    def upload(sock: socket.socket) -> None:
        with sock:
            for _ in range(size // len(chunk)):
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(64) == str(size).encode()

    def download(sock: socket.socket) -> None:
        with sock:
            sock.sendall(b"D" + size.to_bytes(8, "big"))
            got = 0
            while n := sock.recv_into(chunk):
                got += n
            assert got == size

    # The server is python3 from the host image: the same program answers both ways, so the
    # ratio is the forwarder's cost alone.
    with Engine(store=work / "store") as engine, \
            engine.run("host", command=["python3", "-c", _SINK]) as c:
        c.connect(9000, timeout=30).close()
        address = c.publish(9000)
        reps = max(3, n // 5)
        mb = size / (1 << 20)

        def measure(func: Callable[[socket.socket], None]) -> tuple[float, float]:
            direct = median_ms(lambda: func(c.connect(9000)), reps, warmup=1)
            return direct, median_ms(lambda: func(socket.create_connection(address)), reps, warmup=1)

        for name, func in (("upload", upload), ("download", download)):
            direct, published = measure(func)
            row(f"{name} {mb:.0f} MiB, direct loopback ({mb / direct * 1000:.0f} MiB/s)", direct)
            row(f"{name} {mb:.0f} MiB, through publish ({mb / published * 1000:.0f} MiB/s)", published, direct,
                "of direct")
            print(f"  => {name}: publish / direct throughput = {direct / published:.2f}x (target >= 0.5x)")


_UPLOAD = """
import socket, sys, time
size, chunk = 256 << 20, bytes(1 << 20)
sock = socket.create_connection((sys.argv[1], 9000))
start = time.perf_counter()
for _ in range(size // len(chunk)):
    sock.sendall(chunk)
sock.shutdown(socket.SHUT_WR)
assert sock.recv(64) == str(size).encode()
print(time.perf_counter() - start)
"""


@benchmark
def bench_network(work: Path, n: int) -> None:
    """Containers on an engine.network(): lifecycle against network="none", and throughput
    between two members against loopback inside one container."""
    rootfs = make_rootfs(work / "rootfs-net")
    with Engine(store=work / "store") as engine, engine.network("bench") as net:
        image = engine.image(f"rootfs:{rootfs}")

        def plain() -> None:
            with engine.run(image) as c:
                c.exec(["/bin/true"])

        def member() -> None:
            with engine.run(image, network=net, aliases=["m"]) as c:
                c.exec(["/bin/true"])

        base = median_ms(plain, n)
        row('run + exec true + remove, network="none"', base)
        row("the same as a member of a network", median_ms(member, n), base, 'of "none"')
        # python3 of the host image on both ends: the same program, over the bridge or loopback
        sink = _SINK.replace('("127.0.0.1", 9000)', '("", 9000)')
        with engine.run("host", command=["python3", "-c", sink], network=net, aliases=["sink"]) as server, \
                engine.run("host", command=(), network=net) as client:
            server.connect(9000, timeout=30).close()

            def seconds(c: Container, host: str) -> float:
                return statistics.median(float(c.exec(["python3", "-c", _UPLOAD, host], check=True).stdout)
                                         for _ in range(3))

            loop, bridge = seconds(server, "127.0.0.1"), seconds(client, "sink")
            print(f"  upload 256 MiB over loopback in one container  {256 / loop:8.0f} MiB/s")
            print(f"  upload 256 MiB from one member to another       {256 / bridge:8.0f} MiB/s"
                  f"  ({loop / bridge:.2f}x of loopback)")


_STACK = """
services:
  db:
    image: "rootfs:{rootfs}"
    command: ["nc", "-ll", "-p", "5432", "-e", "echo", "hello"]
    healthcheck:
      test: ["CMD-SHELL", "nc -w 1 127.0.0.1 5432 </dev/null | grep -q hello"]
      interval: 1s
      retries: 30
  app:
    image: "rootfs:{rootfs}"
    depends_on:
      db: {{condition: service_healthy}}
    command: ["nc", "-ll", "-p", "8080", "-e", "sh", "-c", "nc -w 2 db 5432 </dev/null"]
"""


@benchmark
def bench_compose(work: Path, n: int) -> None:
    """A fresh, ready two-service stack (app depends on a healthy db) per test: up, one request
    through the app to the db, down; against `docker compose up --wait` of the same file."""
    rootfs = work / "rootfs-compose"
    (rootfs / "bin").mkdir(parents=True)
    for d in ("etc", "tmp", "proc", "dev"):
        (rootfs / d).mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split():
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    project = work / "stack"
    project.mkdir()
    (project / "compose.yaml").write_text(_STACK.format(rootfs=rootfs))
    with Engine(store=work / "store") as engine:
        stack = engine.compose(project)

        def one() -> None:
            with stack.up() as running:
                out = running["app"].exec("nc -w 2 127.0.0.1 8080 </dev/null").stdout
                assert out.strip() == "hello", out

        ours = median_ms(one, max(5, n // 5), warmup=1)
        row("minicontainer: up (healthy db, then app), ask, down", ours)
    if not docker_works():
        print("  docker: no daemon answers here, no baseline")
        return
    # The same tree as a Docker image, the same file naming it (not tested where no daemon runs)
    tag = "minicontainer-bench/busybox-full:latest"
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, check=True, capture_output=True)
    tar.wait()
    docker_project = work / "docker-stack"
    docker_project.mkdir()
    (docker_project / "compose.yaml").write_text(_STACK.format(rootfs="").replace('"rootfs:"', f'"{tag}"'))
    compose = ["docker", "compose", "-f", str(docker_project / "compose.yaml"), "-p", "minicontainerbench"]

    def theirs() -> None:
        subprocess.run([*compose, "up", "--wait", "--quiet-pull"], check=True, capture_output=True)
        try:
            out = subprocess.run([*compose, "exec", "-T", "app", "sh", "-c", "nc -w 2 127.0.0.1 8080 </dev/null"],
                                 check=True, capture_output=True, text=True).stdout
            assert out.strip() == "hello", out
        finally:
            subprocess.run([*compose, "down", "-t", "1"], check=True, capture_output=True)

    try:
        dk = median_ms(theirs, 5, warmup=1)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    row("docker compose up --wait, exec, down", dk)
    print(f"  => docker compose / minicontainer = {dk / ours:.1f}x")


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def _container_pss_kib(container: Container) -> int:
    """PSS (KiB) of a container's processes: everything in its pid namespace (pid 1 first)."""
    ns = container.exec(["readlink", "/proc/self/ns/pid"]).stdout.strip()
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/pid") != ns:
                continue
        except OSError:
            continue
        total += _pss_kib(int(name))
    return total


@benchmark
def bench_scale(work: Path, n: int) -> None:
    """1, 10 and 100 containers alive at once: start time and memory per container."""
    rootfs = make_rootfs(work / "rootfs-scale")
    with Engine(store=work / "store") as engine:
        image = engine.image(f"rootfs:{rootfs}")
        engine.run(image).remove()
        for count in (1, 10, 100):
            times, sizes = [], []
            for _ in range(5 if count < 100 else 1):
                time.sleep(0.1)  # let the zygote prepare its spare, as between tests
                start = time.perf_counter()
                alive = [engine.run(image) for _ in range(count)]
                times.append((time.perf_counter() - start) * 1000 / count)
                sizes.append(sum(_container_pss_kib(c) for c in alive) / count / 1024)
                for c in alive:
                    c.remove()
            print(f"  {count:>3} alive: {statistics.median(times):7.2f} ms to start each, "
                  f"{statistics.median(sizes):6.2f} MiB each (PSS of its processes)")


SUITE = """
import pytest

@pytest.mark.parametrize("n", range(200))
def test_it(n, {fixture}):
    {body}
"""


@benchmark
def bench_suite(work: Path, n: int) -> None:
    """200 generated tests with the `container` fixture vs the same tests without it."""
    rootfs = make_rootfs(work / "rootfs-suite")
    store = work / "store"
    (work / "pytest.ini").write_text(f"[pytest]\nminicontainer_image = rootfs:{rootfs}\n")
    (work / "test_with.py").write_text(SUITE.format(fixture="container", body="container.exec(['/bin/true'])"))
    (work / "test_without.py").write_text(SUITE.format(fixture="tmp_path", body="subprocess.run(['/bin/true'])")
                                          .replace("import pytest", "import pytest, subprocess"))

    def run(name: str, *extra: str) -> float:
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--minicontainer-store={store}",
                name, *extra]
        start = time.perf_counter()
        subprocess.run(argv, cwd=work, check=True, capture_output=True)
        return (time.perf_counter() - start) * 1000

    for label, extra in (("serial", ()), ("-n 2", ("-n", "2")), ("serial, ahead off", ("--minicontainer-ahead=0",)),
                         ("-n 2, ahead off", ("-n", "2", "--minicontainer-ahead=0"))):
        run("test_with.py", *extra)  # warm the store
        pairs = [(run("test_with.py", *extra), run("test_without.py", *extra)) for _ in range(5)]  # interleaved
        with_c, without = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        overhead = statistics.median(w - wo for w, wo in pairs) / 200
        print(f"  {label:<17} with container: {with_c:8.0f} ms, without: {without:8.0f} ms, "
              f"overhead per test {overhead:6.2f} ms (target <= 5 ms)")


AHEAD_SUITE = """
import time

import pytest

from pytest_minicontainer import wait


@pytest.mark.parametrize("n", range({count}))
@pytest.mark.container("{image}", ready=wait.port(5432), timeout=60)
def test_query(n, container):
    time.sleep({work})  # the test's own work
"""
AHEAD_CONFTEST = """
import json, os

def pytest_runtest_logreport(report):
    if report.when == "setup":
        with open(os.environ["SETUP_TIMES"], "a") as f:
            f.write(json.dumps(report.duration) + "\\n")
"""


@benchmark
def bench_ahead(work: Path, n: int) -> None:
    """How long a test waits for a ready seeded postgres (official-style image, Debian's
    postgresql), with the next test's container started ahead (depth 1 and 2) and without."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from tests.debian import debian_rootfs
        from tests.integration.test_official_images import DATA, MMDEBSTRAP
    except Exception as exc:  # a benchmark says why it cannot run
        print(f"  skipped: the test helpers are not importable ({exc})")
        return
    try:
        tar = debian_rootfs("official", MMDEBSTRAP, "MINICONTAINER_TEST_OFFICIAL_ROOTFS")
    except BaseException as exc:  # pytest.skip when mmdebstrap is missing
        print(f"  skipped: no Debian rootfs with postgresql ({exc})")
        return
    store = work / "store"
    ctx = work / "pg"
    shutil.copytree(DATA / "postgres", ctx)
    with Engine(store=store) as engine:
        image = engine.build(context=ctx, build_args={"BASE": f"rootfs:{tar}"}, network="none")
        with engine.run(image, env={"POSTGRES_PASSWORD": "bench"}) as db:
            db.wait_for_port(5432, timeout=60)
            db.stop(timeout=30)
            db.commit("bench/postgres:seeded")
    (work / "conftest.py").write_text(AHEAD_CONFTEST)
    for work_s in (0.15, 0.0):
        (work / "test_ahead.py").write_text(AHEAD_SUITE.format(count=20, image="bench/postgres:seeded", work=work_s))
        for label, extra in (("ahead", ()), ("ahead 2", ("--minicontainer-ahead=2",)),
                             ("not ahead", ("--minicontainer-ahead=0",))):
            times = work / "times.jsonl"
            times.unlink(missing_ok=True)
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--minicontainer-store={store}",
                    "test_ahead.py", *extra]
            start = time.perf_counter()
            subprocess.run(argv, cwd=work, check=True, capture_output=True,
                           env={**os.environ, "SETUP_TIMES": str(times)})
            total = time.perf_counter() - start
            waits = [float(x) * 1000 for x in times.read_text().split()][1:]  # the first test has no previous one
            print(f"  tests doing {work_s * 1000:3.0f} ms of work, {label:<9}: a test waits "
                  f"{statistics.median(waits):6.1f} ms for its ready postgres (median of {len(waits)}), "
                  f"suite {total:5.1f} s")
    print("  docker run of the same committed image: no daemon answers here, no baseline")
    with Engine(store=store) as engine:
        engine.prune(all=True)  # rootless, layers hold files of subordinate ids: leave none behind


@benchmark
def bench_unpack(work: Path, n: int) -> None:
    """Unpacking a rootfs tarball into the store vs GNU tar -x of the same file (MB/s)."""
    tree = make_rootfs(work / "tree")
    for i in range(400):
        (tree / "etc" / f"f{i}.txt").write_bytes(os.urandom(2048 + i * 37))
    for i in range(8):
        (tree / "tmp" / f"big{i}").write_bytes(os.urandom(4 << 20))
    size_mb = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) / 1e6
    for compression, flag in (("tar", ""), ("tar+gzip", "z")):
        tarball = work / f"layer.tar{'.gz' if flag else ''}"
        subprocess.run(["tar", f"-c{flag}f", str(tarball), "-C", str(tree), "."], check=True)
        ours, tars = [], []
        for i in range(max(3, n // 10)):  # interleaved: both see the same machine
            store = work / f"store{i}"
            start = time.perf_counter()
            with Engine(store=store) as engine:
                engine.image(f"rootfs:{tarball}")
            ours.append(time.perf_counter() - start)
            dest = work / f"tar{i}"
            dest.mkdir()
            start = time.perf_counter()
            subprocess.run(["tar", f"-x{flag}f", str(tarball), "-C", str(dest)], check=True)
            tars.append(time.perf_counter() - start)
            shutil.rmtree(store)
            shutil.rmtree(dest)
        o, t = size_mb / statistics.median(ours), size_mb / statistics.median(tars)
        print(f"  {compression:<9} minicontainer {o:7.1f} MB/s, GNU tar -x {t:7.1f} MB/s: {o / t:.2f}x "
              "(target >= 0.8x)")


@benchmark
def bench_build(work: Path, n: int) -> None:
    """A 10-step Containerfile: the first build, then a rebuild with nothing changed (target <= 100 ms)."""
    rootfs = make_rootfs(work / "rootfs-build")
    context = work / "context"
    context.mkdir()
    (context / "app.txt").write_text("app\n")
    (context / "Containerfile").write_text(
        f"FROM rootfs:{rootfs}\nENV A=1\nRUN echo one > /one\nCOPY app.txt /srv/app.txt\nWORKDIR /srv\n"
        "RUN cat app.txt > copy.txt\nLABEL k=v\nUSER root\nEXPOSE 80\nCMD [\"cat\", \"/srv/copy.txt\"]\n")
    with Engine(store=work / "store") as engine:
        start = time.perf_counter()
        engine.build(context=context, tag="bench:latest")
        first = (time.perf_counter() - start) * 1000
        cached = median_ms(lambda: engine.build(context=context, tag="bench:latest"), max(5, n // 5), warmup=1)
        row("first build (2 RUN steps, 1 COPY)", first)
        row("rebuild, nothing changed", cached, first, "of the first")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    parser.add_argument("-n", type=int, default=50, help="repetitions per figure (default 50)")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
          f"Python {platform.python_version()}, uid {os.geteuid()}")
    with tempfile.TemporaryDirectory(prefix="minicontainer-bench-") as tmp:
        for name in names:
            func = BENCHMARKS[name]
            print(f"{name}: {(func.__doc__ or '').strip().splitlines()[0]}")
            work = Path(tmp) / name
            work.mkdir()
            func(work, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
