"""The zygote's spare pool as bookkeeping: which spare to make next, hand out, retire or forget."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pytest_minicontainer.runtime.messages import ContainerSpec
from pytest_minicontainer.runtime.spares import MAX_DEATHS, Spare, SparePool

A: ContainerSpec = {"lowers": ["/layers/a"]}
B: ContainerSpec = {"lowers": ["/layers/b"]}
C: ContainerSpec = {"lowers": ["/layers/c"]}


@pytest.fixture
def killed() -> list[int]:
    return []


@pytest.fixture
def pool(killed: list[int]) -> Iterator[SparePool]:
    made = SparePool(kill=killed.append)
    yield made
    made.close_sockets()


def spare(pid: int) -> Spare:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.close()
    return Spare(pid, mine, f"c{pid}", f"/scratch/c{pid}")


def test_an_idle_pool_wants_one_plain_spare_and_no_more(pool: SparePool) -> None:
    assert pool.wanted() == (None, None)
    pool.add(None, spare(10))
    assert pool.wanted() is None
    assert pool.unused == {10: "/scratch/c10"}


def test_two_spares_for_the_latest_template_and_one_for_the_one_before(pool: SparePool) -> None:
    pool.remember("a", A)
    assert pool.wanted() == ("a", A)
    pool.add("a", spare(1))
    assert pool.wanted() == ("a", A)  # the next test's spare gets a whole container's time to get ready
    pool.add("a", spare(2))
    pool.remember("b", B)
    assert [k for k, _ in pool.recent] == ["b", "a"]
    assert pool.wanted() == ("b", B)
    pool.add("b", spare(3))
    pool.add("b", spare(4))
    assert pool.wanted() == (None, None)  # "a" has its one; then a plain spare
    pool.add(None, spare(5))
    assert pool.wanted() is None


def test_asking_for_the_latest_template_again_changes_nothing(pool: SparePool) -> None:
    pool.remember("a", A)
    pool.remember("b", B)
    pool.remember("b", B)
    assert [k for k, _ in pool.recent] == ["b", "a"]


def test_a_third_template_retires_the_spares_of_the_oldest(pool: SparePool, killed: list[int]) -> None:
    pool.remember("a", A)
    pool.add("a", spare(1))
    pool.remember("b", B)
    pool.add("b", spare(2))
    pool.add(None, spare(3))
    pool.remember("c", C)
    assert [k for k, _ in pool.recent] == ["c", "b"]
    assert killed == [1]
    assert "a" not in pool.waiting
    assert pool.unused[1] == "/scratch/c1"  # its scratch dir goes when it is reaped
    assert {s.pid for s in pool} == {2, 3}  # plain spares are never stale


def test_take_hands_out_the_oldest_and_forgets_it_as_unused(pool: SparePool) -> None:
    pool.add("a", spare(1))
    pool.add("a", spare(2))
    taken = pool.take("a")
    assert taken is not None and taken.pid == 1
    assert 1 not in pool.unused and 2 in pool.unused
    assert pool.take("b") is None
    taken.sock.close()


def test_a_spare_that_could_not_take_its_container_is_retired(pool: SparePool, killed: list[int]) -> None:
    pool.add(None, spare(7))
    taken = pool.take(None)
    assert taken is not None
    pool.retire(taken)
    assert killed == [7]
    assert taken.sock.fileno() == -1
    assert pool.exited(7) == "/scratch/c7"  # reaped: its scratch dir is the zygote's to dispose of
    assert pool.exited(7) is None


def test_spares_dying_in_a_row_stop_the_idle_making(pool: SparePool) -> None:
    for pid in range(MAX_DEATHS):
        pool.add(None, spare(pid))
        assert pool.exited(pid) == f"/scratch/c{pid}"
    assert "keep dying" in pool.error
    assert pool.wanted() is None


def test_a_handed_over_spare_resets_the_death_count(pool: SparePool) -> None:
    pool.add(None, spare(1))
    pool.exited(1)
    pool.handed_over()
    assert pool.deaths == 0


def test_a_failed_spare_stops_the_idle_making_until_one_is_made(pool: SparePool) -> None:
    pool.failed("clone: EPERM")
    assert pool.wanted() is None
    pool.add(None, spare(1))
    assert pool.error == ""


def test_a_container_pid_is_not_a_spare(pool: SparePool) -> None:
    pool.add(None, spare(1))
    assert pool.exited(99) is None
    assert pool.has(None) and pool.deaths == 0
