"""Compose files: read, validate and plan a project described by a ``compose.yaml``.

:func:`load` reads a compose file (the Compose Specification: ``name``, ``services``,
``networks``, ``volumes``, ``configs``, ``secrets``, and the ``.env`` file next to it),
interpolates its variables, validates every key and resolves it into frozen dataclasses::

    from pytest_minicontainer.compose import load

    project = load("tests/stack", env={"TAG": "1.2"}, profiles=["debug"])
    for service in project.plan(["web"]):       # web and what it depends on, dependencies first
        ...                                     # service.image / .build, .environment, .ports...

Errors are :class:`~pytest_minicontainer.ComposeError` (file, line, service, key); settings
that are ignored here emit a :class:`ComposeWarning`.  ``docs/compose.md`` lists what each
key does here.  This package uses only the public names of ``pytest_minicontainer``.
"""

from __future__ import annotations

from ._model import (
    Build,
    Dependency,
    FileMount,
    HealthcheckOverride,
    Network,
    NetworkAttachment,
    Port,
    Project,
    Service,
    Volume,
    VolumeMount,
)
from ._project import COMPOSE_FILES, find_file, load, normalize_project_name
from ._stack import RunningStack, Stack
from ._values import ComposeWarning, parse_duration

__all__ = [
    "COMPOSE_FILES",
    "Build",
    "ComposeWarning",
    "Dependency",
    "FileMount",
    "HealthcheckOverride",
    "Network",
    "NetworkAttachment",
    "Port",
    "Project",
    "RunningStack",
    "Service",
    "Stack",
    "Volume",
    "VolumeMount",
    "find_file",
    "load",
    "normalize_project_name",
    "parse_duration",
]
