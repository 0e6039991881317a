"""Services in containers, against real servers: lifecycle, reaching them, readiness, clones.

The servers are real programs: busybox ``httpd`` (with a CGI key-value store) and ``nc`` in
the busybox rootfs, and ``redis-server`` from a Debian rootfs that ``mmdebstrap`` builds once
and caches (those tests are marked ``slow``).  Every server listens on the container's own
loopback, which is private to it (``network="none"``), or on 127.0.0.1 for the one test of
``network="host"``; every container is removed by the test that started it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minicontainer import Container, ContainerError, Engine, HealthCheck, Image, Mount, WaitTimeout, wait
from tests.debian import debian_rootfs

HTTPD = ('mkdir -p /www/cgi-bin && echo "${MSG:-hello}" > /www/index.html '
         "&& exec httpd -f -vv -p 127.0.0.1:8080 -h /www")
# A key-value store over HTTP: GET /cgi-bin/kv?key=value stores, GET /cgi-bin/kv?key reads.
KV_CGI = r"""#!/bin/sh
k="${QUERY_STRING%%=*}"; v="${QUERY_STRING#*=}"
mkdir -p /data/kv
if [ "$k" != "$QUERY_STRING" ]; then printf %s "$v" > "/data/kv/$k"; fi
printf 'Content-Type: text/plain\r\n\r\n'
cat "/data/kv/$k" 2>/dev/null
"""
CLIENTS = 20


@pytest.fixture(scope="module")
def busybox(engine: Engine, busybox_rootfs: Path) -> Image:
    return engine.image(f"rootfs:{busybox_rootfs}")


@pytest.fixture
def httpd(engine: Engine, busybox: Image) -> Iterator[Container]:
    """busybox httpd on the container's 127.0.0.1:8080, ready, with the key-value CGI."""
    with engine.run(busybox, command=HTTPD) as c:
        c.wait_for_port(8080, timeout=30)
        c.write_text("/www/cgi-bin/kv", KV_CGI, mode=0o755)
        yield c


def http_get(address: tuple[str, int], path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=30) as response:
        body: bytes = response.read()
    return body.decode()


def raw_get(sock: socket.socket, path: str = "/") -> str:
    """An HTTP/1.0 GET over an already connected socket; returns the body."""
    with sock:
        sock.settimeout(30)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head
    return body.decode()


def echo_through(address: tuple[str, int], payload: bytes) -> bytes:
    """Send ``payload``, half-close, read everything back (sending and reading at once)."""
    with socket.create_connection(address, timeout=30) as sock:
        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
        sender.join(30)
    return b"".join(chunks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- main process and lifecycle -------------------------------------------------------------------
def test_main_process_logs_wait_and_status(engine: Engine, busybox: Image) -> None:
    with engine.run(busybox, command="echo out; echo err >&2; exit 7") as c:
        assert c.wait(timeout=30) == 7
        assert not c.running
        assert "out\n" in c.logs() and "err\n" in c.logs()


def test_stop_sends_the_stop_signal_then_the_container_commits(engine: Engine, busybox: Image) -> None:
    script = "trap 'echo stopping cleanly; exit 0' TERM; echo up; while :; do sleep 0.05; done"
    with engine.run(busybox, command=script) as c:
        c.wait_for_log("^up$", timeout=30)
        c.write_text("/srv/state.txt", "kept\n")
        assert c.stop(timeout=30) == 0
        assert not c.running and c.exit_status == 0
        assert "stopping cleanly" in c.logs()
        image = c.commit()
    with engine.run(image, command=()) as clone:
        assert clone.read_text("/srv/state.txt") == "kept\n"


def test_stop_uses_the_images_stopsignal(engine: Engine, busybox: Image) -> None:
    usr1 = dataclasses.replace(busybox, config=busybox.config.with_changes(stop_signal="SIGUSR1"))
    script = "trap 'echo got USR1; exit 0' USR1; echo up; while :; do sleep 0.05; done"
    with engine.run(usr1, command=script) as c:
        c.wait_for_log("^up$", timeout=30)
        assert c.stop(timeout=30) == 0
        assert "got USR1" in c.logs()


def test_stop_escalates_to_sigkill(engine: Engine, busybox: Image) -> None:
    # An ignored SIGTERM is inherited by sleep too: only SIGKILL ends this one.
    with engine.run(busybox, command="trap '' TERM; echo up; sleep 600") as c:
        c.wait_for_log("^up$", timeout=30)
        assert c.stop(timeout=0.5) == -9
        assert not c.running


# -- reaching a service ---------------------------------------------------------------------------
def test_same_port_in_two_containers_at_once(engine: Engine, busybox: Image) -> None:
    with engine.run(busybox, command=HTTPD, env={"MSG": "first"}) as a, \
            engine.run(busybox, command=HTTPD, env={"MSG": "second"}) as b:
        a.wait_for_port(8080, timeout=30)
        b.wait_for_port(8080, timeout=30)
        assert raw_get(a.connect(8080)) == "first\n"
        assert raw_get(b.connect(8080)) == "second\n"
        pa, pb = a.publish(8080), b.publish(8080)
        assert pa != pb
        assert http_get(pa) == "first\n" and http_get(pb) == "second\n"
        assert a.running and b.running  # neither lost its port to the other


def test_connect_to_a_closed_port_says_why(engine: Engine, busybox: Image) -> None:
    refused = r"cannot connect to 127.0.0.1 or ::1 port 9 .*Connection refused.*running"
    with engine.run(busybox, command="sleep 600") as c, pytest.raises(ContainerError, match=refused):
        c.connect(9, timeout=0.3)


def test_publish_and_ports(httpd: Container) -> None:
    address = httpd.publish(8080)
    assert address[0] == "127.0.0.1" and address[1] > 0
    assert httpd.publish(8080) == address  # publishing twice is one forwarder
    assert httpd.ports == {8080: address}
    assert http_get(address) == "hello\n"
    assert http_get(address, "/cgi-bin/kv?colour=blue") == "blue"
    assert httpd.read_text("/data/kv/colour") == "blue"


def test_run_with_ports_publishes_at_start(engine: Engine, busybox: Image) -> None:
    with engine.run(busybox, command=HTTPD, ports=[8080]) as c:
        assert list(c.ports) == [8080]
        wait.port(8080).wait(c, 30)
        assert http_get(c.ports[8080]) == "hello\n"


def test_publish_passes_a_half_close_on(engine: Engine, busybox: Image) -> None:
    # nc -ll -e cat: cat echoes until it reads end of file, and only then does the server close:
    # the client's half-close must travel through the forwarder, and the server's close back.
    # (-ll keeps listening: the readiness probe's connection would use up a plain -l.)
    with engine.run(busybox, command=["nc", "-ll", "-p", "7000", "-e", "cat"], ports=[7000]) as c:
        c.wait_for_port(7000, timeout=30)
        payload = os.urandom(300_000)
        assert echo_through(c.ports[7000], payload) == payload


# A threaded echo server for the host image's python3: many connections at once, each echoed
# until the client half-closes, then closed in turn.  (busybox ``nc -ll`` resets connections
# under concurrent load, with or without the forwarder, so it cannot serve this test.)
ECHO_SERVER = """
import socket, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 7000))
srv.listen(64)
def serve(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def test_publish_forwards_concurrent_connections_both_ways(engine: Engine) -> None:
    with engine.run("host", command=["python3", "-c", ECHO_SERVER]) as c:
        c.wait_for_port(7000, timeout=30)
        address = c.publish(7000)
        payloads = [os.urandom(64 * 1024 + i * 4099) for i in range(CLIENTS)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            answers = list(pool.map(lambda p: echo_through(address, p), payloads))
        assert [hashlib.sha256(a).hexdigest() for a in answers] == [hashlib.sha256(p).hexdigest() for p in payloads]
        forwarder = c._forwarders[7000]
        for _ in range(200):  # every forwarded connection is closed once both sides are done
            if forwarder.connections == 0:
                break
            time.sleep(0.05)
        assert forwarder.connections == 0


def test_publish_many_http_clients(httpd: Container) -> None:
    httpd.write_bytes("/www/big.bin", os.urandom(1 << 20))
    expected = hashlib.sha256(httpd.read_bytes("/www/big.bin")).hexdigest()
    address = httpd.publish(8080)

    def fetch(_: int) -> str:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/big.bin", timeout=30) as r:
            return hashlib.sha256(r.read()).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        assert list(pool.map(fetch, range(CLIENTS))) == [expected] * CLIENTS


def test_publish_when_nothing_listens_resets_the_client(engine: Engine, busybox: Image) -> None:
    with engine.run(busybox, command="sleep 600") as c:
        address = c.publish(9999)
        with socket.create_connection(address, timeout=30) as s:
            try:
                got = s.recv(100)
            except ConnectionResetError:
                got = b""
        assert got == b""


def test_stop_closes_the_published_port(engine: Engine, busybox: Image) -> None:
    with engine.run(busybox, command=HTTPD, ports=[8080]) as c:
        c.wait_for_port(8080, timeout=30)
        address = c.ports[8080]
        assert http_get(address) == "hello\n"
        c.stop()
        with pytest.raises(OSError), socket.create_connection(address, timeout=5):
            pass
        assert c.ports == {8080: address}  # still says where it was, for reports
        with pytest.raises(ContainerError, match="stopped"):
            c.publish(8081)
        with pytest.raises(ContainerError, match="stopped"):  # not the dead address of before
            c.publish(8080)


def test_a_server_on_ipv6_loopback_only_is_found(engine: Engine, busybox: Image) -> None:
    """Servers told to listen on "localhost" often get ::1 alone: connect, wait_for_port, the
    http strategy and publish all look there after 127.0.0.1."""
    cmd = "mkdir -p /www && echo six > /www/index.html && exec httpd -f -p [::1]:8080 -h /www"
    with engine.run(busybox, command=cmd) as c:
        c.wait_for_port(8080, timeout=30)
        wait.http("/", 8080, body="six").wait(c, 30)
        with c.connect(8080) as sock:
            assert sock.family == socket.AF_INET6
        assert http_get(c.publish(8080)) == "six\n"
        with pytest.raises(ContainerError, match=r"cannot connect to 127\.0\.0\.1 port 8080"):
            c.connect(8080, timeout=0.2, host="127.0.0.1")


def test_publish_checks_the_port(httpd: Container) -> None:
    with pytest.raises(ValueError, match="between 1 and 65535"):
        httpd.publish(0)


def test_host_network_publishes_the_port_itself(engine: Engine, busybox: Image) -> None:
    port = free_port()
    cmd = f"mkdir -p /www && echo on-host > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
    with engine.run(busybox, command=cmd, network="host") as c:
        c.wait_for_port(port, timeout=30)
        assert c.publish(port) == ("127.0.0.1", port)
        assert http_get(("127.0.0.1", port)) == "on-host\n"


def test_host_image_python_http_server(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("from the host image\n")
    with engine.run("host", command=["python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                     "/srv/www", "8000"], mounts=[Mount(tmp_path, "/srv/www", readonly=True)]) as c:
        wait.http("/hello.txt", 8000).wait(c, 30)
        assert http_get(c.publish(8000), "/hello.txt") == "from the host image\n"


# -- outbound access: network="slirp" ------------------------------------------------------------------
def _needs_slirp() -> None:
    if shutil.which("slirp4netns") is None:
        pytest.skip('network="slirp" needs slirp4netns: apt-get install slirp4netns')
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        pytest.skip('network="slirp" needs read-write access to /dev/net/tun, which this user lacks: '
                    "chmod 0666 /dev/net/tun (the mode most distributions' udev rules give it)")


def _slirp_children(engine: Engine) -> list[int]:
    """slirp4netns processes the engine's zygote started and that still run."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{name}/stat") as f:
                comm, rest = f.read().split(") ", 1)
                fields = rest.split()
                if comm.endswith("(slirp4netns") and fields[0] != "Z" and int(fields[1]) == engine.runtime.zygote_pid:
                    found.append(int(name))
    return found


def test_slirp_network_keeps_its_own_loopback_and_not_the_hosts(
        engine: Engine, busybox: Image, host_server: int) -> None:
    _needs_slirp()
    with engine.run(busybox, command=HTTPD, network="slirp", ports=[8080]) as c:
        assert "10.0.2.100/24" in c.exec("ip addr show tap0").stdout
        assert c.read_text("/etc/resolv.conf") == "nameserver 10.0.2.3\n"  # slirp4netns's DNS
        assert all(ch.path != "/etc/resolv.conf" for ch in c.diff())
        # 10.0.2.2 is not the host's 127.0.0.1: a service listening there only for local users
        # does not answer the container (issue 14, finding 7)
        out = c.exec(f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 10.0.2.2 {host_server}", timeout=30)
        assert "hello from the host" not in out.stdout
        assert out.returncode != 0 and out.stdout == "", out
        c.wait_for_port(8080, timeout=30)  # its own loopback, reached as before
        assert http_get(c.ports[8080]) == "hello\n"
        assert _slirp_children(engine)
    for _ in range(200):  # slirp4netns ends with the container
        if not _slirp_children(engine):
            break
        time.sleep(0.05)
    assert _slirp_children(engine) == []


def test_slirp_network_reaches_the_outside(engine: Engine, busybox: Image, outside_server: str) -> None:
    _needs_slirp()
    with engine.run(busybox, command=(), network="slirp") as c:
        # busybox's static wget crashes on some hosts when its NSS lookups find no libraries; nc does not
        out = c.exec(f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {outside_server}", timeout=30)
        assert out.returncode == 0 and out.stdout.startswith("HTTP/1.0 200"), out
        assert out.stdout.endswith("\r\n\r\nhello from outside\n")


def test_slirp_absent_is_a_clear_error(engine: Engine, busybox: Image, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ContainerError, match=r"needs slirp4netns(.|\n)*apt-get install slirp4netns"):
        engine.run(busybox, network="slirp")


def test_slirp_failure_shows_what_slirp4netns_said(engine: Engine, busybox: Image, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "slirp4netns"
    fake.write_text("#!/bin/sh\necho 'open(\"/dev/net/tun\"): Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    with pytest.raises(ContainerError) as info:
        engine.run(busybox, network="slirp")
    assert 'open("/dev/net/tun"): Permission denied' in str(info.value)
    assert "chmod 0666 /dev/net/tun" in str(info.value)
    with engine.run(busybox, command=()) as c:  # the engine is fine afterwards
        assert c.exec("true").returncode == 0


# -- readiness --------------------------------------------------------------------------------------
def test_wait_for_port_waits_for_a_slow_start(engine: Engine, busybox: Image) -> None:
    with engine.run(busybox, command="sleep 0.5; " + HTTPD) as c:
        c.wait_for_port(8080, timeout=30)
        assert raw_get(c.connect(8080, timeout=1)) == "hello\n"


def test_strategies_against_a_real_server(httpd: Container) -> None:
    httpd.exec("wget -q -O- http://127.0.0.1:8080/ >/dev/null")
    httpd.wait_for_log(r"url:/$", timeout=30)
    wait.http("/", 8080).wait(httpd, 30)
    wait.http("/missing", 8080, status=404).wait(httpd, 30)
    wait.http("/", 8080, body="^hello$").wait(httpd, 30)
    wait.exec(["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]).wait(httpd, 30)
    (wait.port(8080) & wait.http("/", 8080) & wait.exec("true")).wait(httpd, 30)


def test_healthcheck_from_the_image(engine: Engine, busybox: Image) -> None:
    hc = HealthCheck(("CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"), interval=1, timeout=5)
    healthy = dataclasses.replace(busybox, config=busybox.config.with_changes(healthcheck=hc))
    with engine.run(healthy, command="sleep 0.3; " + HTTPD) as c:
        wait.healthcheck().wait(c, 30)
        assert raw_get(c.connect(8080)) == "hello\n"


def test_unhealthy_image_fails_with_the_check_output(engine: Engine, busybox: Image) -> None:
    hc = HealthCheck(("CMD-SHELL", "echo database down >&2; exit 1"), interval=0.05, retries=2)
    sick = dataclasses.replace(busybox, config=busybox.config.with_changes(healthcheck=hc))
    with engine.run(sick, command="echo serving; sleep 600") as c, pytest.raises(WaitTimeout) as info:
        wait.healthcheck().wait(c, 30)
    text = str(info.value)
    assert "unhealthy" in text and "database down" in text
    assert "the main process is still running" in text and "serving" in text


def test_readiness_failure_when_the_server_exits(engine: Engine, busybox: Image) -> None:
    with engine.run(busybox, command="echo 'fatal: no config file' >&2; exit 3") as c, \
            pytest.raises(WaitTimeout) as info:
        c.wait_for_port(8080, timeout=60)  # gives up as soon as the process is gone
    err = info.value
    assert err.exited and err.exit_status == 3
    assert "port 8080" in str(err) and "exited with status 3" in str(err)
    assert "fatal: no config file" in str(err)


def test_readiness_timeout_while_running(engine: Engine, busybox: Image) -> None:
    with engine.run(busybox, command="echo warming up; sleep 600") as c, pytest.raises(WaitTimeout) as info:
        c.wait_for_log("ready", timeout=0.5)
    err = info.value
    assert not err.exited and err.logs_tail == ["warming up"]
    assert "log /ready/ timed out after 0.5s" in str(err) and "still running" in str(err)


def test_all_of_failure_names_the_strategy(httpd: Container) -> None:
    with pytest.raises(WaitTimeout, match=r"port 9 \(in all of \(port 8080, port 9\)\) timed out"):
        wait.all_of(wait.port(8080), wait.port(9)).wait(httpd, 0.5)


def test_strategies_work_as_the_markers_ready(httpd: Container) -> None:
    from pytest_minicontainer.fixtures import wait_ready

    wait_ready(httpd, wait.port(8080) & wait.http("/", 8080), 30)
    with pytest.raises(WaitTimeout, match="port 9"):
        wait_ready(httpd, wait.port(9), 0.3)


# -- prepared state, cloned per test ----------------------------------------------------------------
@pytest.fixture(scope="module")
def prepared_kv(engine: Engine, busybox: Image) -> Image:
    """Start the key-value service, load data through it, stop it, commit the result."""
    with engine.run(busybox, command=HTTPD) as c:
        c.write_text("/www/cgi-bin/kv", KV_CGI, mode=0o755)
        c.wait_for_port(8080, timeout=30)
        address = c.publish(8080)
        for key, value in (("colour", "blue"), ("size", "large")):
            assert http_get(address, f"/cgi-bin/kv?{key}={value}") == value
        c.stop()
        return c.commit()


def test_clones_start_with_the_prepared_data(engine: Engine, prepared_kv: Image) -> None:
    with engine.run(prepared_kv, command=HTTPD, ports=[8080]) as c:
        c.wait_for_port(8080, timeout=30)
        assert http_get(c.ports[8080], "/cgi-bin/kv?colour") == "blue"
        assert http_get(c.ports[8080], "/cgi-bin/kv?size") == "large"


def test_changes_stay_in_their_clone(engine: Engine, prepared_kv: Image) -> None:
    with engine.run(prepared_kv, command=HTTPD, ports=[8080]) as a, \
            engine.run(prepared_kv, command=HTTPD, ports=[8080]) as b:
        a.wait_for_port(8080, timeout=30)
        b.wait_for_port(8080, timeout=30)
        assert http_get(a.ports[8080], "/cgi-bin/kv?colour=red") == "red"
        assert http_get(a.ports[8080], "/cgi-bin/kv?colour") == "red"
        assert http_get(b.ports[8080], "/cgi-bin/kv?colour") == "blue"
    with engine.run(prepared_kv, command=HTTPD, ports=[8080]) as fresh:
        fresh.wait_for_port(8080, timeout=30)
        assert http_get(fresh.ports[8080], "/cgi-bin/kv?colour") == "blue"


# -- a real database: redis-server from a Debian rootfs ------------------------------------------
MMDEBSTRAP = ["mmdebstrap", "--variant=essential", "--include=redis-server", "--format=tar", "bookworm"]
REDIS = ["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--dir", "/var/lib/redis", "--save", "",
         "--appendonly", "no"]


def _redis_rootfs() -> Path:
    """The Debian rootfs tarball with redis-server: built once by mmdebstrap, then cached."""
    return debian_rootfs("redis", MMDEBSTRAP, "MINICONTAINER_TEST_REDIS_ROOTFS")


@pytest.fixture(scope="session")
def redis_image(engine: Engine) -> Image:
    return engine.image(f"rootfs:{_redis_rootfs()}")


def redis_call(sock: socket.socket, *args: str) -> bytes:
    """Send one RESP command and return the raw reply line(s) (enough for these tests)."""
    sock.sendall(f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args))
    data = b""
    while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2
                                         and not data.startswith(b"$-1")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def start_redis(engine: Engine, image: Image, command: list[str] = REDIS, **options: object) -> Container:
    c = engine.run(image, command=command, **options)  # type: ignore[arg-type]
    try:
        wait.all_of(wait.log("Ready to accept connections"), wait.exec(["redis-cli", "ping"])).wait(c, 60)
    except BaseException:
        c.remove()
        raise
    return c


@pytest.mark.slow
def test_redis_two_servers_on_6379_at_once(engine: Engine, redis_image: Image) -> None:
    with start_redis(engine, redis_image) as a, start_redis(engine, redis_image) as b, \
            a.connect(6379) as sa, b.connect(6379) as sb:
        assert redis_call(sa, "SET", "who", "a") == b"+OK\r\n"
        assert redis_call(sb, "SET", "who", "b") == b"+OK\r\n"
        assert redis_call(sa, "GET", "who") == b"$1\r\na\r\n"
        assert redis_call(sb, "GET", "who") == b"$1\r\nb\r\n"


@pytest.mark.slow
def test_redis_through_publish_with_concurrent_clients(engine: Engine, redis_image: Image) -> None:
    with start_redis(engine, redis_image, ports=[6379]) as c:
        address = c.ports[6379]

        def client(i: int) -> bytes:
            with socket.create_connection(address, timeout=30) as s:
                assert redis_call(s, "SET", f"key{i}", f"value{i}") == b"+OK\r\n"
                return redis_call(s, "GET", f"key{i}")

        with concurrent.futures.ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            got = list(pool.map(client, range(CLIENTS)))
        assert got == [f"${len(f'value{i}')}\r\nvalue{i}\r\n".encode() for i in range(CLIENTS)]
        assert c.exec(["redis-cli", "DBSIZE"]).stdout.strip() == str(CLIENTS)


@pytest.fixture(scope="module")
def prepared_redis(engine: Engine, redis_image: Image) -> Image:
    """Start redis, load data, stop it (SIGTERM makes redis save), commit: the prepared state."""
    with engine.run(redis_image, command=[*REDIS[:-4], "--save", "3600 1"]) as c:
        wait.exec(["redis-cli", "ping"]).wait(c, 60)
        with c.connect(6379) as s:
            for i in range(100):
                assert redis_call(s, "SET", f"user:{i}", f"name{i}") == b"+OK\r\n"
        assert c.stop(timeout=30) == 0
        assert "DB saved on disk" in c.logs()
        return c.commit()


@pytest.mark.slow
def test_redis_clones_have_the_data_and_keep_changes_apart(engine: Engine, prepared_redis: Image) -> None:
    with start_redis(engine, prepared_redis) as a, start_redis(engine, prepared_redis) as b:
        assert a.exec(["redis-cli", "DBSIZE"]).stdout.strip() == "100"
        assert a.exec(["redis-cli", "GET", "user:42"]).stdout.strip() == "name42"
        assert a.exec(["redis-cli", "FLUSHALL"]).stdout.strip() == "OK"
        assert a.exec(["redis-cli", "DBSIZE"]).stdout.strip() == "0"
        assert b.exec(["redis-cli", "DBSIZE"]).stdout.strip() == "100"


@pytest.mark.slow
def test_an_app_reaches_redis_by_alias_on_its_network_only(engine: Engine, redis_image: Image) -> None:
    """The set-up users have (issue 17): redis on a private network as "cache", a client beside
    it; a container on another network, or on none, reaches neither the name nor the address."""
    # every address of the container, without protected mode: as the official image runs it
    served = [*REDIS[:2], "0.0.0.0", *REDIS[3:], "--protected-mode", "no"]
    with engine.network("backend") as backend, engine.network("elsewhere") as elsewhere:
        cache = start_redis(engine, redis_image, served, network=backend, aliases=["cache"])
        with cache, engine.run(redis_image, (), network=backend) as app, \
                engine.run(redis_image, (), network=elsewhere) as stranger, engine.run(redis_image, ()) as alone:
            assert app.exec("redis-cli -h cache set greeting hello", timeout=30).stdout.strip() == "OK"
            assert app.exec(["redis-cli", "-h", str(cache.ip), "get", "greeting"], timeout=30).stdout == "hello\n"
            for outsider in (stranger, alone):
                for host in ("cache", str(cache.ip)):
                    r = outsider.exec(["timeout", "5", "redis-cli", "-h", host, "ping"], timeout=30)
                    assert "PONG" not in r.stdout, (outsider.network, host)
