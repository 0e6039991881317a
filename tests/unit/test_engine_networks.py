"""The Engine's network book (``_engine_networks``) without namespaces: members, hosts files, removal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_minicontainer._engine_networks import NetworkBook
from pytest_minicontainer.errors import ContainerError
from pytest_minicontainer.networks import Network


class FakeRuntime:
    def __init__(self) -> None:
        self.made: list[str] = []
        self.removed: list[str] = []

    def make_network(self, nid: str) -> None:
        self.made.append(nid)

    def remove_network(self, nid: str) -> None:
        self.removed.append(nid)


class FakeHandle:
    def __init__(self, cid: str) -> None:
        self.id = cid


def book(rt: FakeRuntime) -> NetworkBook:
    engine: Any = object()
    return NetworkBook(engine, lambda: rt, lambda: rt, lambda cid: True)  # type: ignore[arg-type,return-value]


def test_members_list_each_other_and_leave_cleanly(tmp_path: Path) -> None:
    rt = FakeRuntime()
    b = book(rt)
    net = b.network("backend", False)
    assert b.network("backend", False) is net and rt.made == ["net1"]
    assert b.resolve("backend") == (net, "none") and b.resolve("host") == (None, "host")
    with pytest.raises(ValueError, match="network must be one of"):
        b.resolve("")
    joined = []
    for cid in ("aaa", "bbb"):
        spec: dict[str, Any] = {"binds": []}
        joining = b.prepare(net, spec, tmp_path)
        assert spec["join"]["network"] == "net1" and spec["binds"][0]["target"] == "/etc/hosts"
        b.admit(FakeHandle(cid), joining, [f"{cid}-name", cid])  # type: ignore[arg-type]
        joined.append(joining)
    first, second = (j.hosts.read_text() for j in joined)
    assert first == second and "aaa-name" in first and "bbb-name" in first
    assert b.networks_of("aaa") == [net]
    with pytest.raises(ContainerError, match="still has members"):
        b.remove(net)
    b.forget("aaa")
    assert not joined[0].hosts.exists() and "aaa-name" not in joined[1].hosts.read_text()
    b.forget("bbb")
    b.remove(net)
    assert net.removed and rt.removed == ["net1"]
    assert isinstance(b.network("backend", False), Network)  # the name is free again: a new network


def test_a_start_that_failed_gives_its_address_back(tmp_path: Path) -> None:
    b = book(FakeRuntime())
    net = b.network(None, False)
    spec: dict[str, Any] = {"binds": []}
    joining = b.prepare(net, spec, tmp_path)
    b.abort(joining)
    assert not joining.hosts.exists()
    assert b.prepare(net, {"binds": []}, tmp_path).ip == joining.ip
