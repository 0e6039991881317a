"""RunOptions, the one typed value of a container's start options, and the shared parsers."""

from __future__ import annotations

import pytest

from pytest_minicontainer import Mount
from pytest_minicontainer.markers import ContainerSpec
from pytest_minicontainer.options import RunOptions, as_mount, command_argv, parse_mount


def test_mount_strings_are_parsed_once() -> None:
    assert parse_mount("/a:/b") == Mount("/a", "/b")
    assert parse_mount("/a:/b:ro") == Mount("/a", "/b", readonly=True)
    assert parse_mount("/a:/b:rw") == Mount("/a", "/b")
    for bad in ("/a", ":/b", "/a:", "/a:/b:xx", "/a:/b:ro:x"):
        with pytest.raises(ValueError, match="SRC:DST"):
            parse_mount(bad)
    assert as_mount(("/a", "/b", True)) == Mount("/a", "/b", True)


def test_commands_become_argv_one_way() -> None:
    assert command_argv("echo hi") == ["/bin/sh", "-c", "echo hi"]
    assert command_argv(["echo", 1]) == ["echo", "1"]  # type: ignore[list-item]
    assert command_argv(()) == []


def test_hooks_written_for_the_dict_change_the_same_value() -> None:
    opts = RunOptions(image="host", env={"A": "1"})
    opts["env"]["B"] = "2"
    opts["workdir"] = "/srv"
    opts.update(user="nobody")
    assert opts.env == {"A": "1", "B": "2"} and opts.workdir == "/srv" and opts["user"] == "nobody"
    assert "ports" in opts and opts.get("nothing", 3) == 3 and list(opts) == opts.keys()
    with pytest.raises(KeyError, match="not a run option"):
        opts["nmounts"] = []
    copy = opts.copy()
    copy.env["C"] = "3"
    assert "C" not in opts.env
    assert "image" not in opts.keywords()


def test_the_marker_gives_run_options() -> None:
    spec = ContainerSpec(image="host", command=("true",), env={"X": "1"}, mounts=(Mount("/a", "/b"),))
    opts = spec.run_options()
    assert isinstance(opts, RunOptions)
    assert opts.image == "host" and opts.command == ["true"] and opts.mounts == [Mount("/a", "/b")]
