"""ports, volumes and tmpfs in their short and long syntaxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_minicontainer.compose import ComposeWarning, Port, VolumeMount

from .compose_helpers import error, service


@pytest.mark.parametrize(("ports", "expected"), [
    ("[3000]", [Port(3000)]),
    ("['3000']", [Port(3000)]),
    ("['3000-3002']", [Port(3000), Port(3001), Port(3002)]),
    ("['8000:8000']", [Port(8000, 8000)]),
    ("['9090-9091:8080-8081']", [Port(8080, 9090), Port(8081, 9091)]),
    ("['8000-9000:80']", [Port(80)]),  # any host port of the range: the kernel picks one anyway
    ("['49100:22']", [Port(22, 49100)]),
    ("['127.0.0.1:8001:8001']", [Port(8001, 8001, "127.0.0.1")]),
    ("['127.0.0.1::5000']", [Port(5000, None, "127.0.0.1")]),
    ("['0.0.0.0:80:80']", [Port(80, 80, "0.0.0.0")]),
    ("['::1:6000:6000']", [Port(6000, 6000, "::1")]),
    ("['[::1]:6001:6001']", [Port(6001, 6001, "::1")]),
    ("['6060:6060/tcp']", [Port(6060, 6060)]),
    ("['80', '8080:80']", [Port(80)]),  # one address per container port
    ("[{target: 80, published: '8080', host_ip: 127.0.0.1, protocol: tcp, name: web, mode: host,"
     " app_protocol: http}]", [Port(80, 8080, "127.0.0.1", "web")]),
    ("[{target: '443', published: 8083-9000}]", [Port(443)]),
    ("[{target: 5432}]", [Port(5432)]),
])
def test_ports(tmp_path: Path, ports: str, expected: list[Port]) -> None:
    assert list(service(tmp_path, f"image: x\nports: {ports}\n").ports) == expected


@pytest.mark.parametrize(("ports", "key", "message"), [
    ("['53:53/udp']", "ports[0]", "protocol 'udp' cannot be published here: only TCP"),
    ("[{target: 53, protocol: udp}]", "ports[0].protocol", "only TCP"),
    ("['80-81:90-92']", "ports[0]", "the host range has 2 ports and the container range 3"),
    ("['70000']", "ports[0]", "must be between 1 and 65535"),
    ("['http']", "ports[0]", "container port 'http' is not a port"),
    ("['1:2:3:4:5']", "ports[0]", "host IP '1:2:3' is not an IP address"),
    ("[{target: 80, host_ip: localhost.example}]", "ports[0].host_ip", "is not an IP address"),
    ("['[::1:80:80']", "ports[0]", "written [IP]:HOST:CONTAINER"),
    ("[{published: 80}]", "ports[0]", "needs target:"),
    ("[{target: 80, hostip: x}]", "ports[0].hostip", "did you mean 'host_ip'?"),
    ("'80:80'", "ports", "must be a list of ports"),
    ("[[80]]", "ports[0]", "must be a port string, a number or a mapping"),
])
def test_port_errors(tmp_path: Path, ports: str, key: str, message: str) -> None:
    err = error(tmp_path, f"image: x\nports: {ports}\n")
    assert (err.service, err.key) == ("s", key)
    assert message in str(err)


def test_a_host_ip_that_is_not_loopback_warns(tmp_path: Path) -> None:
    with pytest.warns(ComposeWarning, match="host IP 192.0.2.10 is not used: ports are published on 127.0.0.1"):
        assert service(tmp_path, "image: x\nports: ['192.0.2.10:80:80']\n").ports == (Port(80, 80, "192.0.2.10"),)


def test_ports_with_network_mode(tmp_path: Path) -> None:
    err = error(tmp_path, "image: x\nnetwork_mode: host\nports: ['80']\n")
    assert "cannot be published with network_mode: host" in str(err)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "conf.ini").write_text("x=1\n")
    return tmp_path


VOLUMES_TOP = "volumes:\n  dbdata:\n  cache: {}\n"


@pytest.mark.parametrize(("volumes", "expected"), [
    ("['./data:/srv']", [VolumeMount("bind", "/srv", "{root}/data")]),
    ("['./data:/srv:ro']", [VolumeMount("bind", "/srv", "{root}/data", read_only=True)]),
    ("['./data:/srv:rw,z']", [VolumeMount("bind", "/srv", "{root}/data")]),
    ("['./conf.ini:/etc/app.ini:ro,Z']", [VolumeMount("bind", "/etc/app.ini", "{root}/conf.ini", read_only=True)]),
    ("['{root}/data:/srv:cached']", [VolumeMount("bind", "/srv", "{root}/data")]),
    ("['sub/../data:/srv']", None),  # not a path: a volume name (the spec: paths start with . / ~)
    ("['dbdata:/var/lib/db']", [VolumeMount("volume", "/var/lib/db", "dbdata")]),
    ("['dbdata:/var/lib/db:ro,nocopy']", [VolumeMount("volume", "/var/lib/db", "dbdata", True, True)]),
    ("['/scratch']", [VolumeMount("volume", "/scratch")]),
    ("[{type: bind, source: ./data, target: /srv, read_only: true, bind: {propagation: rprivate,"
     " create_host_path: true, selinux: z}}]", [VolumeMount("bind", "/srv", "{root}/data", read_only=True)]),
    ("[{type: volume, source: cache, target: /c, volume: {nocopy: true, subpath: a/b}}]",
     [VolumeMount("volume", "/c", "cache", nocopy=True, subpath="a/b")]),
    ("[{type: volume, target: /anon}]", [VolumeMount("volume", "/anon")]),
    ("[{type: tmpfs, target: /run/x, tmpfs: {size: 10m, mode: 01777}}]",
     [VolumeMount("tmpfs", "/run/x", mode=0o1777)]),
    ("[{type: tmpfs, target: /t, tmpfs: {mode: '755'}}]", [VolumeMount("tmpfs", "/t", mode=0o755)]),
])
def test_volumes(tree: Path, volumes: str, expected: list[VolumeMount] | None) -> None:
    body = f"image: x\nvolumes: {volumes.replace('{root}', str(tree))}\n"
    if expected is None:
        assert "'sub/../data' is not declared in the top-level volumes" in str(error(tree, body, VOLUMES_TOP))
        return
    resolved = [VolumeMount(m.type, m.target, m.source.replace("{root}", str(tree)) if m.source else None, m.read_only,
                            m.nocopy, m.subpath, m.mode) for m in expected]
    assert list(service(tree, body, VOLUMES_TOP).volumes) == resolved


def test_home_in_a_bind_source(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tree))
    assert service(tree, "image: x\nvolumes: ['~/data:/d']\n").volumes == (VolumeMount("bind", "/d", f"{tree}/data"),)


@pytest.mark.parametrize(("volumes", "key", "message"), [
    ("['./nothing:/srv']", "volumes[0]", "bind mount source {root}/nothing does not exist: create it"),
    ("['undeclared:/srv']", "volumes[0]", "volume 'undeclared' is not declared in the top-level volumes:"),
    ("['./data:relative']", "volumes[0]", "the container path 'relative' must be absolute"),
    ("['./data:/']", "volumes[0]", "the container's root cannot be a mount target"),
    ("['./data:/srv:rshared']", "volumes[0]", "mount propagation 'rshared' is not supported"),
    ("['./data:/srv:nocopy']", "volumes[0]", "unknown mount option 'nocopy'"),
    ("['a:b:c:d']", "volumes[0]", "is not SOURCE:TARGET[:MODE] or TARGET"),
    ("[{type: image, source: busybox, target: /i}]", "volumes[0].type", "mount type 'image' is not supported"),
    ("[{type: npipe, source: x, target: /i}]", "volumes[0].type", "mount type 'npipe' is not supported"),
    ("[{type: bind, target: /i}]", "volumes[0]", "a bind mount needs source:"),
    ("[{type: bind, source: ./data}]", "volumes[0]", "needs target:"),
    ("[{type: bind, source: ./data, target: /i, volume: {nocopy: true}}]", "volumes[0].volume",
     "volume: options do not apply to a bind mount"),
    ("[{type: bind, source: ./data, target: /i, bind: {propagation: shared}}]", "volumes[0].bind.propagation",
     "'shared' is not supported"),
    ("[{type: volume, source: dbdata, target: /i, volume: {subpath: ../up}}]", "volumes[0].volume.subpath",
     "must be a relative path inside the volume"),
    ("[{type: tmpfs, source: x, target: /t}]", "volumes[0].source", "a tmpfs mount has no source"),
    ("[{type: tmpfs, target: /t, tmpfs: {mode: rwx}}]", "volumes[0].tmpfs.mode", "is not an octal number"),
    ("[{type: bind, source: ./data, target: /i, readonly: true}]", "volumes[0].readonly", "did you mean 'read_only'"),
    ("['./data:/srv', 'dbdata:/srv/']", "", "two mounts have the container path /srv"),
])
def test_volume_errors(tree: Path, volumes: str, key: str, message: str) -> None:
    err = error(tree, f"image: x\nvolumes: {volumes}\n", VOLUMES_TOP)
    assert (err.service, err.key) == ("s", key or None)
    assert message.replace("{root}", str(tree)) in str(err)


def test_tmpfs_key(tmp_path: Path) -> None:
    assert service(tmp_path, "image: x\ntmpfs: /run\n").volumes == (VolumeMount("tmpfs", "/run"),)
    mounts = service(tmp_path, "image: x\ntmpfs: ['/a', '/b:mode=770,size=64m']\n").volumes
    assert mounts == (VolumeMount("tmpfs", "/a"), VolumeMount("tmpfs", "/b", mode=0o770))
    with pytest.warns(ComposeWarning, match="tmpfs uid is not applied"):
        service(tmp_path, "image: x\ntmpfs: ['/a:uid=1000']\n")
    assert "unknown tmpfs option 'color'" in str(error(tmp_path, "image: x\ntmpfs: ['/a:color=red']\n"))
