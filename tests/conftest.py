"""Fixtures shared by the project's own tests: a busybox root filesystem and an Engine.

The rootfs is made from the host's static busybox (Debian: busybox-static), so every test
runs offline.  One store per test session keeps ~/.cache clean and lets tests share images.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_minicontainer.testing import make_busybox_rootfs


def make_rootfs(root: Path) -> Path:
    """A minimal busybox root filesystem with a root and an ``app`` (uid 1000) user."""
    return make_busybox_rootfs(root, users={"app": 1000},
                               files={"data/keep.txt": "original\n", "data/gone.txt": "delete me\n"})


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    """A store of the test's own, emptied at the end: images keep their layer roots' modes
    (0555 is common), which would leave a tree its owner cannot simply delete."""
    from pytest_minicontainer.store import Store

    s = Store(tmp_path / "store")
    yield s
    s.gc(everything=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's docker-registry on 127.0.0.1, one per test module, stopped at its end."""
    from tests.registry_tools import Registry, need_tools

    need_tools()
    r = Registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """docker-registry on 127.0.0.1 with htpasswd auth (user and password in ``.credentials``)."""
    from tests.registry_tools import Registry, need_tools

    need_tools()
    r = Registry(tmp_path_factory.mktemp("auth-registry"), htpasswd=True)
    yield r
    r.stop()


def count_runs(engine: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every container ``engine`` starts from now on (a build step that runs starts one)."""
    started: list[Any] = []
    real = engine.run

    def counting(*args: Any, **kwargs: Any) -> Any:
        started.append(args[0] if args else kwargs.get("image"))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "run", counting)
    return started


@pytest.fixture(scope="session")
def engine(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from pytest_minicontainer import Engine, RuntimeUnavailable

    try:
        Engine.probe()
    except RuntimeUnavailable as exc:
        pytest.skip(f"containers cannot run on this host: {exc.cause}; to enable: {exc.fix}")
    with Engine(store=store_dir) as e:
        yield e
        if e.runtime.idmap.kind == "range":
            _give_back(e, tmp_path_factory.getbasetemp())


def _give_back(engine: Any, basetemp: Path) -> None:
    """Rootless with a subuid range, tests leave files of subordinate ids (layers keep their
    owners): give them back to the user, so that pytest can delete old temporary dirs."""
    from pytest_minicontainer import Mount

    with engine.run("host", mounts=[Mount(basetemp, "/basetemp")]) as c:
        c.exec(["chown", "-hR", "0:0", "/basetemp"])


@contextlib.contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serve ``handler`` on the host's 127.0.0.1 (a free port, yielded) until the block ends."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def outside_server(tmp_path: Path) -> Iterator[str]:
    """An HTTP server in a network namespace of the test's own, routed from the host (root only).

    It stands for "the outside": the container's traffic leaves through slirp4netns and the
    host's routing table, and never goes anywhere but this namespace.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a server outside the host needs a network namespace and veth of the test's own: run the "
                    "suite as root with iproute2 installed (apt-get install iproute2)")
    ns, host_if, address = f"mcout{os.getpid()}", f"mco{os.getpid()}", "198.18.71.2"
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from outside\n")

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", ns)
    server = None
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("addr", "add", "198.18.71.1/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", f"{address}/30", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "route", "add", "default", "via", "198.18.71.1")
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "--bind", address,
                                   "--directory", str(www), "8081"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                               f"import socket; socket.create_connection(('{address}', 8081), 1)"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        yield f"{address} 8081"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the host\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def host_server() -> Iterator[int]:
    """An HTTP server on the host's 127.0.0.1 (slirp4netns shows it to containers as 10.0.2.2)."""
    with http_server(_Hello) as port:
        yield port


def nested_dirs(root: Path, depth: int, name: str = "a") -> None:
    """Make ``depth`` directories ``name`` inside one another below ``root`` (by descriptors:
    the chain can be deeper than a path can name)."""
    fd = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir(name, dir_fd=fd)
        nxt = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
