"""A container's life cycle: what changed, stop, kill, commit, keep, remove."""

from __future__ import annotations

import contextlib
import errno
import shlex
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ._container_state import ContainerState
from ._diff import changes
from .errors import ContainerError
from .image import Image
from .paths import default_store_path

__all__ = ["Change", "Lifecycle"]


@dataclass(frozen=True)
class Change:
    """One entry of :meth:`Container.diff`: ``kind`` is A(dded), C(hanged) or D(eleted)."""

    kind: str
    path: str

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


class Lifecycle(ContainerState):
    """The life-cycle part of a Container: changes, stop, commit, keep and removal."""

    def diff(self) -> list[Change]:
        """Files added (A), changed (C) or deleted (D) compared with the image, sorted by path."""
        self._check_not_removed("diff")
        skip = {"/proc", "/dev", "/sys"} | {m.target.rstrip("/") or "/" for m in self.mounts}
        skip |= set(self.runtime_files)
        args = (str(self.upper_dir), list(self.image.layer_dirs), list(self.image.host_dirs), sorted(skip))
        with self._frozen():
            try:
                found = changes(*args)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM, errno.EMFILE):
                    raise
                # rootless with a subordinate id range: a directory of another id inside the
                # container is private to it on the host too; the user namespace can read it.
                # EMFILE: a tree deeper than this process may hold descriptors for; the
                # runtime's helper raises its limit for the walk.
                found = self._rt.runtime.call("pytest_minicontainer._diff", "changes", *args)
        return [Change(kind, path) for kind, path in found]


    @contextlib.contextmanager
    def _frozen(self) -> Iterator[None]:
        """Every process of a running container stopped meanwhile, as Docker pauses one it commits.

        The writable layer is read from the host: a process swapping a directory or file for a
        symlink while it is walked could make the walk follow that link to the host's files.
        """
        running = self._rt.alive
        if running:
            with contextlib.suppress(ContainerError):
                self._rt.freeze(True)
        try:
            yield
        finally:
            if running:
                with contextlib.suppress(ContainerError):
                    self._rt.freeze(False)

    # -- life cycle -------------------------------------------------------------------------
    def stop(self, timeout: float = 10) -> int | None:
        """Send the image's stop signal to the main process and its process group, SIGKILL after
        ``timeout``; kill the rest.

        The group, unlike ``docker stop`` (which signals only pid 1): a main process that is a
        ``sh -c`` wrapper would otherwise leave its server to the SIGKILL, never told to stop.
        """
        return self._stop(timeout, remove=False)

    def _stop(self, timeout: float, remove: bool) -> int | None:
        with self._lock:
            if self._stopped:
                return self.exit_status
            for forwarder in self._forwarders.values():
                forwarder.close()
            if self.running and self._main is not None:
                sig = _signal_number(self.image.config.stop_signal)
                self._rt.kill(self._main.pid, sig, group=True)
                self._main.wait(timeout)
            self._rt.destroy(remove=remove)
            if self._main is not None:
                with contextlib.suppress(ContainerError):
                    self._exit_status = self._main.wait(5)
            self._stopped = True
        self._owner.finished(self)
        return self.exit_status

    def kill(self) -> None:
        """Kill every process of the container at once."""
        self.stop(timeout=0)

    def commit(self, tag: str | None = None) -> Image:
        """Save the container's current files as a new image (a layer on top of its image)."""
        self._check_not_removed("commit")
        return self._owner.commit(self, tag, self._frozen)

    def _check_not_removed(self, what: str) -> None:
        """ContainerError once the container is removed: its writable layer is being deleted
        (or already serves another container), so reading it would fail at random or lie."""
        if self._removed:
            raise ContainerError(f"container {self.id} is removed: its changes are gone "
                                 f"(call {what}() before remove() or the end of the with block)")

    def keep(self) -> Path:
        """Keep the writable layer after removal (as an image); returns the layer's directory."""
        if self._kept is None:
            image = self.commit(f"minicontainer-kept:{self.id}")
            self._kept = Path(image.layer_dirs[-1])
        return self._kept

    def shell_command(self) -> str:
        """A command line opening a shell in this container's kept files (see :meth:`keep`)."""
        store = self.engine.store_path
        prefix = "" if store == default_store_path() else f"MINICONTAINER_STORE={shlex.quote(str(store))} "
        # The running Python with -m, not the ``minicontainer`` script: that is on PATH only
        # in an activated environment, not under ``.venv/bin/python -m pytest``.
        cli = f"{shlex.quote(sys.executable or 'python3')} -m pytest_minicontainer"
        # --entrypoint: the shell replaces the image's Entrypoint and Cmd, so a service's
        # container opens as a shell over its kept files, without starting the service again.
        return f"{prefix}{cli} run --rm -it --entrypoint /bin/sh minicontainer-kept:{self.id}"

    def remove(self) -> None:
        """Stop the container and delete its writable layer (idempotent)."""
        with self._lock:
            if self._removed:
                return
            self._removed = True
            if self._stopped:
                self._rt.runtime.remove([self.scratch], cid=self.id)
            else:
                self._stop(10, remove=True)
        self._owner.forget(self)


def _signal_number(name: str | None) -> int:
    if not name:
        return signal.SIGTERM
    name = name.strip().upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    return int(getattr(signal, name, signal.SIGTERM))
