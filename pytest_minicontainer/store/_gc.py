"""Garbage collection: what no image, tag or running session references goes.

:func:`collect` takes an exclusive flock on ``locks/gc.lock``; imports hold it shared
(``Store.in_use``) from their first layer to ``save_image``, so a prune never deletes a layer
that an image is about to reference.  A running session's containers keep their layers
through pins (``run/<session>/pins``, :func:`pin`), which go with the session's directory.
Work in progress (``tmp/<name>``) goes once its owner's flock is free (:func:`collect_tmp`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Container, Iterable
from pathlib import Path

from ..errors import StoreError
from . import _owner
from ._fs import read_json, tree_size
from ._layout import Layout
from ._tags import Tags
from ._trees import TreeAccess

__all__ = ["GC_WAIT", "collect", "collect_tmp", "pin", "pinned_layers"]

GC_WAIT = 30.0
PINS = "pins"  # in a session's run directory: layers its containers use


def collect(paths: Layout, tags: Tags, trees: TreeAccess, owned: Container[Path],
            run_cleaner: Callable[[Path], int] | None, *, wait: float, everything: bool) -> int:
    """``Store.gc``: bytes freed.  ``owned``: this process's tmp dirs (alive by definition)."""
    fd = os.open(paths.locks / "gc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"the store {paths.root} is busy (another process is importing"
                                     " an image); try `minicontainer prune` again later") from None
                time.sleep(0.05)
        freed = collect_tmp(paths, trees, owned)
        if run_cleaner is not None:  # first: what dead sessions pinned is then gone too
            freed += run_cleaner(paths.run)
        if everything:
            tags.update(lambda t: t.clear())
        tagged = set(tags.read().values())
        # what is left in run/ after the cleaner: sessions still running
        live_sessions = {p.name for p in paths.run.iterdir()} if paths.run.is_dir() else set()
        images = []
        for path in paths.images.glob("*.json"):
            try:
                rec = read_json(path)
            except (OSError, ValueError):
                continue
            ended = rec.get("session") is not None and rec["session"] not in live_sessions
            if rec.get("digest") not in tagged and (everything or ended):
                freed += path.lstat().st_blocks * 512
                path.unlink()
                continue
            images.append(rec)
        layers: set[str] = set()
        blobs: set[str] = set()
        for rec in images:
            for d in rec.get("layer_dirs", ()):
                p = Path(d)
                if not p.is_absolute() and p.parts[:1] == ("layers",):
                    layers.add(p.parts[1])
            blobs.update(b[7:] for b in rec.get("blobs", ()))
        layers |= pinned_layers(paths.run)
        seen: set[tuple[int, int]] = set()
        for entry in list(paths.layers.iterdir()):
            if entry.name not in layers:
                freed += tree_size(entry, seen) + 4096
                trees.remove(entry)
        for entry in list(paths.blobs.iterdir()):
            if entry.name not in blobs:
                freed += entry.lstat().st_blocks * 512
                entry.unlink()
        for entry in list(paths.exports.glob("*.json")):
            if entry.stem not in layers:
                with contextlib.suppress(OSError):
                    entry.unlink()
        live = {rec["digest"] for rec in images}
        for entry in list(paths.sources.iterdir()):
            with contextlib.suppress(OSError):
                if entry.read_text().strip() not in live:
                    entry.unlink()

        if everything and paths.cache_mounts.is_dir():  # RUN --mount=type=cache directories
            for entry in list(paths.cache_mounts.iterdir()):
                freed += tree_size(entry, seen) + 4096
                trees.remove(entry)

        def drop_dangling(t: dict[str, str]) -> None:
            for name in [k for k, v in t.items() if v not in live]:
                del t[name]

        tags.update(drop_dangling)
        return freed
    finally:
        os.close(fd)


def collect_tmp(paths: Layout, trees: TreeAccess, owned: Container[Path]) -> int:
    """Remove what killed writers left: ``.NAME.PID.tmp`` files and ``tmp/`` dirs whose owner died."""
    freed = 0
    # ".NAME.PID.tmp" files of atomic writes whose writer was killed between write and rename
    for d in (paths.root, paths.images, paths.exports, paths.sources, paths.blobs):
        for entry in d.glob(".*.tmp"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(entry.name.rsplit(".", 2)[-2])
                if not _pid_alive(pid):
                    freed += entry.lstat().st_blocks * 512
                    entry.unlink()
    for entry in list(paths.tmp.iterdir()):
        if entry.name.endswith(_owner.SUFFIX):
            if not entry.with_name(entry.name[: -len(_owner.SUFFIX)]).exists() \
                    and not _owner.owner_alive(entry.with_name(entry.name[: -len(_owner.SUFFIX)])):
                with contextlib.suppress(OSError):
                    entry.unlink()
            continue
        if entry in owned or _owner.owner_alive(entry):
            continue
        freed += tree_size(entry)
        trees.remove(entry)
        with contextlib.suppress(OSError):
            entry.with_name(entry.name + _owner.SUFFIX).unlink()
    return freed


def pin(paths: Layout, session_dir: Path, layer_dirs: Iterable[str]) -> None:
    """Add the store's layers among ``layer_dirs`` to ``session_dir``'s pins."""
    names = [Path(d).name for d in layer_dirs if Path(d).parent == paths.layers]
    if names:
        with open(Path(session_dir) / PINS, "a", encoding="utf-8") as f:
            f.write("".join(n + "\n" for n in names))


def pinned_layers(run_dir: Path) -> set[str]:
    """Layer names pinned by the sessions that have a directory in ``run_dir``."""
    found: set[str] = set()
    for pins in run_dir.glob(f"*/{PINS}"):
        with contextlib.suppress(OSError):
            found.update(line for line in pins.read_text(encoding="utf-8").split() if line)
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
