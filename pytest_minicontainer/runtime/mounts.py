"""The mount plan of a container: built as data first, then applied in order.

Following bubblewrap's *plan, then execute*: :func:`build_plan` turns a container spec and
its scratch directory into a list of small operations, which is easy to read and to
unit-test without privileges; :func:`apply_plan` runs them inside the container's fresh
mount namespace (in pid 1, before ``pivot_root``).  The order matters and is explained where
it is decided.

A spec (the library's ``Engine`` writes it) holds what the container is made of, never
where its writable layer lives: ``lowers`` (the image's layer directories, bottom first),
``overlays`` (``{"target", "lowers"}`` for the ``host`` image's per-directory overlays),
``binds`` (``{"source", "target", "readonly"}``), ``resolv`` (``"slirp"`` for a resolver
file of its own), ``hostname`` and ``network``.  The writable layer, overlayfs's work
directories and the mount point are made inside the scratch directory the runtime gives the
container, so that a spare container can prepare all of it before the spec arrives.  The
spec's type is :class:`.messages.ContainerSpec`.
"""

from __future__ import annotations

import errno
import functools
import json
import os
from collections.abc import Sequence
from typing import NamedTuple

from .. import _sys
from ..rootpath import resolve_in_root
from .messages import ContainerSpec

__all__ = [
    "HOSTS",
    "RESOLV_CONF",
    "Bind",
    "DevTmpfs",
    "MakeDirs",
    "MakePrivate",
    "Op",
    "Overlay",
    "PivotRoot",
    "Proc",
    "WriteFile",
    "apply_plan",
    "build_plan",
    "host_entries",
    "layers_key",
    "layout",
    "stage",
    "template_key",
]

RESOLV_CONF = "/etc/resolv.conf"
HOSTS = "/etc/hosts"
# slirp4netns's DNS forwarder, as Docker would write it for that network
SLIRP_RESOLV = "nameserver 10.0.2.3\n"

# /dev nodes bound from the host: all that a process reasonably expects (what runc and
# bubblewrap give too); the rest of /dev (disks, consoles, kmsg) stays out of a container.
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
# runc's masked and read-only /proc paths: kernel internals a test has no business with.
PROC_MASKED = ("kcore", "keys", "timer_list", "sched_debug", "latency_stats", "timer_stats", "sysrq-trigger")
PROC_READONLY = ("sys", "bus", "fs", "irq", "acpi", "scsi", "asound")


class MakePrivate(NamedTuple):
    """Stop mount events propagating to the host; pivot_root also requires it."""


class MakeDirs(NamedTuple):
    """The container's own directories in its scratch space (writable layer, work dirs)."""

    paths: tuple[str, ...]


class WriteFile(NamedTuple):
    path: str
    text: str


class Overlay(NamedTuple):
    root: str
    target: str  # a container path; "/" is the root itself
    lowers: tuple[str, ...]  # bottom first
    upper: str
    work: str


class Bind(NamedTuple):
    root: str
    source: str
    target: str
    readonly: bool = False
    # Not asked for by the user (the host's resolver file for network="host"): left out when
    # the image cannot hold its mount point, e.g. a rootless container over a directory of
    # the host's root, where /etc cannot be copied up to add the file.
    optional: bool = False


class Proc(NamedTuple):
    root: str
    target: str


class DevTmpfs(NamedTuple):
    root: str
    target: str


class PivotRoot(NamedTuple):
    new_root: str


# Named tuples rather than dataclasses: this module is imported by the zygote, and what it
# imports is copied into every container it clones (dataclasses brings in inspect and ast).
Op = MakePrivate | MakeDirs | WriteFile | Overlay | Bind | Proc | DevTmpfs | PivotRoot


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


def build_plan(spec: ContainerSpec, scratch: str) -> list[Op]:
    """Turn a container spec (see the module's docstring) into mount operations.

    Targets other than the root are container paths: they are resolved inside the new root
    only when applied, once the overlay is mounted and the image's symlinks are visible.
    """
    upper, work, merged = (os.path.join(scratch, name) for name in ("upper", "work", "merged"))
    # Host directories (the ``host`` image) get overlays of their own *after* the root one, so
    # that they cover the root's (empty) directory of the same name.
    host_overlays: list[Op] = [
        Overlay(merged, ov["target"], tuple(ov["lowers"]), os.path.join(upper, ov["target"].lstrip("/")),
                os.path.join(scratch, f"work{n}"))
        for n, ov in enumerate(spec.get("overlays", ()))]
    plan: list[Op] = [MakePrivate(), MakeDirs(tuple(os.path.join(scratch, d) for d in layout(spec))),
                      Overlay(merged, "/", tuple(spec["lowers"]), upper, work), *host_overlays]
    # User mounts next: they may target any path of the image, and /proc, /dev come last so
    # that a careless mount of "/dev" from the host cannot hide the container's own.
    for b in spec.get("binds", ()):
        plan.append(Bind(merged, b["source"], b["target"], bool(b.get("readonly")), bool(b.get("optional"))))
    if spec.get("resolv") == "slirp":
        resolv = os.path.join(scratch, "resolv.conf")
        plan += [WriteFile(resolv, SLIRP_RESOLV), Bind(merged, resolv, RESOLV_CONF, readonly=True)]
    plan.append(Proc(merged, "/proc"))
    plan.append(DevTmpfs(merged, "/dev"))
    plan.append(PivotRoot(merged))
    return plan


def layout(spec: ContainerSpec) -> tuple[str, ...]:
    """The directories (relative to the scratch dir, parents first) that ``spec``'s plan makes."""
    dirs = ["upper", "work", "merged"]
    for n, ov in enumerate(spec.get("overlays", ())):
        parts = ov["target"].strip("/").split("/")
        dirs += ["/".join(["upper", *parts[:i]]) for i in range(1, len(parts) + 1)]
        dirs.append(f"work{n}")
    return tuple(dict.fromkeys(dirs))


def layers_key(spec: ContainerSpec) -> str:
    """What a writable layer depends on beyond its own content: the layers below it."""
    return json.dumps([spec["lowers"], spec.get("overlays", [])], separators=(",", ":"))


def template_key(spec: ContainerSpec) -> str | None:
    """What a spare container may prepare ahead of ``spec``: None if it must not.

    Two specs with the same key make the same mounts (hostname and main command aside), so
    a spare prepared with one serves the other.  Specs with bind mounts are never prepared:
    a source directory replaced between the preparation and the test would be stale.
    """
    if spec.get("binds") or spec.get("network", "none") == "host":
        return None
    return json.dumps([spec["lowers"], spec.get("overlays", []), spec.get("resolv")], separators=(",", ":"))


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


def _user_bind(op: Bind) -> None:
    """A bind mount of the spec, with errors that speak of the user's paths, not ours."""
    target = _inside(op.root, op.target)
    source_is_dir = os.path.isdir(op.source)
    if os.path.lexists(target) and os.path.isdir(target) != source_is_dir:
        if op.optional:
            return
        what, there = ("directory", "a file") if source_is_dir else ("file", "a directory")
        raise OSError(errno.ENOTDIR if source_is_dir else errno.EISDIR,
                      f"cannot mount the {what} {op.source} on {op.target}: the image has {there} there "
                      f"(mount a {'file' if source_is_dir else 'directory'} there, or choose another target)")
    try:
        _bind(op.source, target, op.readonly, recursive=not op.readonly)
    except OSError as exc:
        if op.optional and exc.errno in (errno.EACCES, errno.EPERM, errno.EOVERFLOW, errno.EROFS):
            return
        if not isinstance(exc, (FileExistsError, NotADirectoryError)):
            raise
        raise OSError(exc.errno, f"cannot make the mount point {op.target}: one of its parents is not a "
                                 "directory in the image (choose another target)") from None


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


@functools.cache
def host_entries() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The masked /proc files, read-only /proc directories and /dev nodes this host has.

    They depend on the kernel, not on the container: the zygote asks once and every
    container it forks inherits the answer instead of stat-ing two dozen paths.
    """
    return (tuple(n for n in PROC_MASKED if os.path.isfile("/proc/" + n)),
            tuple(n for n in PROC_READONLY if os.path.isdir("/proc/" + n)),
            tuple(n for n in DEV_NODES if os.path.exists("/dev/" + n)))


def _node_bind(source: str, target: str, host_root: bool) -> None:
    """Bind the host's device node ``source`` (an existing file at ``target``).

    With ``host_root`` (root inside is the host's root, who owns the node) the bind is made
    read-only: reads and writes of the device still work, but a ``chmod 000 /dev/null`` in
    a container would otherwise change the host's own /dev/null.
    """
    _sys.mount(source, target, None, _sys.MS_BIND)
    if host_root:
        _sys.mount(None, target, None, _sys.MS_REMOUNT | _sys.MS_BIND | _sys.MS_RDONLY | _locked_flags(target))


def _proc(target: str, host_root: bool = False) -> None:
    masked, readonly, _nodes = host_entries()
    _mkdir(target)
    _sys.mount("proc", target, "proc", _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC)
    if not host_root:
        _network_floor(target)
    for name in masked:
        _node_bind("/dev/null", os.path.join(target, name), host_root)
    # read-only again: a bind inherits the proc mount's flags and may not drop them
    ro_flags = _sys.MS_REMOUNT | _sys.MS_BIND | _sys.MS_RDONLY | _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC
    for name in readonly:
        path = os.path.join(target, name)
        _sys.mount(path, path, None, _sys.MS_BIND | _sys.MS_REC)
        _sys.mount(None, path, None, ro_flags)


def _network_floor(proc: str) -> None:
    """Rootless: ports below 1024 and ping for everyone in the container's network namespace.

    Root in a container lives in a nested user namespace (see ``init._lock_mounts``) and has
    no capability in the Engine's, which owns the network namespace: without these, a web
    server on port 80 and ``ping`` would fail.  Docker sets both in its containers too.  In
    the host's network namespace (``network="host"``) the writes are refused, and skipped.
    """
    for name, value in (("net/ipv4/ip_unprivileged_port_start", "0"),
                        ("net/ipv4/ping_group_range", "0 2147483647")):
        try:
            with open(os.path.join(proc, "sys", name), "w") as f:
                f.write(value)
        except OSError:
            pass


def _dev(target: str, host_root: bool = False) -> None:
    _nodes = host_entries()[2]
    _mkdir(target)
    _sys.mount("tmpfs", target, "tmpfs", _sys.MS_NOSUID | _sys.MS_NOEXEC, "mode=755,size=65536k")
    for name in _nodes:
        path = os.path.join(target, name)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        _node_bind("/dev/" + name, path, host_root)
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


def stage(path: str, host_root: bool = False) -> None:
    """Mount /proc and /dev ahead of time under ``path``, before the container is known.

    A spare container (see the zygote) calls this while it waits for work; applying the
    plan then only *moves* the two trees into place (one ``MS_MOVE`` each) instead of
    the dozen mounts building them takes.  A tmpfs at ``path`` keeps the host's
    directory untouched (the mount namespace is private).
    """
    _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
    _sys.mount("tmpfs", path, "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV, "mode=755,size=64k")
    _proc(os.path.join(path, "proc"), host_root)
    _dev(os.path.join(path, "dev"), host_root)


def _move(source: str, target: str) -> None:
    _mkdir(target)
    _sys.mount(source, target, None, _sys.MS_MOVE)


def apply_plan(plan: Sequence[Op], staged: str | None = None, host_root: bool = False) -> None:
    """Execute ``plan`` in the current (new, private) mount namespace.

    With ``staged`` (a directory prepared by :func:`stage`), /proc and /dev are moved
    from there rather than mounted anew.  ``host_root``: see :func:`_node_bind`.
    """
    for op in plan:
        if isinstance(op, MakePrivate):
            if staged is None:
                _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
        elif isinstance(op, MakeDirs):
            for path in op.paths:
                os.makedirs(path, exist_ok=True)
        elif isinstance(op, WriteFile):
            with open(op.path, "w") as f:
                f.write(op.text)
        elif isinstance(op, Overlay):
            _overlay(op)
        elif isinstance(op, Bind):
            _user_bind(op)
        elif isinstance(op, Proc):
            target = _inside(op.root, op.target)
            if staged is None:
                _proc(target, host_root)
            else:
                _move(os.path.join(staged, "proc"), target)
        elif isinstance(op, DevTmpfs):
            target = _inside(op.root, op.target)
            if staged is None:
                _dev(target, host_root)
            else:
                _move(os.path.join(staged, "dev"), target)
        elif isinstance(op, PivotRoot):
            _pivot(op.new_root)
