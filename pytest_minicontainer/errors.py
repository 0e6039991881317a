"""The exception tree of pytest-minicontainer.

Every error the plugin raises on purpose is a :class:`MiniContainerError`, so a caller can
catch one type; the subclasses say what went wrong and carry the context needed to fix it::

    MiniContainerError
    ├── RuntimeUnavailable      the host refuses to create containers (cause + fix)
    ├── ContainerError          a container could not be started or used
    │   └── ExecError           a command exited non-zero with ``check=True`` (argv, status, output)
    │       └── ExecTimeout     a command ran past its ``timeout`` and was killed
    ├── ImageError              an image or layer is unreadable, corrupt or hostile
    │   └── ImageNotFound       a reference names no image (unknown tag, REF or file)
    ├── StoreError              the image store cannot be read or written (full disk, lock)
    └── BuildError              a Containerfile step failed (line, command, status, output)

Messages name the problem *and* the fix; the attributes hold the same facts for code.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BuildError",
    "ContainerError",
    "ExecError",
    "ExecTimeout",
    "ImageError",
    "ImageNotFound",
    "MiniContainerError",
    "RuntimeUnavailable",
    "StoreError",
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
    """A command ran longer than its timeout; its process tree was killed."""

    def __init__(self, argv: Sequence[str], timeout: float, stdout: str = "", stderr: str = "") -> None:
        self.timeout = timeout
        super().__init__(argv, -9, stdout, stderr)
        self.args = (f"command {self.argv!r} timed out after {timeout:g}s and was killed",)

    def __str__(self) -> str:
        return str(self.args[0])


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
