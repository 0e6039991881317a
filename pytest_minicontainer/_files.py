"""Files of a container: read and write them, copy trees in and out (as ``docker cp``)."""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
import tempfile
from pathlib import Path

from ._processes import Processes
from ._tarcopy import merge, owned_by_root, safe_extract
from .errors import ContainerError

__all__ = ["Files"]


class Files(Processes):
    """The files part of a Container (copies run ``sh`` and ``tar`` inside: they need commands)."""

    def _path(self, path: str) -> str:
        """``path`` made absolute against the working directory ("" stays "": it names no file)."""
        return path if not path or path.startswith("/") else os.path.join(self.workdir, path)

    def _file_error(self, err: int | None, path: str, text: str | None = None) -> OSError:
        """An OSError about ``path`` in this container: the errno, and ``text`` (pid 1's own
        words, such as why it refuses a FIFO) or else the errno's usual text.

        ``OSError(errno, ...)`` picks the subclass (FileNotFoundError, IsADirectoryError...),
        and ``filename`` is the container path.
        """
        code = err or errno.EIO
        return OSError(code, f"{text or os.strerror(code)} (in container {self.id})", path)

    def _open(self, path: str, flags: int, mode: int = 0o644, mkdirs: bool = False) -> int:
        path = self._path(path)
        if not path:  # the working directory would be opened: name the real mistake instead
            raise self._file_error(errno.ENOENT, path)
        try:
            return self._rt.open(path, flags, mode, mkdirs)
        except OSError as exc:
            raise self._file_error(exc.errno, path, exc.strerror) from None

    def read_bytes(self, path: str) -> bytes:
        full = self._path(path)
        fd = self._open(full, os.O_RDONLY)
        try:
            # os.fdopen would name the descriptor, not the container path, for a directory
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise self._file_error(errno.EISDIR, full)
            f = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        with f:
            try:
                return f.read()
            except OSError as exc:
                raise self._file_error(exc.errno, full) from None

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(path).decode(encoding)

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a file (parent directories are created)."""
        full = self._path(path)
        with os.fdopen(self._open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode, mkdirs=True), "wb") as f:
            try:
                f.write(data)
            except OSError as exc:
                raise self._file_error(exc.errno, full) from None

    def write_text(self, path: str, text: str, mode: int = 0o644, encoding: str = "utf-8") -> None:
        self.write_bytes(path, text.encode(encoding), mode)

    def exists(self, path: str) -> bool:
        try:
            os.close(self._open(path, os.O_PATH))
        except FileNotFoundError:
            return False
        return True

    def copy_in(self, source: str | os.PathLike[str], target: str) -> None:
        """Copy a host file or directory to ``target`` (into it, when it is a directory).

        The copies belong to root inside the container, as with ``docker cp``: the host's
        numeric owners mean nothing there (uid 1000 on the host may be ``app`` inside).
        """
        src = Path(source)
        if not src.exists():
            raise FileNotFoundError(2, "no such file or directory on the host", str(src))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(src), arcname=src.name, filter=owned_by_root)
        script = ('set -e; t="$1"; n="$2"; d=$(mktemp -d "${TMPDIR:-/tmp}/.mc-in.XXXXXX"); '
                  'tar -xf - -C "$d"; if [ -d "$t" ] && [ ! -L "$t" ]; then cp -a "$d/$n" "$t/"; '
                  'else mkdir -p "$(dirname "$t")"; rm -rf "$t"; mv "$d/$n" "$t"; fi; rm -rf "$d"')
        result = self.exec(["/bin/sh", "-c", script, "sh", target, src.name], input=buf.getvalue(), user="0:0")
        if result.returncode != 0:
            raise ContainerError(f"copy_in {src} -> {target} failed (the image needs sh and tar): "
                                 f"{result.stderr.strip()}")

    def copy_out(self, source: str, target: str | os.PathLike[str]) -> None:
        """Copy a container file or directory to the host (into ``target`` when it is a directory).

        As ``docker cp`` does: symlinks stay symlinks, wherever they point; a directory merges
        into one of the same name already there (files are replaced); the copies belong to
        the caller.  The container is not trusted: nothing is written outside ``target``, nor
        through a symlink, whether the tar brought it or it was on the host before.
        """
        dest = Path(target)
        into = dest.is_dir()
        if not into and os.fspath(target).endswith("/"):
            raise FileNotFoundError(errno.ENOENT, f"cannot copy {source!r} out of container {self.id}: the "
                                    "directory to copy into does not exist (create it first)", os.fspath(target))
        parent = dest if into else dest.parent
        if not parent.is_dir():
            what = "is not a directory" if parent.exists() else "does not exist"
            raise FileNotFoundError(errno.ENOENT, f"cannot copy {source!r} out of container {self.id}: "
                                    f"{str(parent)!r} {what} (create it first)", os.fspath(target))
        name = os.path.basename(source.rstrip("/"))
        if name in ("", ".", ".."):
            raise ContainerError(f"copy_out {source!r}: name the file or directory to copy by its path "
                                 "(e.g. '/srv', not '/' or '.')")
        # Extracted next to the result first (same file system): a bad tar leaves nothing behind.
        # The tar goes to a file there, not into memory: a copy can be as large as the disk.
        with tempfile.TemporaryDirectory(prefix=".minicontainer-copy-", dir=parent) as tmp:
            archive = os.path.join(tmp, "archive.tar")
            unpacked = os.path.join(tmp, "out")
            os.mkdir(unpacked, 0o700)
            out = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                watch = self._start(["/bin/sh", "-c", 'cd "$(dirname "$1")" && tar -cf - "$(basename "$1")"',
                                     "sh", source], None, None, "0:0", null, out, err_w)
            finally:
                for fd in (out, err_w, null):
                    os.close(fd)
            with os.fdopen(err_r, "rb") as errors:
                err = errors.read(64 << 10)  # tar's complaints; the rest is dropped when it ends
                while errors.read(64 << 10):
                    pass
            status = watch.wait()
            if status != 0:
                raise ContainerError(f"copy_out {source} failed (the image needs sh and tar): "
                                     f"{err.decode(errors='replace').strip()}")
            produced = os.path.join(unpacked, name)
            with tarfile.open(archive, mode="r") as tar:
                safe_extract(tar, unpacked)
            if not os.path.lexists(produced):
                raise ContainerError(f"copy_out {source} failed: the container's tar holds no {name!r}")
            merge(produced, os.path.join(dest, name) if into else os.fspath(dest))
