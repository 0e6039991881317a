"""Copying trees between the host and a container as tar streams (``copy_in``, ``copy_out``).

The tar of ``copy_out`` is made inside the container, by its own ``sh`` and ``tar``: it is
not trusted.  Python's extraction filters do not fit: ``data`` refuses every absolute or
``../`` symlink (``docker cp`` copies them), and Pythons before 3.11.4 have none.  So each
member is checked against what is already on disk just before it is written.
"""

from __future__ import annotations

import copy
import errno
import os
import stat
import tarfile

from .errors import ContainerError

__all__ = ["merge", "owned_by_root", "safe_extract"]


def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """``tar.add`` filter of :meth:`Container.copy_in`: the copies belong to root inside."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _refuse(name: str, why: str) -> ContainerError:
    return ContainerError(f"refusing to copy {name!r} out of the container: {why}; no `tar -c` makes such "
                          "an archive (were the container's sh or tar replaced?)")


def _host_path(dest: str, name: str) -> str | None:
    """Where the tar path ``name`` goes below ``dest``: None for ``dest`` itself.

    Every parent that exists must be a real directory: a symlink there (``link -> /etc``
    extracted before ``link/passwd``) would carry the write outside ``dest``.
    """
    parts = [p for p in name.split("/") if p not in ("", ".")]  # a leading / is dropped, as tar does
    if ".." in parts:
        raise _refuse(name, "its path climbs out of the destination with '..'")
    if not parts:
        return None
    path = dest
    for part in parts[:-1]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            break  # nothing below exists yet: tarfile makes plain directories
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise _refuse(name, f"{os.path.relpath(path, dest)!r} on its path is {kind}, and would be written through")
    return os.path.join(dest, *parts)


def _checked_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """``member`` ready to extract below ``dest`` as it now stands, or None to leave it out.

    Symlinks are kept whatever they point to: creating one writes nothing through it.  An
    entry already there (a tar may name a path twice) is unlinked first, so that a file is
    never written through an earlier symlink or hard link.  Device nodes are left out, as
    are hard links to anything but a regular file of this copy (``os.link`` would follow a
    symlink out of ``dest``).  Owners become the caller's; set-id, sticky and group/other
    write bits are dropped (the rule of tarfile's ``tar`` filter).
    """
    if member.ischr() or member.isblk():
        return None
    path = _host_path(dest, member.name)
    if path is None:
        return None
    info = copy.copy(member)
    info.name = os.path.relpath(path, dest)
    if member.islnk():
        link = _host_path(dest, member.linkname)
        try:
            if link is None or not stat.S_ISREG(os.lstat(link).st_mode):
                return None
        except FileNotFoundError:
            return None
        info.linkname = os.path.relpath(link, dest)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not (member.isdir() and stat.S_ISDIR(st.st_mode)):
            if stat.S_ISDIR(st.st_mode):
                raise _refuse(member.name, "it replaces a directory of the same name")
            os.unlink(path)
    info.uid, info.gid = os.geteuid(), os.getegid()
    info.uname = info.gname = ""
    info.mode &= ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWGRP | stat.S_IWOTH)
    return info


def safe_extract(tar: tarfile.TarFile, dest: str) -> None:
    """Extract a tar from a container into the new, empty host directory ``dest``.

    The tar comes from inside the container and is not trusted: each member is checked
    against what is already extracted (:func:`_checked_member`) just before it is written.
    tarfile's own filters cannot do this: ``data`` refuses every absolute or ``../``
    symlink (``docker cp`` copies them), and Pythons before 3.11.4 have no filters at all.
    Directories get their modes and times last, as ``extractall`` does, so that a read-only
    one can still be filled.
    """
    trusted = hasattr(tarfile, "fully_trusted_filter")  # say so, or 3.12+ warns and 3.14 applies "data"
    directories: list[tarfile.TarInfo] = []
    for member in tar:
        info = _checked_member(member, dest)
        if info is None:
            continue
        if trusted:
            tar.extract(info, dest, set_attrs=not info.isdir(), numeric_owner=True, filter="fully_trusted")
        else:  # pragma: no cover - Pythons without extraction filters
            tar.extract(info, dest, set_attrs=not info.isdir(), numeric_owner=True)
        if info.isdir():
            directories.append(info)
    for info in sorted(directories, key=lambda i: i.name, reverse=True):
        path = os.path.join(dest, info.name)
        if stat.S_ISDIR(os.lstat(path).st_mode):
            os.chmod(path, info.mode)
            os.utime(path, (info.mtime, info.mtime))


def merge(src: str, dst: str) -> None:
    """Move the extracted tree ``src`` to ``dst``, merging into a directory already there.

    Entries are only renamed, never written through: a host symlink is replaced like a file,
    also by a directory, and never followed.  A directory and a non-directory do not replace
    each other (as with ``cp -a``): IsADirectoryError or NotADirectoryError names the path.
    """
    try:
        st = os.lstat(dst)
    except FileNotFoundError:
        os.rename(src, dst)
        return
    src_st = os.lstat(src)
    if not stat.S_ISDIR(src_st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "cannot replace a directory with a file copied out of a "
                                    "container (remove the directory first)", dst)
        os.replace(src, dst)
        return
    if stat.S_ISLNK(st.st_mode):
        os.unlink(dst)
        os.rename(src, dst)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "cannot replace a file with a directory copied out of a "
                                 "container (remove the file first)", dst)
    for name in sorted(os.listdir(src)):
        merge(os.path.join(src, name), os.path.join(dst, name))
    os.chmod(dst, stat.S_IMODE(src_st.st_mode))
    os.utime(dst, ns=(src_st.st_atime_ns, src_st.st_mtime_ns))
