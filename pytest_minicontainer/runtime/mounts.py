"""The mount plan of a container: built as data first, then applied in order.

Following bubblewrap's *plan, then execute*: :func:`build_plan` turns a container spec into a
list of small operations, which is easy to read and to unit-test without privileges;
:func:`apply_plan` runs them inside the container's fresh mount namespace (in pid 1, before
``pivot_root``).  The order matters and is explained where it is decided.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import _sys
from ..rootpath import resolve_in_root

__all__ = [
    "Bind",
    "DevTmpfs",
    "MakePrivate",
    "Op",
    "Overlay",
    "PivotRoot",
    "Proc",
    "apply_plan",
    "build_plan",
    "stage",
]

# /dev nodes bound from the host: all that a process reasonably expects (see RUNTIME-NOTES).
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
# runc's masked and read-only /proc paths: kernel internals a test has no business with.
PROC_MASKED = ("kcore", "keys", "timer_list", "sched_debug", "latency_stats", "timer_stats", "sysrq-trigger")
PROC_READONLY = ("sys", "bus", "fs", "irq")


@dataclass(frozen=True)
class MakePrivate:
    """Stop mount events propagating to the host; pivot_root also requires it."""


@dataclass(frozen=True)
class Overlay:
    root: str
    target: str  # a container path; "/" is the root itself
    lowers: tuple[str, ...]  # bottom first
    upper: str
    work: str


@dataclass(frozen=True)
class Bind:
    root: str
    source: str
    target: str
    readonly: bool = False


@dataclass(frozen=True)
class Proc:
    root: str
    target: str


@dataclass(frozen=True)
class DevTmpfs:
    root: str
    target: str


@dataclass(frozen=True)
class PivotRoot:
    new_root: str


Op = MakePrivate | Overlay | Bind | Proc | DevTmpfs | PivotRoot


def _inside(root: str, path: str) -> str:
    """``path`` (absolute, as the container sees it) below ``root`` on the host, never above it.

    Symbolic links are followed as the container would (see :mod:`..rootpath`), so that an
    image's ``/var/run -> /run`` cannot point a mount, or the directories created for it, at
    the host's own tree.
    """
    parts = resolve_in_root(path, lambda rel: os.path.join(root, rel))
    if parts is None:
        raise OSError(errno.ELOOP, f"too many levels of symbolic links in {path!r}")
    return os.path.join(root, *parts)


def build_plan(spec: dict[str, Any]) -> list[Op]:
    """Turn a container spec (see ``client.Runtime.create``) into mount operations.

    Targets other than the root are container paths: they are resolved inside the new root
    only when applied, once the overlay is mounted and the image's symlinks are visible.
    """
    root = spec["rootfs"]
    merged = root["merged"]
    plan: list[Op] = [MakePrivate(), Overlay(merged, "/", tuple(root["lowers"]), root["upper"], root["work"])]
    # Host directories (the ``host`` image) get overlays of their own *after* the root one, so
    # that they cover the root's (empty) directory of the same name.
    for ov in spec.get("overlays", ()):
        plan.append(Overlay(merged, ov["target"], tuple(ov["lowers"]), ov["upper"], ov["work"]))
    # User mounts next: they may target any path of the image, and /proc, /dev come last so
    # that a careless mount of "/dev" from the host cannot hide the container's own.
    for b in spec.get("binds", ()):
        plan.append(Bind(merged, b["source"], b["target"], bool(b.get("readonly"))))
    plan.append(Proc(merged, "/proc"))
    plan.append(DevTmpfs(merged, "/dev"))
    plan.append(PivotRoot(merged))
    return plan


def _mkdir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:  # a file or a symlink where a directory is wanted
        if not os.path.isdir(path):
            raise


def _touch(path: str) -> None:
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _locked_flags(path: str) -> int:
    """Flags a bind mount inherits and cannot drop in a user namespace (must be repeated)."""
    f = os.statvfs(path).f_flag
    return f & (_sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC | _sys.MS_RDONLY)


def _bind(source: str, target: str, readonly: bool, recursive: bool = False) -> None:
    if os.path.isdir(source):
        _mkdir(target)
    else:
        _touch(target)
    _sys.mount(source, target, None, _sys.MS_BIND | (_sys.MS_REC if recursive else 0))
    if readonly:
        flags = _locked_flags(target) | _sys.MS_RDONLY
        _sys.mount(None, target, None, _sys.MS_REMOUNT | _sys.MS_BIND | flags)


def _overlay(op: Overlay) -> None:
    target = op.root if op.target == "/" else _inside(op.root, op.target)
    _mkdir(target)
    # overlayfs takes the top layer first.  Paths relative to the lowers' common parent keep
    # the option string short (the kernel caps it at one page) for images with many layers.
    lowers = list(reversed(op.lowers))
    cwd = os.getcwd()
    base = os.path.commonpath(lowers) if len(lowers) > 1 else ""
    if base and base != "/":
        os.chdir(base)
        lowers = [os.path.relpath(p, base) for p in lowers]
    try:
        data = f"lowerdir={':'.join(_escape(p) for p in lowers)},upperdir={op.upper},workdir={op.work},userxattr"
        _sys.mount("overlay", target, "overlay", 0, data)
    finally:
        os.chdir(cwd)


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _proc(target: str) -> None:
    _mkdir(target)
    _sys.mount("proc", target, "proc", _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC)
    for name in PROC_MASKED:
        path = os.path.join(target, name)
        if os.path.isfile(path):
            _sys.mount("/dev/null", path, None, _sys.MS_BIND)
    for name in PROC_READONLY:
        path = os.path.join(target, name)
        if os.path.isdir(path):
            _bind(path, path, readonly=True, recursive=True)


def _dev(target: str) -> None:
    _mkdir(target)
    _sys.mount("tmpfs", target, "tmpfs", _sys.MS_NOSUID | _sys.MS_NOEXEC, "mode=755,size=65536k")
    for name in DEV_NODES:
        if os.path.exists("/dev/" + name):
            _bind("/dev/" + name, os.path.join(target, name), readonly=False)
    pts = os.path.join(target, "pts")
    os.mkdir(pts, 0o755)
    _sys.mount("devpts", pts, "devpts", _sys.MS_NOSUID | _sys.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
    os.symlink("pts/ptmx", os.path.join(target, "ptmx"))
    shm = os.path.join(target, "shm")
    os.mkdir(shm, 0o1777)
    _sys.mount("tmpfs", shm, "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV, "mode=1777,size=65536k")
    for name, dest in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")):
        os.symlink(dest, os.path.join(target, name))


def _pivot(new_root: str) -> None:
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching it then
    # leaves only the container's tree (runc's sequence, no put_old directory needed).
    os.chdir(new_root)
    _sys.pivot_root(".", ".")
    _sys.umount(".", _sys.MNT_DETACH)
    os.chdir("/")


def stage(path: str) -> None:
    """Mount /proc and /dev ahead of time under ``path``, before the container is known.

    A spare container (see the zygote) calls this while it waits for work; applying the
    plan then only *moves* the two trees into place (one ``MS_MOVE`` each) instead of
    the dozen mounts building them takes.  A tmpfs at ``path`` keeps the host's
    directory untouched (the mount namespace is private).
    """
    _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
    _sys.mount("tmpfs", path, "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV, "mode=755,size=64k")
    _proc(os.path.join(path, "proc"))
    _dev(os.path.join(path, "dev"))


def _move(source: str, target: str) -> None:
    _mkdir(target)
    _sys.mount(source, target, None, _sys.MS_MOVE)


def apply_plan(plan: Sequence[Op], staged: str | None = None) -> None:
    """Execute ``plan`` in the current (new, private) mount namespace.

    With ``staged`` (a directory prepared by :func:`stage`), /proc and /dev are moved
    from there rather than mounted anew.
    """
    for op in plan:
        if isinstance(op, MakePrivate):
            if staged is None:
                _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
        elif isinstance(op, Overlay):
            _overlay(op)
        elif isinstance(op, Bind):
            _bind(op.source, _inside(op.root, op.target), op.readonly, recursive=not op.readonly)
        elif isinstance(op, Proc):
            target = _inside(op.root, op.target)
            if staged is None:
                _proc(target)
            else:
                _move(os.path.join(staged, "proc"), target)
        elif isinstance(op, DevTmpfs):
            target = _inside(op.root, op.target)
            if staged is None:
                _dev(target)
            else:
                _move(os.path.join(staged, "dev"), target)
        elif isinstance(op, PivotRoot):
            _pivot(op.new_root)
