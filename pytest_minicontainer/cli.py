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
import shutil
import sys
from collections.abc import Sequence

from .errors import MiniContainerError, RuntimeUnavailable

__all__ = ["main"]


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
        Engine.probe(args.store)
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
        if not sep:
            value = os.environ.get(key, "")
        env[key] = value
    return env


def cmd_run(args: argparse.Namespace) -> int:
    from .engine import Engine

    with Engine(store=args.store) as engine:
        image = engine.image(args.image)
        command = list(args.command) or image.config.default_command() or ["/bin/sh"]
        mounts = list(args.volume or ())
        with engine.run(image, command=(), env=_parse_env(args.env or ()), workdir=args.workdir,
                        user=args.user, mounts=mounts, network=args.network, hostname=args.hostname) as c:
            watch = c._rt.exec(command, c._exec_env(None), c.workdir, c.user, [0, 1, 2])
            try:
                status = watch.wait()
            except KeyboardInterrupt:
                status = 130
            return 128 - status if status is not None and status < 0 else (status or 0)


def _clean_run_dir(run_dir: os.PathLike[str] | str) -> int:
    """Remove scratch space that crashed sessions left in ``run_dir``; bytes freed.

    The removal runs inside a user namespace (a runtime of its own), because a container's
    files may belong to ids only the namespace maps.
    """
    from pathlib import Path

    from .runtime.client import Runtime

    def size(path: Path) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
        return total

    before = size(Path(run_dir))
    runtime = Runtime(Path(run_dir))
    try:
        runtime.clean_stale()
    finally:
        runtime.close()
    return max(0, before - size(Path(run_dir)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minicontainer", description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="image store (default: $MINICONTAINER_STORE or ~/.cache)")
    sub = parser.add_subparsers(dest="command_name", required=True)
    p = sub.add_parser("check", help="can this host run containers? what to change if not")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("run", help="run a command in a new container (removed when it ends)")
    p.add_argument("--rm", action="store_true", help="accepted for Docker habits: containers never outlive the command")
    p.add_argument("-i", "--interactive", action="store_true", help="accepted: stdin is always passed through")
    p.add_argument("-t", "--tty", action="store_true", help="accepted: the terminal is passed through as it is")
    p.add_argument("-e", "--env", action="append", metavar="K=V")
    p.add_argument("-v", "--volume", action="append", metavar="SRC:DST[:ro]")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--hostname")
    p.add_argument("--network", choices=("none", "host"), default="none")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)
    try:
        from .images.cli_store import add_store_commands
    except ImportError:  # pragma: no cover - partial installs
        pass
    else:
        add_store_commands(sub)
    from .build import add_build_command

    add_build_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "store_command"):
            from .engine import Engine

            args.run_cleaner = _clean_run_dir
            # through an Engine: its store reaches trees of subordinate ids (see store._trees)
            with Engine(store=args.store) as engine:
                return int(args.store_command(args, engine.store))
        return int(args.func(args))
    except MiniContainerError as exc:
        print(f"minicontainer: {exc}", file=sys.stderr)
        return 125
