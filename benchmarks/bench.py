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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_minicontainer import Engine  # noqa: E402

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
    for applet in ("sh", "true", "cat", "ls"):
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
        dk = median_ms(lambda: subprocess.run(["docker", "run", "--rm", "--network", "none", "busybox", "true"],
                                              check=True, capture_output=True), max(5, n // 10), warmup=1)
        row("docker run --rm --network none busybox true", dk)
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
