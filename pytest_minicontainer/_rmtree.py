"""Remove a directory tree of any depth, without recursion and with few descriptors.

A container can make a directory 1500 (or 100000) levels deep in its writable layer.
``shutil.rmtree`` recurses once per level and died with RecursionError inside the zygote,
taking every later container (and every later session's stale-scratch cleanup) with it.
Here the walk is a loop over directory descriptors, entries are removed relative to their
parent's descriptor (never by a path a process could swap for a symlink meanwhile), and
when the chain of open descriptors gets long the subtree below is renamed to the top of the
tree and removed later from there, so depth costs neither stack nor descriptors.

Directories without write or search permission (0555 ``/proc`` mount points, overlayfs's
mode-000 ``work/work``) are opened up with ``fchmod`` on the way: the tree is being removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat

__all__ = ["remove_tree"]

#: Open directory descriptors kept at once; below that depth subtrees are moved up.
MAX_DEPTH = 64

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(name: str, parent: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except PermissionError:  # no search (x) or read permission on it: give it ours
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            os.chmod(f"/proc/self/fd/{fd}", 0o700)  # through O_PATH: the very inode, never a symlink
        finally:
            os.close(fd)
        return os.open(name, _DIR_FLAGS, dir_fd=parent)


def _at(call: object, parent: int, *args: object, **kwargs: object) -> None:
    """``call(*args, dir_fd...)``; on EACCES/EPERM open the parent up (it is being removed) and retry."""
    assert callable(call)
    try:
        call(*args, **kwargs)
    except PermissionError:
        os.fchmod(parent, 0o700)
        call(*args, **kwargs)
    except FileNotFoundError:
        pass


def _empty(top: int) -> None:
    """Remove everything inside the directory ``top`` (an open descriptor).

    ``pending`` holds directories directly inside ``top`` still to remove: subtrees parked
    there when a chain of descriptors reached MAX_DEPTH.  ``None`` stands for ``top`` itself,
    which is emptied but stays.
    """
    pending: list[str | None] = [None]
    while pending:
        name = pending.pop()
        try:
            first = top if name is None else _open_dir(name, top)
        except FileNotFoundError:
            continue  # removed already: emptying ``top`` itself meets the parked ones too
        chain: list[tuple[int, str | None]] = [(first, name)]
        try:
            while chain:
                fd = chain[-1][0]
                down: str | None = None
                changed = False
                with os.scandir(fd) as entries:
                    for entry in entries:
                        if not entry.is_dir(follow_symlinks=False):
                            _at(os.unlink, fd, entry.name, dir_fd=fd)
                            changed = True
                        elif len(chain) < MAX_DEPTH or fd == top:  # from the top, parking gains nothing
                            down = entry.name
                            break
                        else:  # park it at the top of the tree: the chain stays short
                            parked = f".rm-{secrets.token_hex(8)}"
                            _at(os.rename, fd, entry.name, parked, src_dir_fd=fd, dst_dir_fd=top)
                            pending.append(parked)
                            changed = True
                if down is not None:
                    chain.append((_open_dir(down, fd), down))
                    continue
                if changed:
                    continue  # entries removed while listing: list again until nothing is left
                done, done_name = chain.pop()
                if done != top:
                    os.close(done)
                if done_name is not None:
                    holder = chain[-1][0] if chain else top
                    _at(os.rmdir, holder, done_name, dir_fd=holder)
        finally:
            for fd, _ in chain:
                if fd != top:
                    with contextlib.suppress(OSError):
                        os.close(fd)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` and everything below it; a missing path is fine, a symlink is removed
    itself (never followed)."""
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    parent_dir, name = os.path.split(os.path.abspath(path))
    parent = os.open(parent_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            top = _open_dir(name, parent)
        except FileNotFoundError:
            return
        try:
            _empty(top)
        finally:
            os.close(top)
        _at(os.rmdir, parent, name, dir_fd=parent)
    finally:
        os.close(parent)
