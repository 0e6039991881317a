"""Private networks of containers: ``engine.network()``, ``run(network=net, aliases=[...])``,
``c.ip`` (issue 17).  Members find each other by hostname, id and alias; nothing else reaches
them; the network goes with its Engine."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_minicontainer import Container, ContainerError, Engine, Network

# A server answering "pong from <hostname>" to every connection on port 7000 (-ll: it goes on).
SERVE = ["nc", "-ll", "-p", "7000", "-e", "sh", "-c", "echo pong from $(hostname)"]


def ask(client: Container, host: str, port: int = 7000, *, patience: float = 15.0) -> str:
    """What ``host:port`` answers from inside ``client``, asked until it answers (a server just
    started may not listen yet) or ``patience`` runs out; "" when nothing answered."""
    deadline = time.monotonic() + patience
    while True:
        got = client.exec(f"nc -w 2 {host} {port} </dev/null", timeout=30).stdout.strip()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(0.1)


@pytest.fixture
def net(engine: Engine) -> Iterator[Network]:
    with engine.network() as n:
        yield n


def test_members_reach_each_other_by_name_alias_id_and_ip(engine: Engine, busybox_rootfs: Path,
                                                           net: Network) -> None:
    image = f"rootfs:{busybox_rootfs}"
    with engine.run(image, SERVE, network=net, aliases=["cache", "redis.local"], hostname="db") as db, \
            engine.run(image, (), network=net) as app:
        assert db.ip is not None and ipaddress.ip_address(db.ip) in net.subnet
        assert app.ip is not None and app.ip != db.ip
        assert db.aliases == ("cache", "redis.local") and db.network == net.name
        for name in ("cache", "redis.local", "db", db.id, db.ip):
            assert ask(app, name) == "pong from db", name
        # the member's interface and the list every member reads
        assert f"inet {db.ip}/24" in db.exec("ip -4 addr show eth0").stdout
        hosts = app.read_text("/etc/hosts")
        assert f"{db.ip}\tdb {db.id} cache redis.local" in hosts and f"{app.ip}\t{app.id}" in hosts
        assert "localhost" in hosts
        assert "/etc/hosts" not in [c.path for c in app.diff()]


def test_other_networks_and_none_cannot_reach_members(engine: Engine, busybox_rootfs: Path, net: Network) -> None:
    image = f"rootfs:{busybox_rootfs}"
    with engine.network() as other, engine.run(image, SERVE, network=net, aliases=["db"]) as db, \
            engine.run(image, (), network=net) as member, engine.run(image, (), network=other) as stranger, \
            engine.run(image, ()) as alone:
        assert ask(member, "db").startswith("pong from ")  # it serves
        assert stranger.ip is not None and ipaddress.ip_address(stranger.ip) in other.subnet
        assert other.subnet != net.subnet
        for outsider in (stranger, alone):
            assert ask(outsider, "db", patience=0) == ""  # not even a name
            assert ask(outsider, str(db.ip), patience=0) == ""  # nor the address
            assert "db" not in outsider.exec("cat /etc/hosts 2>/dev/null || true").stdout.split()
        assert alone.ip is None


def test_the_hosts_list_follows_members_joining_and_leaving(engine: Engine, busybox_rootfs: Path,
                                                             net: Network) -> None:
    image = f"rootfs:{busybox_rootfs}"
    with engine.run(image, (), network=net, aliases=["first"]) as first:
        later = engine.run(image, SERVE, network=net, aliases=["later"])
        assert "later" in first.read_text("/etc/hosts").split()  # a member sees who came after it
        assert ask(first, "later").startswith("pong from ")
        later_id = later.id
        later.remove()
        hosts = first.read_text("/etc/hosts")
        assert "later" not in hosts.split() and later_id not in hosts
        assert set(net.members) == {first.id}


def test_connect_publish_and_waits_work_for_members(engine: Engine, busybox_rootfs: Path, net: Network) -> None:
    from pytest_minicontainer import wait

    with engine.run(f"rootfs:{busybox_rootfs}", SERVE, network=net, ports=[7000]) as db:
        wait.port(7000).wait(db, 30)
        with db.connect(7000) as sock:
            assert sock.recv(100).startswith(b"pong from ")
        host, port = db.ports[7000]
        import socket

        with socket.create_connection((host, port), timeout=10) as sock:
            assert sock.recv(100).startswith(b"pong from ")


def test_networks_by_name(engine: Engine, busybox_rootfs: Path) -> None:
    image = f"rootfs:{busybox_rootfs}"
    with engine.run(image, SERVE, network="backend-by-name", aliases=["svc"]) as svc, \
            engine.run(image, (), network="backend-by-name") as client:
        net = engine.network("backend-by-name")
        assert set(net.members) == {svc.id, client.id}
        assert ask(client, "svc").startswith("pong from ")
        with pytest.raises(ContainerError, match="still has members"):
            net.remove()
    net.remove()
    assert net.removed
    with pytest.raises(ValueError, match="not a network of this Engine"):
        engine.run(image, (), network=net)


@pytest.mark.parametrize(("options", "message"), [
    ({"aliases": ["x"]}, "aliases are names on a network"),
    ({"network": "n1", "aliases": ["bad name"]}, "must be a host name"),
    ({"network": 7}, "network must be one of"),
])
def test_bad_network_options_are_clear_errors(engine: Engine, busybox_rootfs: Path, options: dict[str, Any],
                                              message: str) -> None:
    with pytest.raises(ValueError, match=message):
        engine.run(f"rootfs:{busybox_rootfs}", (), **options)


def _namespaces_held(pid: int) -> set[str]:
    """The network namespaces ``pid`` holds open ("net:[4026...]")."""
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("net:"):
                    found.add(target)
    return found


def test_an_engine_takes_its_networks_with_it(tmp_path: Path, busybox_rootfs: Path) -> None:
    """Closing the Engine ends its containers and the networks' namespaces (held by the
    zygote's network helper alone): no process and no namespace outlive it."""
    with Engine(store=tmp_path / "store") as engine:
        net = engine.network("gone")
        c = engine.run(f"rootfs:{busybox_rootfs}", SERVE, network=net)
        zygote = engine.runtime.zygote_pid
        children = Path(f"/proc/{zygote}/task/{zygote}/children").read_text().split()
        held = set().union(*(_namespaces_held(int(p)) for p in children))
        assert held and os.readlink("/proc/self/ns/net") not in held, "the helper holds the network's namespace"
        assert c.ip is not None
    assert net.removed
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert left == ""


def test_a_members_commit_runs_on_any_network(engine: Engine, busybox_rootfs: Path, net: Network) -> None:
    """The network's /etc/hosts is not part of a commit; a clone joins the network its run names."""
    image = f"rootfs:{busybox_rootfs}"
    with engine.run(image, (), network=net) as member:
        member.write_text("/srv/state", "seeded\n")
        snapshot = member.commit()
    try:
        with engine.run(snapshot, ()) as alone:
            # the busybox image has none: the network's is gone, the runtime's localhost one is there
            assert alone.read_text("/etc/hosts").startswith("127.0.0.1\tlocalhost\n")
            assert not any(os.path.lexists(os.path.join(d, "etc", "hosts")) for d in snapshot.layer_dirs)
            assert alone.read_text("/srv/state") == "seeded\n"
        with engine.network() as other, engine.run(snapshot, SERVE, network=other, aliases=["clone"]) as clone, \
                engine.run(image, (), network=other) as client:
            assert ask(client, "clone").startswith("pong from ")
            assert clone.read_text("/srv/state") == "seeded\n"
    finally:
        engine.remove(snapshot)


def test_outbound_networks_reach_out_but_not_the_hosts_loopback(engine: Engine, busybox_rootfs: Path,
                                                                host_server: int) -> None:
    import shutil

    if shutil.which("slirp4netns") is None:
        pytest.skip("outbound=True needs slirp4netns: apt-get install slirp4netns")
    image = f"rootfs:{busybox_rootfs}"
    with engine.network(outbound=True) as out, engine.run(image, SERVE, network=out, aliases=["db"]), \
            engine.run(image, (), network=out) as app:
        assert ask(app, "db").startswith("pong from ")  # members still meet on the bridge
        routes = app.exec("ip route").stdout
        assert "default via 10.0.2.2 dev tap0" in routes and f"{out.subnet} dev eth0" in routes
        assert "nameserver 10.0.2.3" in app.read_text("/etc/resolv.conf")
        # 10.0.2.2 is slirp4netns's gateway, which does not lead to the host's loopback
        got = app.exec(f"wget -q -T 3 -O- http://10.0.2.2:{host_server}/ 2>&1; true", timeout=30).stdout
        assert "hello from the host" not in got


def test_outbound_members_reach_the_outside(engine: Engine, busybox_rootfs: Path, outside_server: str) -> None:
    with engine.network(outbound=True) as out, engine.run(f"rootfs:{busybox_rootfs}", (), network=out) as app:
        got = app.exec(f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {outside_server}", timeout=30).stdout
        assert "hello from outside" in got


def test_a_long_session_makes_and_removes_many_networks(engine: Engine) -> None:
    """A network per test, one after the other: numbers (and subnets) come free again."""
    seen = set()
    for _ in range(300):
        with engine.network() as net:
            seen.add(net.subnet)
    assert len(seen) <= 2


def test_a_member_joins_a_second_network(engine: Engine, busybox_rootfs: Path) -> None:
    """``net.connect(container, aliases=[...])`` (``docker network connect``): an ``eth1`` on the
    second network; its hosts file lists the members of both, each network's members list it
    only where it is a member; it leaves both when removed."""
    image = f"rootfs:{busybox_rootfs}"
    with engine.network() as front, engine.network() as back, \
            engine.run(image, SERVE, network=back, hostname="db") as db, \
            engine.run(image, SERVE, network=front, hostname="web") as web, \
            engine.run(image, (), network=front) as browser:
        ip = back.connect(web, aliases=["api"])
        assert web.ips == {front.name: web.ip, back.name: ip} and ipaddress.ip_address(ip) in back.subnet
        assert f"inet {ip}/24" in web.exec("ip -4 addr show eth1").stdout
        assert ask(web, "db") == "pong from db"  # web reaches the back network's members
        assert ask(db, "api") == "pong from web"  # and they reach web by its new alias
        assert ask(browser, "web") == "pong from web"
        assert ask(browser, "db", patience=0) == ""  # the front network still does not reach db
        with pytest.raises(ValueError, match="already"):
            back.connect(web)
        with pytest.raises(ContainerError, match="started without a network"), engine.run(image, ()) as loner:
            back.connect(loner)
        web_id = web.id
    assert web_id not in front.members and web_id not in back.members
