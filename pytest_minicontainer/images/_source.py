"""Read files out of an image source: a directory or a tar archive, by relative path.

An OCI layout can live in a directory (``oci:``) or a tar file (``oci-archive:``, and inside
newer ``docker save`` archives); a legacy ``docker save`` archive is a tar with its own file
names.  Both kinds answer the same two questions, so the format readers do not care which
one they got.  Blobs named by digest are verified when read whole (manifests, configs);
layers are verified by the unpacker while it streams them.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
from typing import IO, Protocol

from ..errors import ImageError, ImageNotFound

__all__ = ["DirSource", "Source", "TarSource", "open_source"]

_MAX_JSON = 64 << 20  # manifests and configs are small; refuse to read a huge one into memory


class Source(Protocol):
    name: str

    def exists(self, rel: str) -> bool: ...
    def open(self, rel: str) -> IO[bytes]: ...
    def close(self) -> None: ...


def read_small(src: Source, rel: str, what: str) -> bytes:
    with src.open(rel) as f:
        data = f.read(_MAX_JSON + 1)
    if len(data) > _MAX_JSON:
        raise ImageError(f"{what} {rel} is larger than {_MAX_JSON >> 20} MiB", path=src.name)
    return data


def read_blob(src: Source, digest: str, what: str) -> bytes:
    """A whole blob, verified against ``digest``."""
    rel = blob_path(src, digest, what)
    data = read_small(src, rel, what)
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ImageError(f"{what} blob {rel} does not match its digest: expected {digest}, got {actual}",
                         path=src.name)
    return data


def blob_path(src: Source, digest: str, what: str) -> str:
    alg, _, hexpart = digest.partition(":")
    if alg != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise ImageError(f"{what} has an unsupported or malformed digest {digest!r}", path=src.name)
    rel = f"blobs/sha256/{hexpart}"
    if not src.exists(rel):
        raise ImageError(f"{what} names blob {digest}, which is missing ({rel} not found)", path=src.name)
    return rel


class DirSource:
    def __init__(self, path: str) -> None:
        self.root = os.path.realpath(path)
        self.name = path

    def _full(self, rel: str) -> str:
        norm = posixpath.normpath(rel)
        if norm.startswith("../") or norm == ".." or norm.startswith("/"):
            raise ImageError(f"refusing to read {rel!r} outside the layout", path=self.name)
        return os.path.join(self.root, norm)

    def exists(self, rel: str) -> bool:
        return os.path.isfile(self._full(rel))

    def open(self, rel: str) -> IO[bytes]:
        try:
            return open(self._full(rel), "rb")
        except FileNotFoundError:
            raise ImageError(f"{rel} is missing", path=self.name) from None

    def close(self) -> None:
        pass


#: Bounds of an image archive's member index (see TarSource).
MAX_MEMBERS = 20000
MAX_INDEX_BYTES = 16 << 20


class TarSource:
    """Members of an (uncompressed or compressed) tar archive, by normalised name."""

    def __init__(self, path: str) -> None:
        self.name = path
        try:
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by close())
            self._members: dict[str, tarfile.TarInfo] = {}
            held = 0
            for m in self._tar:
                # An image archive holds a few members per layer.  Its index is kept in memory,
                # so a small compressed archive of millions of tiny members (or of huge names
                # and pax headers) must not grow it without bound.
                held += len(m.name) + len(m.linkname) + sum(len(k) + len(str(v)) for k, v in m.pax_headers.items())
                if len(self._members) >= MAX_MEMBERS or held > MAX_INDEX_BYTES:
                    raise ImageError(f"the archive holds more than {MAX_MEMBERS} members or {MAX_INDEX_BYTES >> 20} "
                                     "MiB of names and headers: not an image archive (docker save and OCI "
                                     "archives hold a few files per layer)", path=path)
                self._members[posixpath.normpath(m.name.lstrip("/"))] = m
                self._tar.members = []  # type: ignore[attr-defined]  # drop tarfile's copy as it goes
        except FileNotFoundError:
            raise ImageNotFound(path, f"{path}: no such file") from None
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ImageError(f"not a readable tar archive: {exc}", path=path) from None

    def exists(self, rel: str) -> bool:
        m = self._members.get(posixpath.normpath(rel))
        return m is not None and (m.isreg() or m.islnk() or m.issym())

    def open(self, rel: str) -> IO[bytes]:
        m = self._members.get(posixpath.normpath(rel))
        if m is None:
            raise ImageError(f"{rel} is missing from the archive", path=self.name)
        try:
            if m.issym() or m.islnk():
                target = posixpath.normpath(posixpath.join(posixpath.dirname(m.name), m.linkname)
                                            if m.issym() else m.linkname)
                m = self._members[target]
            f = self._tar.extractfile(m)
        except (KeyError, tarfile.TarError) as exc:
            raise ImageError(f"cannot read {rel} from the archive: {exc}", path=self.name) from None
        if f is None:
            raise ImageError(f"{rel} in the archive is not a file", path=self.name)
        return f

    def close(self) -> None:
        self._tar.close()


def open_source(path: str) -> DirSource | TarSource:
    if os.path.isdir(path):
        return DirSource(path)
    if not os.path.exists(path):
        raise ImageNotFound(path, f"{path}: no such file or directory")
    return TarSource(path)
