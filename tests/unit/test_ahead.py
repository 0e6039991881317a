"""The look-ahead's bookkeeping (``pytest_minicontainer.ahead``), without containers.

What it does in real runs is tested with pytester in ``tests/acceptance/test_ahead.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_minicontainer import ahead
from pytest_minicontainer.errors import ImageNotFound
from pytest_minicontainer.options import RunOptions


class FakeContainer:
    def __init__(self, name: str) -> None:
        self.id = name
        self.removed = False

    def remove(self) -> None:
        self.removed = True


class FakeEngine:
    def __init__(self, run: Any = None) -> None:
        self.reserved: set[str] = set()
        self.run = run

    def start_container(self, options: RunOptions) -> FakeContainer:
        return self.run(options.image, **options.keywords())  # type: ignore[no-any-return]

    def reserve(self, c: FakeContainer) -> None:
        self.reserved.add(c.id)

    def release(self, c: FakeContainer) -> None:
        self.reserved.discard(c.id)


def test_taken_only_by_its_test_with_the_same_spec_and_dropped_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ahead, "memory_available", lambda: ahead.MIN_AVAILABLE * 4)
    made: list[FakeContainer] = []

    def run(image: str, **options: Any) -> FakeContainer:
        made.append(FakeContainer(f"{image}-{len(made)}"))
        return made[-1]

    engine = FakeEngine(run)

    a = ahead.Ahead(1)
    a.start("t::two", engine, RunOptions(image="img", env={"A": "1"}))  # type: ignore[arg-type]
    a.start("t::two", engine, RunOptions(image="img", env={"A": "1"}))  # type: ignore[arg-type]  # once per test
    assert len(made) == 1 and engine.reserved == {"img-0"}
    assert a.take("t::other", engine, RunOptions(image="img", env={"A": "1"})) is None  # type: ignore[arg-type]
    assert a.take("t::two", engine, RunOptions(image="img", env={"A": "2"})) is None  # type: ignore[arg-type]
    got = a.take("t::two", engine, RunOptions(image="img", env={"A": "1"}))  # type: ignore[arg-type]
    assert got is not None and got.container is made[0] and engine.reserved == set()
    a.start("t::three", engine, RunOptions(image="img"))  # type: ignore[arg-type]
    a.start("t::four", engine, RunOptions(image="img"))  # type: ignore[arg-type]
    a.drop(keep={"t::four"})
    assert [c.removed for c in made] == [False, True, False]
    a.drop()
    assert made[2].removed


def test_a_start_that_fails_is_left_to_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ahead, "memory_available", lambda: None)

    def run(image: str, **options: Any) -> FakeContainer:
        raise ImageNotFound(image, "not there yet (a session fixture commits it later)")

    a = ahead.Ahead(1)
    a.start("t::x", FakeEngine(run), RunOptions(image="later:1"))  # type: ignore[arg-type]
    assert a.take("t::x", FakeEngine(), RunOptions(image="later:1")) is None  # type: ignore[arg-type]


def test_nothing_is_started_when_memory_is_short_or_look_ahead_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def run(image: str, **options: Any) -> FakeContainer:
        calls.append(image)
        return FakeContainer(image)

    monkeypatch.setattr(ahead, "memory_available", lambda: ahead.MIN_AVAILABLE - 1)
    ahead.Ahead(1).start("t::x", FakeEngine(run), RunOptions(image="img"))  # type: ignore[arg-type]
    monkeypatch.setattr(ahead, "memory_available", lambda: ahead.MIN_AVAILABLE * 4)
    ahead.Ahead(0).start("t::x", FakeEngine(run), RunOptions(image="img"))  # type: ignore[arg-type]
    assert calls == []
    monkeypatch.undo()
    real = ahead.memory_available()
    assert real is None or real > 0


class FakeRunning(dict[str, FakeContainer]):
    def __init__(self) -> None:
        super().__init__(db=FakeContainer("db-1"))
        self.downed = False

    def down(self) -> None:
        self.downed = True


class FakeStack:
    def __init__(self, resolved: Any) -> None:
        self._resolved = resolved
        self.started: list[FakeRunning] = []

    def resolved(self, services: Any) -> bool:
        if isinstance(self._resolved, Exception):
            raise self._resolved
        return bool(self._resolved)

    def start(self, services: Any) -> FakeRunning:
        self.started.append(FakeRunning())
        return self.started[-1]


def test_stacks_start_ahead_only_when_their_images_are_made_and_go_when_not_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_minicontainer.errors import ComposeError
    from pytest_minicontainer.markers import ComposeSpec

    monkeypatch.setattr(ahead, "memory_available", lambda: ahead.MIN_AVAILABLE * 4)
    spec = ComposeSpec("/p/compose.yaml", None, (), ())
    engine = FakeEngine()
    a = ahead.Ahead(2)
    unbuilt, unknown = FakeStack(False), FakeStack(ComposeError("no such service"))
    a.start_stack("t::one", engine, unbuilt, spec)  # type: ignore[arg-type]  # a build would hold up the test
    a.start_stack("t::one", engine, unknown, spec)  # type: ignore[arg-type]  # its test reports the mistake
    assert not unbuilt.started and not unknown.started
    made = FakeStack(True)
    a.start_stack("t::two", engine, made, spec)  # type: ignore[arg-type]
    a.start_stack("t::three", engine, made, spec)  # type: ignore[arg-type]
    assert len(made.started) == 2 and engine.reserved == {"db-1"}
    assert a.take_stack("t::two", ComposeSpec("/other.yaml", None, (), ()), engine) is None  # type: ignore[arg-type]
    got = a.take_stack("t::two", spec, engine)  # type: ignore[arg-type]
    assert got is not None and got.stack is made.started[0] and engine.reserved == set()
    a.drop(keep={"t::four"})
    assert made.started[1].downed and not made.started[0].downed
