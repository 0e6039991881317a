"""The content-addressed image store shared by every session and xdist worker on a machine.

Layout under ``root``::

    blobs/sha256/<hex>     manifests and configs, verified against their digest
    layers/<hex>/          one unpacked layer (overlayfs format), named by its chain id (OCI's
                           ChainID: the same diff over other parents may unpack differently)
                           or, for commits, by the digest of its tree
    images/<hex>.json      an image: config, diff ids, layer directories, blobs it uses
    exports/<hex>.json     a layer as a registry has it: diff id, blob digest and size, the
                           repositories known to hold the blob (pushes, pulls)
    tags.json              {"name:tag": "sha256:..."}, replaced atomically under a lock
    sources/<hex>          "this file, with this size/mtime/inode, is image sha256:..."
    locks/                 filelock files, one per layer, blob or source being imported
    tmp/<name>/            work in progress; <name>.owner is flock-ed by the living owner
    run/                   container scratch space, owned by the runtime

Compressed layer blobs are *not* kept: the unpacked layer is the content, and keeping both
would double the disk use.  What is kept is the digest a layer's blob had (``exports/``): a
push asks the registry for that digest first and sends the layer only when it lacks it.

Every publication is a rename, so a process killed at any point
leaves at worst a ``tmp/`` entry whose owner lock is free, which :meth:`Store.gc` (and
``minicontainer prune``) removes.  :meth:`Store.gc` takes an exclusive flock on
``locks/gc.lock``; imports hold it shared (:meth:`Store.in_use`) from their first layer to
``save_image``, so a prune never deletes a layer that an image is about to reference.

One module per job: ``_layout`` (the paths, made and checked), ``_tags`` (tags and what a
reference names), ``_exports`` (layers as registries have them), ``_gc`` (collection and
pins); :class:`Store` composes them, and its methods are the package's API.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..errors import ImageNotFound, StoreError
from ..image import Image, ImageConfig
from . import _gc, _owner
from ._exports import Exports
from ._fs import atomic_write_json, disk_full, read_json, tree_size, write_errors
from ._layout import Layout
from ._names import digest_hex, is_digest
from ._tags import Tags
from ._trees import TreeAccess

__all__ = ["Store"]


class Store:
    """A store rooted at ``root`` (created if missing); safe for many processes at once."""

    def __init__(self, root: str | os.PathLike[str], *,
                 trees: Callable[[Path], TreeAccess | None] | None = None) -> None:
        """``trees``: given the store's run directory, how owners are set in and trees hashed and
        removed (None, or a None answer: this process's own :class:`TreeAccess`).  The engine
        passes the runtime's user namespace here when layers hold ids only it maps: the
        store knows nothing of namespaces, only that some trees need another's hands."""
        self.root = Path(root).absolute()
        self._paths = Layout(self.root)
        self.run_dir = self._paths.run
        self._owners: dict[Path, _owner.OwnerLock] = {}
        self._tags = Tags(self._paths, lambda: self.lock("tags", "all"))
        self._exports = Exports(self._paths, lambda key: self.lock("export", key))
        given = trees(self.run_dir) if trees is not None else None
        self.trees = given if given is not None else TreeAccess()
        self._paths.make()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- locks -------------------------------------------------------------------------------
    @property
    def cache_mounts(self) -> Path:
        """Where builds keep their ``RUN --mount=type=cache`` directories (``prune --all`` empties it)."""
        return self._paths.cache_mounts

    def lock(self, kind: str, key: str, timeout: float = -1) -> FileLock:
        """A cross-process lock named ``kind``/``key`` (``key`` may be any string)."""
        name = key if key.isalnum() and len(key) <= 80 else hashlib.sha256(key.encode()).hexdigest()
        return FileLock(str(self._paths.locks / f"{kind}-{name}.lock"), timeout=timeout)

    def layer_lock(self, layer_id: str) -> FileLock:
        return self.lock("layer", digest_hex(layer_id))

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold off :meth:`gc` (shared lock) while layers are being added or referenced."""
        fd = os.open(self._paths.locks / "gc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- layers ------------------------------------------------------------------------------
    def layer_dir(self, layer_id: str) -> Path:
        try:
            return self._paths.layers / digest_hex(layer_id)
        except ValueError:
            raise StoreError(f"invalid layer id {layer_id!r} (expected sha256:<64 hex>)") from None

    def has_layer(self, layer_id: str) -> bool:
        return self.layer_dir(layer_id).is_dir()

    def new_tmp_dir(self, prefix: str) -> Path:
        """A fresh directory on the layers' filesystem, owned (flock) by this process."""
        with write_errors(self._paths.tmp):
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=self._paths.tmp))
            self._owners[path] = _owner.OwnerLock(path)
        return path

    def discard_tmp(self, tmp: Path) -> None:
        """Remove a directory from :meth:`new_tmp_dir` (after a failure)."""
        tmp = Path(tmp)
        self.trees.remove(tmp)
        owner = self._owners.pop(tmp, None)
        if owner is not None:
            owner.release()

    def finish_layer(self, tmp: Path, layer_id: str | None = None) -> tuple[str, Path]:
        """Publish ``tmp`` as a layer (atomic rename); an existing equal layer wins."""
        tmp = Path(tmp)
        if layer_id is None:
            layer_id = self.trees.digest(tmp)
        target = self.layer_dir(layer_id)
        if target.is_dir():
            self.discard_tmp(tmp)
            return layer_id, target
        try:
            _rename_dir(tmp, target)
        except OSError as exc:
            self.discard_tmp(tmp)
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another process won the race
                return layer_id, target
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(target) from exc
            raise StoreError(f"cannot add layer {layer_id} to the store {self.root}: {exc.strerror or exc}"
                             f"\n  fix: make {self._paths.layers} writable by this user, or use another store") from exc
        owner = self._owners.pop(tmp, None)
        if owner is not None:
            owner.release()
        return layer_id, target

    # -- layers as registries have them --------------------------------------------------------
    def layer_export(self, layer_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
        """What :meth:`record_layer_export` remembered of the layer in ``layer_dir``, or None."""
        return self._exports.get(layer_dir)

    def record_layer_export(self, layer_dir: str | os.PathLike[str], record: dict[str, Any]) -> None:
        """Remember the blob the layer in ``layer_dir`` is as a tar: ``diff_id``, ``digest``,
        ``size``, ``media_type``, and ``repositories`` (``registry/name``) holding it.

        Repositories add up for the same blob; another blob replaces the record.
        """
        self._exports.record(layer_dir, record)

    # -- blobs -------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self._paths.blobs / digest_hex(digest)

    def put_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` by its sha256; ``digest`` (if given) must match it."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest is not None and digest != actual:
            raise StoreError(f"blob digest mismatch: expected {digest}, content is {actual}")
        path = self.blob_path(actual)
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with write_errors(path):
                tmp.write_bytes(data)
                os.replace(tmp, path)
        return actual

    def get_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageNotFound(digest, f"blob {digest} is not in the store {self.root}") from None

    # -- images and tags ---------------------------------------------------------------------
    def _rel(self, path: str) -> str:
        p = Path(path)
        try:
            return str(p.relative_to(self.root))
        except ValueError:
            return str(p)

    def save_image(self, image: Image, *, blobs: Iterable[str] = (), session: str | None = None) -> None:
        """Persist ``image`` (and its tags); ``blobs`` are manifest/config digests it keeps.

        ``session``: the image is one session's scratch work (an untagged commit): once that
        session's ``run/<session>`` directory is gone and no tag names the image, :meth:`gc`
        removes it.  Saved without one, an image stays until it is removed.
        """
        for d in image.layer_dirs:
            if not Path(d).is_dir():
                raise StoreError(f"image {image.digest}: layer directory {d} does not exist")
        record: dict[str, Any] = {
            "digest": image.digest,
            "config": image.config.to_oci(),
            "layers": list(image.layers),
            "layer_dirs": [self._rel(d) for d in image.layer_dirs],
            "host_dirs": list(image.host_dirs),
            "blobs": sorted(set(blobs)),
            "created": time.time(),
        }
        if session is not None:
            record["session"] = session
        path = self._paths.image_file(image.digest)
        if path.exists():
            with contextlib.suppress(OSError, ValueError):
                old = read_json(path)
                record["blobs"] = sorted(set(record["blobs"]) | set(old.get("blobs", ())))
                record["created"] = old.get("created", record["created"])
                if "session" not in old:  # kept for good before: a scratch copy does not change that
                    record.pop("session", None)
        atomic_write_json(path, record)
        for name in image.tags:
            self.tag(name, image.digest)

    def tag(self, name: str, digest: str) -> None:
        self._tags.tag(name, digest)

    def untag(self, name: str) -> str | None:
        """Remove a tag; returns the digest it pointed at."""
        return self._tags.untag(name)

    def resolve_digest(self, ref: str) -> str:
        """The image digest ``ref`` names (tag, ``sha256:...``, ``name@sha256:...``, id prefix)."""
        return self._tags.resolve_digest(ref)

    def load_image(self, ref_or_digest: str) -> Image:
        digest = self.resolve_digest(ref_or_digest)
        try:
            record = read_json(self._paths.image_file(digest))
        except FileNotFoundError:
            raise ImageNotFound(ref_or_digest, f"image {digest} is not in the store {self.root}") from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"image record {self._paths.image_file(digest)} is unreadable: {exc}") from exc
        return self._image(record, self._tags.read(), reference=ref_or_digest)

    def _image(self, record: dict[str, Any], tags: dict[str, str], reference: str = "") -> Image:
        digest = record["digest"]
        dirs = tuple(str(self.root / d) if not os.path.isabs(d) else d for d in record["layer_dirs"])
        return Image(
            digest=digest,
            config=ImageConfig.from_oci(record.get("config")),
            layers=tuple(record.get("layers", ())),
            tags=tuple(sorted(n for n, d in tags.items() if d == digest)),
            reference=reference,
            layer_dirs=dirs,
            host_dirs=tuple(record.get("host_dirs", ())),
        )

    def has_image(self, digest: str) -> bool:
        return self._paths.image_file(digest).exists()

    def image_complete(self, image: Image) -> bool:
        """True when every layer directory of ``image`` is still on disk."""
        return all(os.path.isdir(d) for d in image.layer_dirs)

    def complete_image(self, ref_or_digest: str) -> Image | None:
        """The image ``ref_or_digest`` names if the store holds it with all its layers, else None.

        A record can outlive a layer (a prune after an ``rmi`` while another session still
        pointed at the image, a layer deleted by hand): such an image is as good as missing,
        and the caller imports, pulls or builds it again.  An unreadable record still raises
        StoreError, which says which file to delete.
        """
        try:
            image = self.load_image(ref_or_digest)
        except ImageNotFound:
            return None
        return image if self.image_complete(image) else None

    def list_images(self) -> list[Image]:
        tags = self._tags.read()
        out = []
        for path in sorted(self._paths.images.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                out.append(self._image(read_json(path), tags))
        return out

    def remove_image(self, ref: str) -> list[str]:
        """``rmi``: untag a tag (the image goes with its last tag) or remove a digest outright.

        Returns what was done, one line each.  Layers stay until :meth:`gc`.
        """
        return self._tags.remove_image(ref)

    # -- source identity cache ---------------------------------------------------------------
    @staticmethod
    def source_key(path: str | os.PathLike[str], extra: str = "") -> str:
        """Identity of a file as the kernel sees it: path, size, mtime, inode, device."""
        p = os.path.realpath(path)
        st = os.stat(p)
        return f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}\0{extra}"

    def _source_file(self, key: str) -> Path:
        return self._paths.sources / hashlib.sha256(key.encode()).hexdigest()

    def lookup_source(self, key: str) -> str | None:
        try:
            digest = self._source_file(key).read_text().strip()
        except OSError:
            return None
        return digest if is_digest(digest) else None

    def record_source(self, key: str, digest: str) -> None:
        path = self._source_file(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with write_errors(path):
            tmp.write_text(digest + "\n")
            os.replace(tmp, path)

    # -- garbage collection ------------------------------------------------------------------
    def gc(self, run_cleaner: Callable[[Path], int] | None = None, *, wait: float = _gc.GC_WAIT,
           everything: bool = False) -> int:
        """Remove unreferenced layers and blobs, and tmp dirs whose owner died; bytes freed.

        Untagged images that a finished session committed (see :meth:`save_image`) are
        unreferenced too.  ``everything``: every tag and image goes first, so that only what
        running sessions use is left (``minicontainer prune --all``).
        ``run_cleaner(run_dir)`` (the runtime's) removes stale container scratch space and
        returns the bytes it freed.  Raises StoreError when imports keep the store busy for
        longer than ``wait`` seconds.
        """
        return _gc.collect(self._paths, self._tags, self.trees, self._owners, run_cleaner, wait=wait,
                           everything=everything)

    def pin(self, session_dir: Path, layer_dirs: Iterable[str]) -> None:
        """Keep ``layer_dirs`` from :meth:`gc` while ``session_dir`` (in ``run_dir``) exists.

        A running session's containers have these layers mounted; an ``rmi`` followed by a
        ``prune`` must not delete them under it.  Dead sessions' directories are removed by the
        runtime's cleaner, which :meth:`gc` runs first.
        """
        _gc.pin(self._paths, session_dir, layer_dirs)

    def pinned_layers(self) -> set[str]:
        """Layer names pinned by the sessions that have a directory in ``run_dir``."""
        return _gc.pinned_layers(self.run_dir)

    def clean_stale_tmp(self) -> None:
        """Remove dead owners' tmp dirs without a full GC (cheap; called before an import)."""
        _gc.collect_tmp(self._paths, self.trees, self._owners)

    # -- disk usage --------------------------------------------------------------------------
    def disk_usage(self) -> dict[str, int]:
        """Bytes used by ``blobs``, ``layers``, ``run``, ``tmp`` and ``total``."""
        seen: set[tuple[int, int]] = set()
        out = {
            "layers": tree_size(self._paths.layers, seen),
            "blobs": tree_size(self._paths.blobs.parent, seen),
            "run": tree_size(self.run_dir, seen),
            "tmp": tree_size(self._paths.tmp, seen),
        }
        out["total"] = sum(out.values()) + tree_size(self._paths.images, seen) + tree_size(self._paths.sources, seen)
        return out

    def image_size(self, image: Image) -> int:
        seen: set[tuple[int, int]] = set()
        return sum(tree_size(d, seen) for d in image.layer_dirs if str(d).startswith(str(self.root)))


def _rename_dir(tmp: Path, target: Path) -> None:
    """``rename`` a directory to another parent, even one whose mode has no write bit.

    Moving a directory updates its ``..`` entry, which needs write permission on the
    directory itself when not root: an image may well give its root mode 0555.  The bit is
    lent for the rename only.
    """
    mode = os.lstat(tmp).st_mode
    if mode & stat.S_IWUSR or os.geteuid() == 0:
        os.rename(tmp, target)
        return
    os.chmod(tmp, stat.S_IMODE(mode) | stat.S_IWUSR)
    try:
        os.rename(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(mode))
        raise
    os.chmod(target, stat.S_IMODE(mode))
