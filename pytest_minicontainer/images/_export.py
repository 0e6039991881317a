"""Write one stored layer directory back as an OCI layer blob (a gzip-compressed tar).

The inverse of :mod:`._unpack`: the store keeps layers unpacked, in overlayfs's format, so a
push (or a build-cache export) has to make the tar a registry stores.  Overlayfs's markers
become OCI's again: a 0:0 character device is the whiteout ``.wh.NAME``, a directory with
``user.overlay.opaque=y`` gets ``DIR/.wh..wh..opq``.  Other extended attributes travel as
PAX ``SCHILY.xattr.*`` records (file capabilities matter: ``ping``), overlayfs's own are left
out.

The bytes are a function of the tree alone (names sorted, owners numeric and without names,
whole-second mtimes, gzip without a timestamp or file name), so writing the same layer twice
gives the same blob and the same digests: a registry that has the blob already is sent
nothing, and the digest remembered for a layer stays true.

Owners: the caller's own uid and gid are written as 0 (unprivileged without a subordinate
range, every file of a layer is the user's and is root inside the container; run in the
runtime's user namespace they already are 0), any other id as it is.  The tree is walked by
directory descriptors, never by path and never by recursion, as the store's other walkers.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from typing import IO, Any

from .._descriptors import many_descriptors
from ._mediatypes import LAYER_GZIP

__all__ = ["export_layer"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OVERLAY_PREFIXES = ("user.overlay.", "trusted.overlay.")
_OPAQUE = "user.overlay.opaque"


class _Hashing:
    """A write-only file that hashes and counts what passes through it to ``out``."""

    def __init__(self, out: IO[bytes] | gzip.GzipFile | None) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def _xattrs(fd: int, name: str) -> dict[str, str]:
    """The entry's extended attributes but overlayfs's, as PAX records (binary-safe)."""
    path = f"/proc/self/fd/{fd}/{name}"
    out: dict[str, str] = {}
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for key in sorted(keys):
        if key.startswith(_OVERLAY_PREFIXES):
            continue
        with contextlib.suppress(OSError):
            value = os.getxattr(path, key, follow_symlinks=False)
            out["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    return out


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(f"/proc/self/fd/{fd}", _OPAQUE) == b"y"
    except OSError:
        return False


class _Writer:
    """One tar stream of one layer directory."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.uid, self.gid = os.geteuid(), os.getegid()
        self.links: dict[tuple[int, int], str] = {}

    def info(self, name: str, st: os.stat_result | None, kind: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.uname = info.gname = ""
        if st is None:  # a marker OCI defines (whiteout, opaque): root's, no permissions, time 0
            info.mode, info.mtime = 0, 0
            return info
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid = 0 if st.st_uid == self.uid else st.st_uid
        info.gid = 0 if st.st_gid == self.gid else st.st_gid
        info.mtime = int(st.st_mtime)
        return info

    def entry(self, fd: int, name: str, rel: str, st: os.stat_result) -> None:
        mode = st.st_mode
        parent = rel.rpartition("/")[0]
        if stat.S_ISCHR(mode) and st.st_rdev == 0:  # overlayfs's whiteout
            self.tar.addfile(self.info(f"{parent}/.wh.{name}" if parent else f".wh.{name}", None, tarfile.REGTYPE))
            return
        if stat.S_ISSOCK(mode):
            return  # a tar cannot hold a socket (Docker drops them too)
        if stat.S_ISREG(mode) and st.st_nlink > 1:
            first = self.links.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                info = self.info(rel, st, tarfile.LNKTYPE)
                info.linkname = first
                info.pax_headers = _xattrs(fd, name)
                self.tar.addfile(info)
                return
        if stat.S_ISREG(mode):
            info = self.info(rel, st, tarfile.REGTYPE)
            info.pax_headers = _xattrs(fd, name)
            data = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            with os.fdopen(data, "rb") as f:
                info.size = os.fstat(f.fileno()).st_size
                self.tar.addfile(info, f)
            return
        if stat.S_ISLNK(mode):
            info = self.info(rel, st, tarfile.SYMTYPE)
            info.linkname = os.readlink(name, dir_fd=fd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info = self.info(rel, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info = self.info(rel, st, tarfile.FIFOTYPE)
        else:
            return
        info.pax_headers = _xattrs(fd, name)
        self.tar.addfile(info)

    def directory(self, fd: int, rel: str, st: os.stat_result | None) -> None:
        if rel:
            assert st is not None
            info = self.info(rel, st, tarfile.DIRTYPE)
            info.pax_headers = _xattrs(fd, ".")
            self.tar.addfile(info)
        if _opaque(fd):
            self.tar.addfile(self.info(f"{rel}/.wh..wh..opq" if rel else ".wh..wh..opq", None, tarfile.REGTYPE))


def _walk(root: str) -> Iterator[tuple[int, str, str, os.stat_result, bool]]:
    """``(dir fd, name, relative path, lstat, is a directory)`` of every entry, depth first,
    names sorted; a directory's descriptor (for its own entries) is open while they are yielded."""
    top = os.open(root, _DIR)
    chain: list[tuple[int, str, list[str]]] = [(top, "", sorted(os.listdir(top), reverse=True))]
    try:
        yield top, "", "", os.fstat(top), True
        while chain:
            fd, rel, todo = chain[-1]
            if not todo:
                chain.pop()
                os.close(fd)
                continue
            name = todo.pop()
            child = f"{rel}/{name}" if rel else name
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, _DIR, dir_fd=fd)
                chain.append((sub, child, sorted(os.listdir(sub), reverse=True)))
                yield sub, name, child, st, True
            else:
                yield fd, name, child, st, False
    finally:
        for fd, _, _ in chain:
            os.close(fd)


def export_layer(root: str, dest: str, level: int = 6) -> dict[str, Any]:
    """Write the layer directory ``root`` to the new file ``dest`` as a tar+gzip OCI layer.

    Returns ``{"diff_id", "digest", "size", "media_type"}``: the uncompressed tar's digest
    (the config's ``rootfs.diff_ids``), the blob's digest and size.  ``dest`` is created
    (never overwritten, mode 0600) and removed again if anything fails.  JSON in and out:
    this runs in the runtime's user namespace when the layer holds subordinate ids.
    """
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            blob = _Hashing(out)
            with gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=level) as gz:
                tarstream = _Hashing(gz)
                with many_descriptors(), tarfile.open(fileobj=tarstream, mode="w|",  # type: ignore[call-overload]
                                                      format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
                    writer = _Writer(tar)
                    for dfd, name, rel, st, is_dir in _walk(root):
                        if is_dir:
                            writer.directory(dfd, rel, st if rel else None)
                        else:
                            writer.entry(dfd, name, rel, st)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise
    return {"diff_id": tarstream.digest, "digest": blob.digest, "size": blob.size, "media_type": LAYER_GZIP}
