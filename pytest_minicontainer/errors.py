"""The exception tree of pytest-minicontainer.

Every error the plugin raises on purpose is a :class:`MiniContainerError`, so a caller can
catch one type; the subclasses say what went wrong and carry the context needed to fix it::

    MiniContainerError
    ├── RuntimeUnavailable      the host refuses to create containers (cause + fix)
    ├── ContainerError          a container could not be started or used
    │   ├── ExecError           a command exited non-zero with ``check=True`` (argv, status, output)
    │   │   └── ExecTimeout     a command ran past its ``timeout`` and was killed
    │   └── WaitTimeout         a readiness wait gave up (what it waited for, logs tail, main status)
    ├── ImageError              an image or layer is unreadable, corrupt or hostile
    │   ├── ImageNotFound       a reference names no image (unknown tag, REF or file)
    │   └── RegistryError       a registry cannot be reached or refuses a request (``registry``)
    ├── StoreError              the image store cannot be read or written (full disk, lock)
    ├── BuildError              a Containerfile step failed (line, command, status, output)
    └── ComposeError            a Compose file is invalid or asks for what cannot be done (file, service, key)

Messages name the problem *and* the fix; the attributes hold the same facts for code.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BuildError",
    "ComposeError",
    "ContainerError",
    "ExecError",
    "ExecTimeout",
    "ImageError",
    "ImageNotFound",
    "MiniContainerError",
    "RegistryError",
    "RuntimeUnavailable",
    "StoreError",
    "WaitTimeout",
]


class MiniContainerError(Exception):
    """Base class of every error raised by pytest-minicontainer."""


class RuntimeUnavailable(MiniContainerError):
    """The host cannot run containers; ``cause`` says why and ``fix`` what to change."""

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(f"containers cannot run on this host: {cause}\n  fix: {fix}")
        self.cause = cause
        self.fix = fix


class ContainerError(MiniContainerError):
    """A container could not be created, started or used."""


class ExecError(ContainerError):
    """A command in a container failed; carries ``argv``, ``status``, ``stdout``, ``stderr``."""

    def __init__(self, argv: Sequence[str], status: int, stdout: str = "", stderr: str = "") -> None:
        self.argv = list(argv)
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        tail = (stderr or stdout).strip().splitlines()[-10:]
        detail = ("\n  " + "\n  ".join(tail)) if tail else ""
        super().__init__(f"command {self.argv!r} exited with status {status}{detail}")

    @property
    def output(self) -> str:
        """stdout followed by stderr, for messages."""
        return self.stdout + self.stderr


class ExecTimeout(ExecError):
    """A command ran longer than its timeout: its process tree was killed (``exec``), or, with
    ``killed=False``, it is still running (``Process.wait``, ``Container.wait``).

    The message carries the last lines the command wrote: what it was doing when time ran out
    is usually the first thing one needs.
    """

    def __init__(self, argv: Sequence[str], timeout: float, stdout: str = "", stderr: str = "",
                 killed: bool = True) -> None:
        self.timeout = timeout
        self.killed = killed
        super().__init__(argv, -9 if killed else 0, stdout, stderr)
        tail = (stdout + stderr).strip().splitlines()[-10:]
        detail = ("\n  last output:\n  " + "\n  ".join(tail)) if tail else ""
        what = "timed out after {:g}s and was killed" if killed else "did not finish within {:g}s (it still runs)"
        self.args = (f"command {self.argv!r} {what.format(timeout)}{detail}",)

    def __str__(self) -> str:
        return str(self.args[0])


class WaitTimeout(ContainerError):
    """A container did not become ready: the timeout passed, or waiting could not help (its main
    process exited, its HEALTHCHECK reports unhealthy); ``elapsed`` is set when it gave up early.

    A bare "timed out" sends the reader to dig for the cause, so the message carries what was
    awaited, the last reason it was not ready, whether the main process still runs (or its exit
    status) and the last lines it logged.  The same facts are attributes, for code.
    """

    def __init__(self, container_id: str, waited_for: str, reason: str, timeout: float,
                 exit_status: int | None, has_main: bool, logs: str, elapsed: float | None = None) -> None:
        self.container_id = container_id
        self.waited_for = waited_for
        self.reason = reason
        self.timeout = timeout
        self.exit_status = exit_status
        self.has_main = has_main
        self.elapsed = elapsed
        self.logs_tail = logs.splitlines()[-20:]
        if exit_status is not None:
            main = f"the main process exited with status {exit_status}"
        else:
            main = "the main process is still running" if has_main else "the container has no main process"
        when = f"timed out after {timeout:g}s" if elapsed is None else f"gave up after {elapsed:.1f}s of {timeout:g}s"
        tail = ("\n  last log lines:\n    " + "\n    ".join(self.logs_tail)) if self.logs_tail else (
            "\n  the main process logged nothing" if has_main else "")
        super().__init__(f"container {container_id} not ready: {waited_for} {when}: {reason}; {main}{tail}")

    @property
    def exited(self) -> bool:
        """Whether the main process had exited when the wait gave up."""
        return self.exit_status is not None


class ImageError(MiniContainerError):
    """An image, manifest or layer is unreadable, corrupt or hostile (``path`` names the file)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class ImageNotFound(ImageError):
    """No image answers to a reference."""

    def __init__(self, reference: str, message: str = "") -> None:
        super().__init__(message or f"image not found: {reference!r}")
        self.reference = reference


class RegistryError(ImageError):
    """A registry did not answer, refused the credentials, or sent something unusable.

    ``registry`` is the address that was contacted (``host:port`` or a URL), so the message
    and the attribute both say where to look.  ``unreachable``: no answer came at all (refused,
    timed out), so asking again soon is pointless (an Engine does not, for that reference).
    """

    def __init__(self, message: str, registry: str = "", *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.registry = registry
        self.unreachable = unreachable


class StoreError(MiniContainerError):
    """The image store cannot be used (no space, unwritable, a broken lock)."""


class BuildError(MiniContainerError):
    """A Containerfile could not be built; carries ``line``, ``command``, ``status``, ``output``."""

    def __init__(self, message: str, line: int | None = None, command: str | None = None,
                 status: int | None = None, output: str = "") -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(where + message)
        self.line = line
        self.command = command
        self.status = status
        self.output = output


class ComposeError(MiniContainerError):
    """A Compose file (or its ``.env``, an ``env_file``) cannot be used as it is.

    ``file`` and ``line`` say where, ``path`` which value (``services.web.ports[0]``),
    ``service`` and ``key`` the same split for code (``"web"``, ``"ports[0]"``); each is None
    where it does not apply.  The message names the problem and, where there is one, the fix.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, path: str = "",
                 service: str | None = None, key: str | None = None) -> None:
        where = f"{file}:{line}" if file and line else (file or "")
        prefix = ": ".join(p for p in (where, path) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.file = file
        self.line = line
        self.path = path
        self.service = service
        self.key = key
