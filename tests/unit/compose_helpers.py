"""Writing one-service compose files for the compose unit tests."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from pytest_minicontainer import ComposeError
from pytest_minicontainer.compose import Project, Service, load


def write(directory: Path, body: str, top: str = "") -> Path:
    """A compose.yaml with service ``s`` (``body`` are its keys), then ``top`` as it is (indented
    by two, it adds services; at column 0, top-level keys)."""
    text = "services:\n  s:\n" + textwrap.indent(textwrap.dedent(body), "    ") + top
    (directory / "compose.yaml").write_text(text)
    return directory


def service(directory: Path, body: str, top: str = "", env: Mapping[str, str] | None = None) -> Service:
    return load(write(directory, body, top), env=env).services["s"]


def project(directory: Path, text: str, *, profiles: Iterable[str] = (),
            env: Mapping[str, str] | None = None) -> Project:
    (directory / "compose.yaml").write_text(textwrap.dedent(text))
    return load(directory, profiles=profiles, env=env)


def error(directory: Path, body: str, top: str = "") -> ComposeError:
    with pytest.raises(ComposeError) as info:
        load(write(directory, body, top))
    return info.value
