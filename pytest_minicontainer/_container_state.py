"""What every part of a :class:`~pytest_minicontainer.container.Container` shares: its facts,
its main process, and the narrow view of the engine it was handed.

A Container is composed of one class per job (``_processes``, ``_files``, ``_services``,
``_lifecycle``), as youki keeps one file per verb; they all build on :class:`ContainerState`.
The Container never imports the Engine: what it needs from it (say it finished, forget it,
commit it) is the :class:`ContainerOwner` it is given, so the arrows point one way
(engine -> container -> runtime).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ContainerError, ExecTimeout
from .image import Image
from .options import Mount
from .runtime.client import ExitWatch, RuntimeContainer

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["ContainerOwner", "ContainerState"]


class ContainerOwner(Protocol):
    """What a Container needs from the engine that started it (the engine hands it one)."""

    def finished(self, container: ContainerState) -> None:
        """The container stopped (its main process's status is known)."""

    def forget(self, container: ContainerState) -> None:
        """The container is removed: drop it from the engine's books and its networks."""

    def commit(self, container: ContainerState, tag: str | None,
               frozen: Callable[[], AbstractContextManager[None]]) -> Image:
        """Save the container's writable layer (read while ``frozen()`` holds) as an image."""


class ContainerState:
    """A started container's facts and its main process; the base of every part of a Container."""

    def __init__(self, engine: Engine, owner: ContainerOwner, rt: RuntimeContainer, image: Image, *,
                 command: list[str] | None, env: dict[str, str], workdir: str, user: str | None, hostname: str,
                 network: str, mounts: Sequence[Mount], mode: str | None = None, ip: str | None = None,
                 aliases: Sequence[str] = ()) -> None:
        self.engine = engine
        self.id = rt.id
        self.image = image
        self.command = command
        self.env = env
        self.workdir = workdir
        self.user = user
        self.hostname = hostname
        self.network = network
        self.mounts = list(mounts)
        self.scratch = rt.scratch
        self.upper_dir = rt.scratch / "upper"
        self._owner = owner
        self._rt = rt
        self._main: ExitWatch | None = None
        self._log_path = rt.scratch / "log"
        self._stopped = False
        self._removed = False
        self._kept: Path | None = None
        self._lock = threading.RLock()
        self._exit_status: int | None = None
        self._forwarders: dict[int, Any] = {}  # container port -> network.Forwarder
        # engine.network() membership: this member's address on the network it started on
        # (``ip``: None off such a network), its address on every network it is on (the
        # engine adds those it joins later) and its aliases there
        self.ip: str | None = ip
        self.ips: dict[str, str] = {network: ip} if ip is not None else {}
        self.aliases: tuple[str, ...] = tuple(aliases)
        self._mode = mode or network  # the runtime's network: "none", "host" or "slirp"

    # -- main process -----------------------------------------------------------------------
    def _start_main(self) -> None:
        if not self.command:
            return
        log = os.open(self._log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._main = self._rt.exec(self.command, self.env, self.workdir, self.user, [null, log, log])
        finally:
            os.close(log)
            os.close(null)

    @property
    def exit_status(self) -> int | None:
        """The main process's exit status once it has ended; None while it runs or without one."""
        if self._exit_status is None and self._main is not None:
            with contextlib.suppress(ContainerError):
                self._exit_status = self._main.wait(0)
        return self._exit_status

    @property
    def pid(self) -> int | None:
        """The main process's pid inside the container (pid 1 is the runtime's init)."""
        return self._main.pid if self._main else None

    @property
    def running(self) -> bool:
        """True while the main process runs (or, without one, until the container stops)."""
        if self._stopped:
            return False
        if self._main is None:
            return self._rt.alive
        try:
            return self._main.wait(0) is None
        except ContainerError:  # it never started
            return False

    def wait(self, timeout: float | None = None) -> int:
        """The main process's exit status; ExecTimeout when it is still running after ``timeout``."""
        if self._main is None:
            raise ContainerError(f"container {self.id} has no main process to wait for")
        status = self._main.wait(timeout)
        if status is None:
            raise ExecTimeout(self.command or [], timeout or 0.0, self.logs(), killed=False)
        self._exit_status = status
        return status

    def logs(self) -> str:
        """Everything the main process wrote to stdout and stderr so far."""
        try:
            return self._log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _main_state(self) -> str:
        if self._main is None:
            return "none"
        try:
            status = self._main.wait(0)
        except ContainerError as exc:
            return f"never started ({exc})"
        return "running" if status is None else f"exited with status {status}"

    @property
    def runtime_files(self) -> tuple[str, ...]:
        """Files the runtime mounts over the image's (not the container's changes): the resolver
        configuration of ``host`` and ``slirp``, the hosts file of a network's member."""
        files = ("/etc/resolv.conf",) if self._mode != "none" else ()
        return (*files, "/etc/hosts") if self.ip is not None else files
