"""``minicontainer``: diagnose a host, run a container, look after the image store.

``check`` and ``run`` live here; the store's commands (``images``, ``import``, ``rmi``,
``prune``, ``du``) come from :mod:`pytest_minicontainer.images.cli_store`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import pwd
import select
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from .errors import MiniContainerError, RuntimeUnavailable
from .paths import default_store_path

if TYPE_CHECKING:
    from .container import Container, Process
    from .image import ImageConfig
    from .options import Mount

__all__ = ["main"]

#: The status of an error of the CLI itself (a bad option value, an image or a container it
#: cannot use): Docker's 125, apart from what a command in the container returns (126/127 when
#: it cannot start, or its own status).  argparse's own errors (unknown option) stay 2.
ERROR_STATUS = 125

#: Signals ``run`` passes on to the container's command, as ``docker run`` does (sig-proxy).
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class UsageError(Exception):
    """A command-line value the command cannot use; the message names the option and the right form."""


def _check_lines() -> list[tuple[str, str, str]]:
    """(status, what, detail) rows about this host; status is ok, warn or FAIL."""
    from .runtime import hostcheck, idmap

    rows: list[tuple[str, str, str]] = []
    major, minor = hostcheck.kernel_version()
    rows.append(("ok" if (major, minor) >= (5, 11) else "FAIL", "kernel",
                 platform.release() + ("" if (major, minor) >= (5, 11) else
                                       " (overlayfs in a user namespace needs 5.11+: upgrade the kernel)")))
    max_ns = hostcheck.sysctl("user.max_user_namespaces")
    rows.append(("ok" if max_ns not in ("0",) else "FAIL", "user.max_user_namespaces",
                 f"{max_ns}" + (" (fix: sudo sysctl -w user.max_user_namespaces=15000)" if max_ns == "0" else "")))
    clone = hostcheck.sysctl("kernel.unprivileged_userns_clone")
    if clone is not None:
        rows.append(("ok" if clone == "1" else "FAIL", "kernel.unprivileged_userns_clone",
                     clone + ("" if clone == "1" else " (fix: sudo sysctl -w kernel.unprivileged_userns_clone=1)")))
    apparmor = hostcheck.sysctl("kernel.apparmor_restrict_unprivileged_userns")
    if apparmor is not None:
        rows.append(("ok" if apparmor == "0" or os.geteuid() == 0 else "FAIL",
                     "kernel.apparmor_restrict_unprivileged_userns",
                     apparmor + ("" if apparmor == "0" else
                                 " (fix: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0)")))
    manager = hostcheck.in_container_manager()
    seccomp = hostcheck.seccomp_mode()
    rows.append(("warn" if seccomp == 2 else "ok", "seccomp",
                 ("filtered" if seccomp == 2 else "none") + (f", inside {manager}" if manager else "")))
    chosen = idmap.choose()
    if chosen.kind == "range":
        rows.append(("ok", "id mapping", chosen.describe()))
    elif chosen.kind == "root":
        rows.append(("ok", "id mapping", "real root: identity maps"))
    else:
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = str(os.geteuid())
        why = ("newuidmap/newgidmap not installed (package uidmap)" if not shutil.which("newuidmap")
               else f"no range for {user} in /etc/subuid or /etc/subgid")
        rows.append(("warn", "id mapping", f"{chosen.describe()}: only root inside is mapped; {why} "
                     f"(fix: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user})"))
    cgroup = "/sys/fs/cgroup/cgroup.controllers"
    if os.path.exists(cgroup):
        writable = os.access("/sys/fs/cgroup", os.W_OK)
        rows.append(("ok", "cgroup v2", "delegated (writable)" if writable else
                     "not delegated to this user (resource limits unavailable; not needed)"))
    else:
        rows.append(("ok", "cgroup v2", "not the unified hierarchy (resource limits unavailable; not needed)"))
    return rows


def cmd_check(args: argparse.Namespace) -> int:
    from .engine import Engine

    failed = False
    for status, what, detail in _check_lines():
        failed |= status == "FAIL"
        print(f"[{status:>4}] {what}: {detail}")
    try:
        # the store that will be used, not a scratch one: its filesystem matters (overlayfs)
        Engine.probe(args.store or default_store_path())
    except RuntimeUnavailable as exc:
        print(f"[FAIL] container: {exc.cause}\n       fix: {exc.fix}")
        return 1
    except MiniContainerError as exc:
        print(f"[FAIL] container: {exc}")
        return 1
    print("[  ok] container: started and stopped a container (user, mount, pid, uts, ipc, net namespaces, "
          "overlayfs, pivot_root)")
    return 1 if failed else 0


def _parse_env(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"-e {item!r}: the variable has no name; use -e NAME=VALUE (or -e NAME to pass the "
                             "host's value)")
        if not sep:
            value = os.environ.get(key, "")
        env[key] = value
    return env


def _parse_volume(spec: str) -> Mount:
    """``-v SRC:DST[:ro|rw]`` as a Mount; a UsageError naming the option otherwise.

    Checked here rather than left to the engine, so that the message quotes the option as
    typed and shows the form (Docker's anonymous ``-v /path`` volumes do not exist here).
    """
    from .options import parse_mount

    form = "HOST_PATH:CONTAINER_PATH[:ro|rw] (e.g. -v /tmp/data:/data:ro)"
    if ":" not in spec:
        raise UsageError(f"-v {spec!r} names one path: use {form}; there are no anonymous volumes, a host "
                         "directory or file must be named")
    try:
        mount = parse_mount(spec)
    except ValueError:
        raise UsageError(f"-v {spec!r} is not {form}") from None
    if not mount.target.startswith("/"):
        raise UsageError(f"-v {spec!r}: the container path {mount.target!r} must be absolute: use {form}")
    return mount


def _run_argv(config: ImageConfig, entrypoint: str | None, args: Sequence[str]) -> list[str]:
    """The main process's argv, combined from the image and the command line as ``docker run`` does.

    ARGS replace the image's Cmd and follow its Entrypoint; ``--entrypoint PROG`` replaces
    the Entrypoint *and* drops the Cmd (Docker documents this: the Cmd was written for the
    old entrypoint), ``--entrypoint ''`` clears it.  Computed here because ``Engine.run``
    runs a given list exactly as it is.  With nothing at all, ``/bin/sh``, for rootfs images
    that carry no config.
    """
    if entrypoint is None:
        head, default_args = list(config.entrypoint or ()), list(config.cmd or ())
    else:
        head, default_args = ([entrypoint] if entrypoint else []), []
    return [*head, *(list(args) or default_args)] or ["/bin/sh"]


class _SignalProxy:
    """Pass the signals in FORWARDED_SIGNALS on to the container's command, as ``docker run`` does.

    The command runs in a session of its own in another pid namespace, so neither the
    terminal's ^C nor a ``kill`` of this process would reach it: the CLI would die while the
    command ran on unaware (its traps never run, its status is lost).  Only the command's
    process is signalled, as Docker signals its pid 1, so that it decides what its children
    get.  A second SIGINT kills the command and everything it started: a command that
    ignores ^C can still be stopped from the keyboard.

    The handlers are installed *before* the command starts and signals that arrive until its
    pid is known are held back, so none is lost (or kills the CLI) in between.
    """

    def __init__(self) -> None:
        self._process: Process | None = None
        self._pending: list[int] = []
        self._interrupts = 0
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    def __enter__(self) -> _SignalProxy:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in FORWARDED_SIGNALS}
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            if handler is not None:  # None: not set from Python, nothing to put back
                signal.signal(sig, handler)

    def started(self, process: Process) -> None:
        """The command runs as ``process``: send what arrived before."""
        process.pid  # noqa: B018 - known from now on: a handler must not wait for it (wait() holds it)
        self._process = process
        while self._pending:
            self._send(self._pending.pop(0))

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._process is None:
            self._pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum: int) -> None:
        assert self._process is not None
        sig, group = signum, False
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                sig, group = signal.SIGKILL, True
                with contextlib.suppress(OSError, RuntimeError):
                    print("minicontainer: second interrupt: killing the command", file=sys.stderr)
        # it may have just exited (ESRCH) or the container may be going: nothing left to signal
        with contextlib.suppress(OSError, MiniContainerError):
            self._process.kill(sig, group=group)


def cmd_run(args: argparse.Namespace) -> int:
    from .engine import Engine

    with Engine(store=args.store) as engine:
        image = engine.image(args.image)
        try:
            command = _run_argv(image.config, args.entrypoint, args.command)
            mounts = [_parse_volume(v) for v in args.volume or ()]
            # The engine validates the rest (paths, names); what it refuses is a bad option too.
            # command=(): no main process of the engine's (its stdio go to the log); ours, with
            # this terminal's stdio, is started below.
            container = engine.run(image, command=(), env=_parse_env(args.env or ()), workdir=args.workdir,
                                   user=args.user, mounts=mounts, network=args.network, hostname=args.hostname)
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from exc
        with container as c, _SignalProxy() as proxy:
            if args.tty:
                status = _run_on_terminal(c, command, args.interactive, proxy)
            else:
                process = c.spawn(command, stdio=(0, 1, 2))
                proxy.started(process)
                status = process.wait()
            return 128 - status if status is not None and status < 0 else (status or 0)


def _run_on_terminal(container: Container, command: list[str], interactive: bool,
                     proxy: _SignalProxy) -> int | None:
    """``run -t``: the command on a terminal of the container's, relayed to this one.

    Our terminal goes into raw mode, so every key (^C, ^Z, arrows) reaches the container's
    terminal, which does the line editing and sends the signals; its size follows ours.
    Without ``-i`` nothing is read from stdin, as with ``docker run -t``.
    """
    from ._sys import raw_terminal
    from ._terminal import relay, window_size, window_size_follows

    process = container.spawn(command, tty=window_size(0, 1))
    proxy.started(process)
    master = process.terminal
    raw = raw_terminal(0) if interactive and os.isatty(0) else contextlib.nullcontext()

    def show(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]

    try:
        with raw, window_size_follows(master, 0, 1):
            relay(master, process.exit_fileno(), 0 if interactive else None, show)
    finally:
        os.close(master)
    return process.wait()


def _stdout_closed() -> bool:
    """True when nobody reads our stdout any more (the write end of a pipe whose reader exited)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _clean_run_dir(run_dir: os.PathLike[str] | str) -> int:
    """Remove scratch space that crashed sessions left in ``run_dir``; bytes freed.

    The removal runs inside a user namespace (a runtime of its own), because a container's
    files may belong to ids only the namespace maps.
    """
    from pathlib import Path

    from .runtime.client import Runtime
    from .store import tree_size

    before = tree_size(os.fspath(run_dir))  # without recursion: a dead container's tree can be very deep
    runtime = Runtime(Path(run_dir))
    try:
        runtime.clean_stale()
    finally:
        runtime.close()
    return max(0, before - tree_size(os.fspath(run_dir)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minicontainer",
                                     description="Diagnose a host, run a container, look after the image store.")
    parser.add_argument("--store", default=None, help="image store (default: $MINICONTAINER_STORE or ~/.cache)")
    sub = parser.add_subparsers(dest="command_name", required=True)
    p = sub.add_parser("check", help="can this host run containers? what to change if not")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("run", help="run a command in a new container (removed when it ends)")
    p.add_argument("--rm", action="store_true", help="accepted for Docker habits: containers never outlive the command")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="pass stdin on (without -t it always is)")
    p.add_argument("-t", "--tty", action="store_true",
                   help="give the command a terminal of the container's own (with -i: read from this one)")
    p.add_argument("-e", "--env", action="append", metavar="K=V")
    p.add_argument("-v", "--volume", action="append", metavar="SRC:DST[:ro|rw]")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--hostname")
    p.add_argument("--network", choices=("none", "host"), default="none")
    p.add_argument("--entrypoint", metavar="PROG",
                   help="replace the image's entrypoint (and its default arguments); '' clears it")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)
    try:
        from .images.cli_store import add_store_commands
    except ImportError:  # pragma: no cover - partial installs
        pass
    else:
        add_store_commands(sub)
    from .cli_build import add_build_command
    from .cli_compose import add_compose_command

    add_build_command(sub)
    add_compose_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            if hasattr(args, "store_command"):
                from .engine import Engine

                args.run_cleaner = _clean_run_dir
                # through an Engine: its store reaches trees of subordinate ids (see store._trees)
                with Engine(store=args.store) as engine:
                    status = int(args.store_command(args, engine.store))
            else:
                status = int(args.func(args))
            sys.stdout.flush()  # here, not at exit, so that a closed pipe is seen below
            return status
        except BrokenPipeError:
            if not _stdout_closed():
                raise
            # `minicontainer images | head`: the reader has all it wanted.  Stop quietly with the
            # status of a command killed by SIGPIPE, and point stdout at /dev/null so that the
            # interpreter's final flush does not report the pipe again (Python's documented way).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 128 + signal.SIGPIPE
    except UsageError as exc:
        print(f"minicontainer {args.command_name}: {exc}", file=sys.stderr)
        return ERROR_STATUS
    except MiniContainerError as exc:
        print(f"minicontainer: {exc}", file=sys.stderr)
        return ERROR_STATUS
    except KeyboardInterrupt:  # ^C before the command started (once it runs, ^C is forwarded to it)
        return 128 + signal.SIGINT
