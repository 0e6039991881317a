"""Hooks a ``conftest.py`` or plugin can implement to shape every container of a test run.

Registered by ``pytest_addhooks`` in :mod:`pytest_minicontainer.plugin`.  Implement them in a
``conftest.py`` with the same name and any subset of the arguments, marked optional so that
the conftest still loads when the plugin is not (``-p no:minicontainer``), for example::

    @pytest.hookimpl(optionalhook=True)
    def pytest_minicontainer_container_options(config, options):
        options["env"]["CI"] = "1"

Every container of the session's engine (``minicontainer``) goes through these hooks: those of
the fixtures (``container``, ``container_factory``) and those a test or fixture starts with
``minicontainer.run(...)``.  ``container_options`` gets the container's
:class:`~pytest_minicontainer.options.RunOptions` (image, command, env, workdir, user, mounts,
network, hostname, ports, aliases) to change in place: by attribute (``options.env["CI"] =
"1"``) or, as when it was a dict, by key (``options["env"]["CI"] = "1"``); both change the
same value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import pytest

    from .container import Container
    from .engine import Engine
    from .image import Image
    from .options import RunOptions

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_minicontainer_container_options(config: pytest.Config, options: RunOptions) -> None:
    """Change a container's start options in place before it starts (e.g. add env to every one)."""


@hookspec(firstresult=True)
def pytest_minicontainer_resolve_image(
    config: pytest.Config, engine: Engine, reference: str
) -> Image | str | None:
    """Resolve a custom image reference: return an Image, another reference, or None to pass."""


@hookspec
def pytest_minicontainer_container_started(config: pytest.Config, container: Container) -> None:
    """Called once a container of the session's engine has started."""


@hookspec
def pytest_minicontainer_container_finished(
    config: pytest.Config, container: Container, exit_status: int | None
) -> None:
    """Called when a container stops, with its main process's exit status (None if it had none)."""
