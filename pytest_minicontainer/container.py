"""The handle a test holds: run commands, move files, inspect changes, stop, commit.

A :class:`Container` wraps the runtime's view of a running container (pid 1's socket and
the scratch directory) with the conveniences a test wants.  It is composed of one class per
job, each in its own module: commands (``_processes``), files and copies (``_files``),
ports and readiness (``_services``), changes, stop, commit and removal (``_lifecycle``), all
over the shared facts and main process of ``_container_state``.  What it needs from the
engine that started it is the narrow ``ContainerOwner`` it is handed; it never imports the
engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._container_state import ContainerOwner
from ._files import Files
from ._lifecycle import Change, Lifecycle
from ._processes import ExecResult, Process
from ._services import Services
from .image import Image
from .options import Mount
from .runtime.client import RuntimeContainer

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Change", "Container", "ContainerOwner", "ExecResult", "Mount", "Process"]


class Container(Lifecycle, Services, Files):
    """A started container; use it as a context manager to stop and remove it.

    Made by ``Engine.run``, which resolved its user and set up its network first; the main
    process (``command``) starts here, and a failure to start it removes the container.
    """

    def __init__(self, engine: Engine, owner: ContainerOwner, rt: RuntimeContainer, image: Image, *,
                 command: list[str] | None, env: dict[str, str], workdir: str, user: str | None, hostname: str,
                 network: str, mounts: Sequence[Mount], mode: str | None = None, ip: str | None = None,
                 aliases: Sequence[str] = ()) -> None:
        super().__init__(engine, owner, rt, image, command=command, env=env, workdir=workdir, user=user,
                         hostname=hostname, network=network, mounts=mounts, mode=mode, ip=ip, aliases=aliases)
        try:
            self._start_main()
        except BaseException:
            self.remove()
            raise

    def __repr__(self) -> str:
        return f"<Container {self.id} image={self.image} {'running' if self.running else 'stopped'}>"

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove()
