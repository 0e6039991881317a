"""The handle a test holds: run commands, move files, inspect changes, stop, commit.

A :class:`Container` wraps the runtime's view of a running container (pid 1's socket and
the scratch directory) with the conveniences a test wants.  Commands run by pid 1 inside
the container; their stdio are pipes created here and handed over, so output arrives
directly, without copies through the runtime.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import selectors
import shlex
import signal
import socket
import stat
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._diff import changes
from ._env import checked_env
from ._tarcopy import merge, owned_by_root, safe_extract
from .errors import ContainerError, ExecError, ExecTimeout
from .image import Image
from .options import Mount, command_argv
from .runtime.client import ExitWatch, RuntimeContainer

if TYPE_CHECKING:
    from .engine import Engine
    from .networks import Network

__all__ = ["Change", "Container", "ExecResult", "Mount", "Process"]

Command = str | Sequence[str]
#: Where a container's own servers are looked for when no address is given: IPv4, then IPv6.
LOOPBACKS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class ExecResult:
    """What a finished command left: its status and its output (decoded as UTF-8)."""

    returncode: int
    stdout: str
    stderr: str
    argv: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> ExecResult:
        if self.returncode != 0:
            raise ExecError(self.argv, self.returncode, self.stdout, self.stderr)
        return self


@dataclass(frozen=True)
class Change:
    """One entry of :meth:`Container.diff`: ``kind`` is A(dded), C(hanged) or D(eleted)."""

    kind: str
    path: str

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def _argv(cmd: Command) -> list[str]:
    argv = command_argv(cmd)
    if not argv:
        raise ValueError("empty command")
    return argv


class Process:
    """A command started with :meth:`Container.spawn`: it runs while the test goes on."""

    def __init__(self, container: Container, argv: list[str], watch: ExitWatch,
                 stdout: int | None, stderr: int | None, stdin: int | None) -> None:
        self.container = container
        self.argv = argv
        self._watch = watch
        self._out = bytearray()
        self._err = bytearray()
        self.stdin = os.fdopen(stdin, "wb", buffering=0) if stdin is not None else None
        self._readers = [threading.Thread(target=self._drain, args=(fd, buf), daemon=True)
                         for fd, buf in ((stdout, self._out), (stderr, self._err)) if fd is not None]
        for t in self._readers:
            t.start()

    @staticmethod
    def _drain(fd: int, buf: bytearray) -> None:
        try:
            while chunk := os.read(fd, 65536):
                buf += chunk
        except OSError:
            pass
        finally:
            os.close(fd)

    @property
    def pid(self) -> int:
        """The process's pid inside the container."""
        return self._watch.pid

    @property
    def returncode(self) -> int | None:
        return self._watch.wait(0) if self._watch.status is None else self._watch.status

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit status; :class:`ExecTimeout` when ``timeout`` passes first."""
        status = self._watch.wait(timeout)
        if status is None:
            raise ExecTimeout(self.argv, timeout or 0.0, self.stdout, self.stderr, killed=False)
        for t in self._readers:
            t.join(5)
        return status

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process and everything it started."""
        self.container._kill_tree(self.pid, sig)

    @property
    def stdout(self) -> str:
        return bytes(self._out).decode(errors="replace")

    @property
    def stderr(self) -> str:
        return bytes(self._err).decode(errors="replace")


class Container:
    """A started container; use it as a context manager to stop and remove it."""

    def __init__(self, engine: Engine, rt: RuntimeContainer, image: Image, *, command: list[str] | None,
                 env: dict[str, str], workdir: str, user: str | None, hostname: str, network: str,
                 mounts: Sequence[Mount]) -> None:
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
        self._rt = rt
        self._main: ExitWatch | None = None
        self._log_path = rt.scratch / "log"
        self._stopped = False
        self._removed = False
        self._kept: Path | None = None
        self._lock = threading.RLock()
        self._exit_status: int | None = None
        self._forwarders: dict[int, Any] = {}  # container port -> network.Forwarder
        # engine.network() membership (set by the Engine): the network, this member's address
        # on it (``ip``: None off such a network) and its aliases there
        self._nets: list[Network] = []  # every network it is on, the one it started on first
        self._hosts: Path | None = None  # its /etc/hosts on the host, when on a network
        self.ip: str | None = None
        self.ips: dict[str, str] = {}  # network name -> address, for every network it is on
        self.aliases: tuple[str, ...] = ()
        self._mode = network  # the runtime's network: "none", "host" or "slirp" (members: set by the Engine)

    def __repr__(self) -> str:
        return f"<Container {self.id} image={self.image} {'running' if self.running else 'stopped'}>"

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove()

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

    # -- commands ---------------------------------------------------------------------------
    def _exec_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        """The container's environment with ``env`` on top, checked here: a bad name would
        otherwise come back as exit status 127 from the container, naming nothing."""
        merged = dict(self.env)
        merged.update(checked_env(env))
        return merged

    def _start(self, argv: list[str], env: Mapping[str, str] | None, workdir: str | None, user: str | None,
               stdin: int, stdout: int, stderr: int, tty: tuple[int, int] | None = None) -> ExitWatch:
        """Start ``argv`` on these descriptors, or with ``tty`` (rows, columns) on a new terminal."""
        try:
            return self._rt.exec(argv, self._exec_env(env), workdir or self.workdir,
                                 self.user if user is None else user, [stdin, stdout, stderr], tty=tty)
        except OSError as exc:
            raise ContainerError(f"cannot run {argv!r} in container {self.id}: {exc.strerror or exc}") from exc

    def _launch(self, argv: list[str], env: Mapping[str, str] | None, workdir: str | None, user: str | None,
                stdin: bool) -> tuple[ExitWatch, int, int, int]:
        """Start ``argv`` with pipes for its output (and its input with ``stdin``).

        Returns the watch and our pipe ends: stdout, stderr and stdin (-1 without one).
        """
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r, in_w = os.pipe2(os.O_CLOEXEC) if stdin else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1)
        try:
            watch = self._start(argv, env, workdir, user, in_r, out_w, err_w)
        except BaseException:
            for fd in (out_r, err_r, in_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in (out_w, err_w, in_r):
                os.close(fd)
        return watch, out_r, err_r, in_w

    def _run(self, argv: list[str], *, input: str | bytes | None = None, env: Mapping[str, str] | None = None,
             workdir: str | None = None, user: str | None = None,
             timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run ``argv`` to completion: (status, stdout, stderr) as bytes; ExecTimeout after ``timeout``."""
        watch, out_r, err_r, in_w = self._launch(argv, env, workdir, user, input is not None)
        data = input.encode() if isinstance(input, str) else input
        out, err, timed_out = _communicate(out_r, err_r, in_w, data, timeout)
        if timed_out:
            self._kill_tree(watch.pid, signal.SIGKILL)
            watch.wait(5)
            watch.close()
            raise ExecTimeout(argv, timeout or 0.0, out.decode(errors="replace"), err.decode(errors="replace"))
        status = watch.wait()
        return (status if status is not None else -signal.SIGKILL), out, err

    def _run_terminal(self, argv: list[str], *, input: str | bytes | None, env: Mapping[str, str] | None,
                      workdir: str | None, user: str | None, timeout: float | None) -> tuple[int, bytes]:
        """Run ``argv`` on a terminal of its own (80x24): (status, what the terminal printed)."""
        from ._terminal import relay

        watch = self._start(argv, env, workdir, user, -1, -1, -1, tty=(24, 80))
        try:
            master = watch.terminal
        except ContainerError:
            watch.close()
            raise
        chunks: list[bytes] = []
        try:
            done = relay(master, watch.sock.fileno(), input.encode() if isinstance(input, str) else input,
                         chunks.append, timeout)
        finally:
            os.close(master)
        if not done:
            self._kill_tree(watch.pid, signal.SIGKILL)
            watch.wait(5)
            watch.close()
            raise ExecTimeout(argv, timeout or 0.0, b"".join(chunks).decode(errors="replace"))
        status = watch.wait()
        return (status if status is not None else -signal.SIGKILL), b"".join(chunks)

    def _run_streamed(self, argv: list[str], on_output: Callable[[str], None], *, env: Mapping[str, str] | None,
                      workdir: str | None, user: str | None, timeout: float | None) -> tuple[int, bytes]:
        """Run ``argv`` with stdout and stderr on one pipe, in the order written; each complete
        line goes to ``on_output`` as it arrives.  (status, everything written)."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            watch = self._start(argv, env, workdir, user, stdin, write_end, write_end)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
            os.close(stdin)
        chunks: list[bytes] = []
        pending = b""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with selectors.PollSelector() as sel:
                sel.register(read_end, selectors.EVENT_READ)
                while True:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and (left <= 0 or not sel.select(left)):
                        self._kill_tree(watch.pid, signal.SIGKILL)
                        watch.wait(5)
                        watch.close()
                        out = b"".join(chunks).decode(errors="replace")
                        raise ExecTimeout(argv, timeout or 0.0, out)
                    chunk = os.read(read_end, 65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        on_output(line.decode(errors="replace"))
        finally:
            os.close(read_end)
        if pending:
            on_output(pending.decode(errors="replace"))
        status = watch.wait()
        return (status if status is not None else -signal.SIGKILL), b"".join(chunks)

    def exec(self, cmd: Command, *, input: str | bytes | None = None, env: Mapping[str, str] | None = None,
             workdir: str | None = None, user: str | None = None, timeout: float | None = None,
             check: bool = False, tty: bool = False, on_output: Callable[[str], None] | None = None) -> ExecResult:
        """Run ``cmd`` to completion (a string runs through ``/bin/sh -c``).

        ``tty=True`` runs it on a pseudo-terminal of the container's own, as ``docker exec -t``
        does: programs see a terminal (``isatty``, colours, line buffering, job control), the
        output is what the terminal shows (stdout and stderr together, lines ending in
        ``\r\n``, ``input`` echoed) and ``stderr`` is empty.  ``input`` is typed in, followed
        by ^D.

        ``on_output`` gets every line the command writes (stdout and stderr on one pipe, in
        the order written) as it is written, as a build shows a RUN step's output; the result's
        ``stdout`` then holds both and ``stderr`` is empty.  (No ``input`` with it.)
        """
        argv = _argv(cmd)
        if on_output is not None:
            if input is not None or tty:
                raise ValueError("on_output streams the output of a command without input= or tty=")
            status, out = self._run_streamed(argv, on_output, env=env, workdir=workdir, user=user, timeout=timeout)
            err = b""
        elif tty:
            status, out = self._run_terminal(argv, input=input, env=env, workdir=workdir, user=user,
                                             timeout=timeout)
            err = b""
        else:
            status, out, err = self._run(argv, input=input, env=env, workdir=workdir, user=user, timeout=timeout)
        result = ExecResult(status, out.decode(errors="replace"), err.decode(errors="replace"), tuple(argv))
        if check:
            result.check()
        return result

    def spawn(self, cmd: Command, *, env: Mapping[str, str] | None = None, workdir: str | None = None,
              user: str | None = None, stdin: bool = False) -> Process:
        """Start ``cmd`` in the background; see :class:`Process`."""
        argv = _argv(cmd)
        watch, out_r, err_r, in_w = self._launch(argv, env, workdir, user, stdin)
        return Process(self, argv, watch, out_r, err_r, in_w if in_w >= 0 else None)

    def _kill_tree(self, pid: int, sig: int) -> None:
        self._rt.kill(pid, sig, group=True)

    # -- files ------------------------------------------------------------------------------
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

    # -- network ----------------------------------------------------------------------------
    def connect(self, port: int, timeout: float = 10.0, host: str | None = None) -> socket.socket:
        """A TCP socket connected to ``host:port`` *inside* the container's network namespace.

        Without ``host``: 127.0.0.1, then ::1 (a server told to listen on "localhost" often
        ends up on ::1 alone; ``publish`` reaches both too).  Retries while the port refuses
        (the server may still be starting) until ``timeout``.
        """
        hosts = (host,) if host else LOOPBACKS
        deadline = time.monotonic() + timeout
        while True:
            for h in hosts:
                sock = self._rt.socket("inet6" if ":" in h else "inet")
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    sock.connect((h, port))
                except OSError as exc:
                    sock.close()
                    error = exc
                    continue
                sock.settimeout(None)
                return sock
            if time.monotonic() >= deadline:
                raise ContainerError(
                    f"cannot connect to {' or '.join(hosts)} port {port} in container {self.id} within {timeout:g}s: "
                    f"{error.strerror or error}; main process: {self._main_state()}") from error
            time.sleep(0.02)

    def publish(self, port: int) -> tuple[str, int]:
        """Forward a free port on 127.0.0.1 to ``port`` in the container; returns (host, port)."""
        from .network import publish

        return publish(self, port)

    @property
    def ports(self) -> dict[int, tuple[str, int]]:
        """The published ports: container port -> (host, port) on the host."""
        return {p: f.address for p, f in self._forwarders.items()}

    def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        """Block until ``port`` accepts connections inside the container (see ``wait.port``).

        Raises WaitTimeout (with the main process's state and last log lines) otherwise.
        """
        from .wait import port as port_open

        port_open(port).wait(self, timeout)

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> None:
        """Block until the main process's output matches the regex ``pattern`` (see ``wait.log``)."""
        from .wait import log

        log(pattern).wait(self, timeout)

    def _main_state(self) -> str:
        if self._main is None:
            return "none"
        try:
            status = self._main.wait(0)
        except ContainerError as exc:
            return f"never started ({exc})"
        return "running" if status is None else f"exited with status {status}"

    # -- changes ----------------------------------------------------------------------------
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

    @property
    def runtime_files(self) -> tuple[str, ...]:
        """Files the runtime mounts over the image's (not the container's changes): the resolver
        configuration of ``host`` and ``slirp``, the hosts file of a network's member."""
        files = ("/etc/resolv.conf",) if self._mode != "none" else ()
        return (*files, "/etc/hosts") if self._nets else files

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
        self.engine._finished(self)
        return self.exit_status

    def kill(self) -> None:
        """Kill every process of the container at once."""
        self.stop(timeout=0)

    def commit(self, tag: str | None = None) -> Image:
        """Save the container's current files as a new image (a layer on top of its image)."""
        self._check_not_removed("commit")
        return self.engine._commit(self, tag)

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
        from .paths import default_store_path

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
        self.engine._forget(self)


def _signal_number(name: str | None) -> int:
    if not name:
        return signal.SIGTERM
    name = name.strip().upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    return int(getattr(signal, name, signal.SIGTERM))


def _communicate(out_r: int, err_r: int, in_w: int, data: bytes | None,
                 timeout: float | None) -> tuple[bytes, bytes, bool]:
    """Read both pipes (and feed stdin) until EOF or ``timeout``; closes the fds."""
    sel = selectors.PollSelector()  # three fds at most: no epoll instance to create per command
    bufs: dict[int, list[bytes]] = {out_r: [], err_r: []}
    sel.register(out_r, selectors.EVENT_READ)
    sel.register(err_r, selectors.EVENT_READ)
    pending = memoryview(data or b"")
    if in_w >= 0:
        if data:
            os.set_blocking(in_w, False)
            sel.register(in_w, selectors.EVENT_WRITE)
        else:
            os.close(in_w)
            in_w = -1
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    try:
        while sel.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(left):
                fd = int(key.fd)
                if fd == in_w:
                    try:
                        n = os.write(fd, pending[:65536])
                    except BrokenPipeError:
                        n = len(pending)
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(fd)
                        os.close(fd)
                        in_w = -1
                    continue
                chunk = os.read(fd, 65536)
                if chunk:
                    bufs[fd].append(chunk)
                else:
                    sel.unregister(fd)
    finally:
        sel.close()
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
    return b"".join(bufs[out_r]), b"".join(bufs[err_r]), timed_out
