"""Dependency order, cycles and profiles (the spec's 15-profiles.md example, among others)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_minicontainer import ComposeError
from pytest_minicontainer.compose import ComposeWarning, Service

from .compose_helpers import project


def names(services: tuple[Service, ...]) -> list[str]:
    return [s.name for s in services]


def test_dependencies_first_otherwise_file_order(tmp_path: Path) -> None:
    p = project(tmp_path, """\
        services:
          web: {image: x, depends_on: [api, static]}
          api: {image: x, depends_on: {db: {condition: service_healthy}, cache: {condition: service_started}}}
          static: {image: x}
          worker: {image: x, depends_on: [db]}
          cache: {image: x}
          db: {image: x}
        """)
    assert names(p.plan()) == ["db", "cache", "api", "static", "web", "worker"]
    assert names(p.plan(["worker"])) == ["db", "worker"]
    assert names(p.plan(["api", "db"])) == ["db", "cache", "api"]
    assert names(p.plan("static")) == ["static"]
    assert names(p.plan([])) == []


@pytest.mark.parametrize(("deps", "cycle"), [
    ({"a": ["a"]}, "a -> a"),
    ({"a": ["b"], "b": ["a"]}, "a -> b -> a"),
    ({"a": ["b"], "b": ["c"], "c": ["d"], "d": ["b"]}, "b -> c -> d -> b"),
    ({"x": [], "a": ["x", "b"], "b": ["x", "a"]}, "a -> b -> a"),
])
def test_cycles_are_found_when_loading_and_named(tmp_path: Path, deps: dict[str, list[str]], cycle: str) -> None:
    lines = "".join(f"  {n}: {{image: x, depends_on: {d}}}\n" for n, d in deps.items())
    with pytest.raises(ComposeError, match=f"dependency cycle: {cycle}$") as info:
        project(tmp_path, "services:\n" + lines)
    assert info.value.service == cycle.split(" -> ")[0] and info.value.key == "depends_on"


SPEC_EXAMPLE = """\
    services:
      foo:
        image: foo
      bar:
        image: bar
        profiles: [test]
      baz:
        image: baz
        depends_on: [bar]
        profiles: [test]
      zot:
        image: zot
        depends_on: [bar]
        profiles: [debug]
    """


@pytest.mark.parametrize(("profiles", "targets", "expected"), [
    ((), None, ["foo"]),  # no profile: only foo
    (("test",), None, ["foo", "bar", "baz"]),
    (("debug", "test"), None, ["foo", "bar", "baz", "zot"]),
    (("*",), None, ["foo", "bar", "baz", "zot"]),
    ((), ["bar"], ["bar"]),  # named explicitly: its profile becomes active
    ((), ["baz"], ["bar", "baz"]),  # ... and bar comes along through depends_on
    (("test",), ["zot"], ["bar", "zot"]),
    (("debug",), ["foo"], ["foo"]),
])
def test_profiles_follow_the_spec_example(tmp_path: Path, profiles: tuple[str, ...], targets: list[str] | None,
                                          expected: list[str]) -> None:
    assert names(project(tmp_path, SPEC_EXAMPLE, profiles=profiles).plan(targets)) == expected


@pytest.mark.parametrize(("profiles", "targets"), [(("debug",), None), ((), ["zot"])])
def test_a_dependency_outside_the_active_profiles_is_an_error(tmp_path: Path, profiles: tuple[str, ...],
                                                             targets: list[str] | None) -> None:
    p = project(tmp_path, SPEC_EXAMPLE, profiles=profiles)
    with pytest.raises(ComposeError, match="depends on 'bar', which is not part of the stack: activate one of its "
                                           r"profiles \(test\)") as info:
        p.plan(targets)
    assert (info.value.service, info.value.key) == ("zot", "depends_on")


def test_an_optional_dependency_outside_the_profiles_is_skipped_with_a_warning(tmp_path: Path) -> None:
    p = project(tmp_path, """\
        services:
          app: {image: x, depends_on: {tracing: {condition: service_started, required: false}}}
          tracing: {image: x, profiles: [observe]}
        """)
    with pytest.warns(ComposeWarning, match="optional dependency 'tracing' is not started"):
        assert names(p.plan()) == ["app"]
    assert names(project(tmp_path, (tmp_path / "compose.yaml").read_text(), profiles=["observe"]).plan()) == [
        "tracing", "app"]


def test_profiles_from_compose_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPOSE_PROFILES", "test, debug")
    assert project(tmp_path, SPEC_EXAMPLE).profiles == frozenset({"test", "debug"})
    assert project(tmp_path, SPEC_EXAMPLE, profiles=["x"]).profiles == frozenset({"x"})


def test_unknown_service(tmp_path: Path) -> None:
    p = project(tmp_path, SPEC_EXAMPLE)
    with pytest.raises(ComposeError, match=r"no service 'nope' in this file \(services: foo, bar, baz, zot\)"):
        p.plan(["nope"])
    assert p["foo"].image == "foo"
