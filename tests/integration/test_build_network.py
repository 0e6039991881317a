"""The network of RUN steps (issue 14, finding 6).

Builds used to run on the host's network: a RUN step reached a service on the host's
127.0.0.1.  By default a build now gets a private network with outbound access through
slirp4netns and no route to the host's loopback, or no network where slirp4netns cannot
run, with one line saying how to get it; ``network="host"`` is still there when asked for.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from pytest_minicontainer import BuildError, Engine
from pytest_minicontainer.build._build import default_network

GET = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"


def _slirp_usable() -> bool:
    return shutil.which("slirp4netns") is not None and os.access("/dev/net/tun", os.R_OK | os.W_OK)


def _probe(engine: Engine, busybox_rootfs: Path, context: Path, port: int, **options: object) -> str:
    """What a RUN step got from the host-only service, through 127.0.0.1 and slirp's 10.0.2.2."""
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n# {uuid.uuid4().hex}\n"
                     f"RUN ({GET} | nc -w 3 127.0.0.1 {port}; {GET} | nc -w 3 10.0.2.2 {port}; ip -o link) "
                     "> /probe 2>&1; true\n")
    image = engine.build(containerfile, context, **options)  # type: ignore[arg-type]
    with engine.run(image, command=()) as c:
        return c.read_text("/probe")


def test_a_default_build_does_not_reach_the_hosts_loopback(engine: Engine, busybox_rootfs: Path, tmp_path: Path,
                                                           host_server: int) -> None:
    got = _probe(engine, busybox_rootfs, tmp_path, host_server)
    assert "hello from the host" not in got
    assert ("tap0" in got) == _slirp_usable()  # slirp's interface where it can run, only lo otherwise


def test_network_host_is_still_there_when_asked_for(engine: Engine, busybox_rootfs: Path, tmp_path: Path,
                                                    host_server: int) -> None:
    assert "hello from the host" in _probe(engine, busybox_rootfs, tmp_path, host_server, network="host")


def test_without_slirp_a_build_gets_no_network_and_one_line_with_the_fix(
        engine: Engine, busybox_rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], host_server: int) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no slirp4netns (the running engine needs no PATH)
    got = _probe(engine, busybox_rootfs, tmp_path, host_server)
    assert "hello from the host" not in got and "tap0" not in got
    err = capsys.readouterr().err.splitlines()
    said = [line for line in err if "RUN steps get no network" in line]
    assert len(said) == 1 and "apt-get install slirp4netns" in said[0] and 'network="host"' in said[0]


def test_default_network_names_each_missing_piece(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lines: list[str] = []
    monkeypatch.setenv("PATH", str(tmp_path))
    assert default_network(lines.append) == "none"
    assert "apt-get install slirp4netns" in lines[0]


def test_a_default_build_reaches_the_outside(engine: Engine, busybox_rootfs: Path, tmp_path: Path,
                                             outside_server: str) -> None:
    if not _slirp_usable():
        pytest.skip("outbound access for builds needs slirp4netns and a read-write /dev/net/tun: "
                    "apt-get install slirp4netns; chmod 0666 /dev/net/tun")
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n# {uuid.uuid4().hex}\n"
                     f"RUN {GET} | nc -w 10 {outside_server} > /fetched\n")
    image = engine.build(containerfile, tmp_path)
    with engine.run(image, command=()) as c:
        assert c.read_text("/fetched").endswith("hello from outside\n")


def test_run_network_flag_chooses_per_step(engine: Engine, busybox_rootfs: Path, tmp_path: Path,
                                           host_server: int) -> None:
    """``RUN --network=host|none|default`` (issue 16): one step on the host's network, one with
    none, in a build whose default is the private one; the flag is part of the step's cache key."""
    probe = f"({GET} | nc -w 3 127.0.0.1 {host_server}; ip -o link) > {{}} 2>&1; true"
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n# {uuid.uuid4().hex}\n"
                     f"RUN --network=host {probe.format('/host')}\n"
                     f"RUN --network=none {probe.format('/none')}\n"
                     f"RUN --network=default {probe.format('/default')}\n")
    image = engine.build(containerfile, tmp_path)
    try:
        with engine.run(image, command=()) as c:
            host, none, default = (c.read_text(p) for p in ("/host", "/none", "/default"))
        assert "hello from the host" in host
        assert "hello from the host" not in none and "tap0" not in none and "eth0" not in none
        assert "hello from the host" not in default and ("tap0" in default) == _slirp_usable()
    finally:
        engine.remove(image)
    with pytest.raises(BuildError, match="RUN --network=bridge: not one of default, none, host"):
        engine.build(f"FROM rootfs:{busybox_rootfs}\nRUN --network=bridge true\n", tmp_path)
