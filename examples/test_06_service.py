"""Services: a server runs as the container's main process; tests reach it and get fresh data.

The server here is busybox ``httpd`` with a tiny key-value CGI script, standing in for a
database: ``GET /cgi-bin/kv?key=value`` stores, ``GET /cgi-bin/kv?key`` reads.

* ``command=`` starts the main process; ``ready=`` (any strategy from
  ``pytest_minicontainer.wait``) holds the test until it answers, and explains a failure with
  the server's last log lines and whether it is still running.
* Each container has its own loopback, so every test's server listens on the same port 8080
  without clashing, in one process or across xdist workers.
* ``connect(port)`` gives a socket into the container; ``publish(port)`` gives an address on
  127.0.0.1 for clients that want a host and port (an HTTP library, a database driver).
* Prepared state, cloned per test: a session fixture starts the service once, loads data
  through it, stops it and commits the result; each test starts its own copy, changes it
  freely, and the next test sees the data as it was loaded.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator

import pytest

from pytest_minicontainer import Container, Engine, Image, wait

SERVE = "mkdir -p /www/cgi-bin && exec httpd -f -p 127.0.0.1:8080 -h /www"
KV_CGI = r"""#!/bin/sh
k="${QUERY_STRING%%=*}"; v="${QUERY_STRING#*=}"
mkdir -p /var/lib/kv
if [ "$k" != "$QUERY_STRING" ]; then printf %s "$v" > "/var/lib/kv/$k"; fi
printf 'Content-Type: text/plain\r\n\r\n'
cat "/var/lib/kv/$k" 2>/dev/null
"""


def get(address: tuple[str, int], path: str) -> str:
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=30) as response:
        body: bytes = response.read()
    return body.decode()


@pytest.mark.container(image="busybox", command=SERVE, ready=wait.port(8080), timeout=30)
def test_reach_the_server_through_a_socket(container: Container) -> None:
    container.write_text("/www/index.html", "hello\n")
    with container.connect(8080) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.") and answer.endswith(b"\r\n\r\nhello\n")


@pytest.fixture(scope="session")
def seeded(minicontainer: Engine) -> Iterator[Image]:
    """Run the service once, load the data through it, stop it and commit: the prepared state."""
    with minicontainer.run("busybox", command=SERVE) as service:
        service.write_text("/www/cgi-bin/kv", KV_CGI, mode=0o755)
        service.wait_for_port(8080, timeout=30)
        address = service.publish(8080)
        for key, value in {"colour": "blue", "size": "large"}.items():
            get(address, f"/cgi-bin/kv?{key}={value}")
        service.stop()
        image = service.commit(tag="example-kv-seeded:latest")
    yield image
    minicontainer.remove(image)  # an example leaves nothing in your store (prune frees the layer)


@pytest.fixture
def kv(container_factory: Callable[..., Container], seeded: Image) -> tuple[str, int]:
    """This test's own copy of the seeded service, published on 127.0.0.1."""
    service = container_factory(seeded, command=SERVE, ready=wait.http("/cgi-bin/kv?colour", 8080), timeout=30)
    return service.publish(8080)


def test_the_seeded_data_is_there(kv: tuple[str, int]) -> None:
    assert get(kv, "/cgi-bin/kv?colour") == "blue"
    assert get(kv, "/cgi-bin/kv?size") == "large"


def test_a_test_may_change_its_copy(kv: tuple[str, int]) -> None:
    assert get(kv, "/cgi-bin/kv?colour=red") == "red"
    assert get(kv, "/cgi-bin/kv?colour") == "red"


def test_the_next_test_sees_the_seeded_data_again(kv: tuple[str, int]) -> None:
    assert get(kv, "/cgi-bin/kv?colour") == "blue"
