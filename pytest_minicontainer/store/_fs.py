"""Small filesystem helpers of the store: atomic writes, removal, sizes, disk-full errors.

Everything the store publishes is written to a temporary name and renamed into place, so a
reader (another xdist worker, a later session) sees the old state or the new one, never half.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .._rmtree import remove_tree
from ..errors import StoreError

__all__ = ["apply_owners", "atomic_write_json", "disk_full", "read_json", "remove_tree", "tree_size", "write_errors"]


def disk_full(where: Path | str) -> StoreError:
    return StoreError(
        f"the disk is full: cannot write {where}; free some space on that filesystem"
        " or run `minicontainer prune` to remove unused images and layers"
    )


@contextlib.contextmanager
def write_errors(where: Path | str) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT into StoreError, which says what to do."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(where) from exc
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with write_errors(path):
        try:
            # 0600: tags and image records are the store owner's alone, as the store root is
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600),
                      "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def apply_owners(root: str, owners: Sequence[Sequence[Any]]) -> int:
    """``lchown`` each ``[relative path, uid, gid]`` below ``root``; the number applied.

    Meant to run where the ids are mapped (the runtime's user namespace, see ``_trees``).
    Each path is reached one directory at a time without following symlinks, so a tree
    that holds a symlink where a directory was expected cannot redirect a chown outside it.
    Entries that are gone, and ids the namespace does not map (EINVAL), are skipped: the
    file then stays the user's, as if unpacked without a range.  A chown clears setuid and
    setgid bits: they are set again.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    root_fd = os.open(root, flags)
    applied = 0
    try:
        for rel, uid, gid in owners:
            parts = str(rel).split("/")
            opened: list[int] = []
            try:
                fd = root_fd
                for part in parts[:-1]:
                    fd = os.open(part, flags, dir_fd=fd)
                    opened.append(fd)
                st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
                os.chown(parts[-1], int(uid), int(gid), dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                    os.chmod(parts[-1], stat.S_IMODE(st.st_mode), dir_fd=fd)
                applied += 1
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EINVAL):
                    raise
            finally:
                for o in opened:
                    os.close(o)
    finally:
        os.close(root_fd)
    return applied


def tree_size(path: Path | str, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes allocated below ``path`` (hard links counted once per ``seen`` set)."""
    seen = set() if seen is None else seen
    total = 0
    stack = [os.fspath(path)]
    while stack:
        top = stack.pop()
        try:
            it = os.scandir(top)
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return total
