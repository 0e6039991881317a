"""Commands in a container: ``exec`` to completion, ``spawn`` in the background.

Commands run by pid 1 inside the container; their stdio are pipes created here and handed
over, so output arrives directly, without copies through the runtime.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ._container_state import ContainerState
from ._env import checked_env
from .errors import ContainerError, ExecError, ExecTimeout
from .options import command_argv
from .runtime.client import ExitWatch

__all__ = ["Command", "ExecResult", "Process", "Processes"]

Command = str | Sequence[str]


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


def _argv(cmd: Command) -> list[str]:
    argv = command_argv(cmd)
    if not argv:
        raise ValueError("empty command")
    return argv


class Process:
    """A command started with :meth:`Container.spawn`: it runs while the test goes on."""

    def __init__(self, container: Processes, argv: list[str], watch: ExitWatch,
                 stdout: int | None, stderr: int | None, stdin: int | None, *,
                 kill: Callable[[int, int, bool], None]) -> None:
        self.container = container
        self.argv = argv
        self._watch = watch
        self._pid: int | None = None
        self._kill = kill  # (pid, signal, group): signals the process (and its group) in the container
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
        if self._pid is None:  # kept: a signal handler may ask while wait() holds the watch
            self._pid = self._watch.pid
        return self._pid

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

    def kill(self, sig: int = signal.SIGKILL, *, group: bool = True) -> None:
        """Signal the process and everything it started (``group=False``: the process alone)."""
        self._kill(self.pid, sig, group)

    @property
    def terminal(self) -> int:
        """The master of the terminal of a process spawned with ``tty``; the caller closes it."""
        return self._watch.terminal

    def exit_fileno(self) -> int:
        """A descriptor that becomes readable once the process has exited (for ``select``)."""
        return self._watch.sock.fileno()

    @property
    def stdout(self) -> str:
        return bytes(self._out).decode(errors="replace")

    @property
    def stderr(self) -> str:
        return bytes(self._err).decode(errors="replace")


class Processes(ContainerState):
    """The commands part of a Container: ``exec``, ``spawn`` and the plumbing they share."""

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
              user: str | None = None, stdin: bool = False, stdio: Sequence[int] | None = None,
              tty: tuple[int, int] | None = None) -> Process:
        """Start ``cmd`` in the background; see :class:`Process`.

        Its output is collected from pipes (``Process.stdout``), unless ``stdio`` (three host
        descriptors) are to be its stdin, stdout and stderr instead, as ``minicontainer run``
        hands it its own, or ``tty`` (rows, columns) runs it on a new terminal of the
        container's, whose master is ``Process.terminal``.
        """
        argv = _argv(cmd)
        if stdio is not None or tty is not None:
            fds = tuple(stdio) if stdio is not None and tty is None else (-1, -1, -1)
            if len(fds) != 3:
                raise ValueError(f"stdio takes three descriptors (stdin, stdout, stderr), not {stdio!r}")
            watch = self._start(argv, env, workdir, user, *fds, tty=tty)
            return Process(self, argv, watch, None, None, None, kill=self._signal)
        watch, out_r, err_r, in_w = self._launch(argv, env, workdir, user, stdin)
        return Process(self, argv, watch, out_r, err_r, in_w if in_w >= 0 else None, kill=self._signal)

    def _signal(self, pid: int, sig: int, group: bool) -> None:
        self._rt.kill(pid, sig, group=group)

    def _kill_tree(self, pid: int, sig: int) -> None:
        self._signal(pid, sig, True)


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
