"""The content-addressed image store shared by every session and xdist worker on a machine.

Layout under ``root``::

    blobs/sha256/<hex>     manifests and configs, verified against their digest
    layers/<hex>/          one unpacked layer (overlayfs format), named by its diff id or,
                           for commits, by the digest of its tree
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
from . import _owner, _trust
from ._fs import atomic_write_json, disk_full, read_json, tree_size, write_errors
from ._names import digest_hex, is_digest, normalise_tag
from ._trees import TreeAccess

__all__ = ["Store"]

_GC_WAIT = 30.0
PINS = "pins"  # in a session's run directory: layers its containers use


def _private(path: Path) -> None:
    """Make one of the store's directories the owner's alone (0700).

    Layers and containers' writable layers hold what images and tests put there, set-user-ID
    programs included, on a filesystem mounted without ``nosuid``: reachable by other users
    of the machine, root's would let any of them run a program as root.  Docker keeps its
    directory closed the same way.  A directory of someone else's is left as it is.
    """
    st = path.stat()
    if st.st_uid == os.geteuid() and st.st_mode & 0o077:
        with contextlib.suppress(OSError):
            path.chmod(0o700)


class Store:
    """A store rooted at ``root`` (created if missing); safe for many processes at once."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.run_dir = self.root / "run"
        self._blobs = self.root / "blobs" / "sha256"
        self._layers = self.root / "layers"
        self._images = self.root / "images"
        self._exports = self.root / "exports"
        self._sources = self.root / "sources"
        self._locks = self.root / "locks"
        self._tmp = self.root / "tmp"
        self._tags = self.root / "tags.json"
        self._owners: dict[Path, _owner.OwnerLock] = {}
        # how owners are set in, and trees hashed and removed (the engine may replace it)
        self.trees = TreeAccess()
        # Nothing is read or made before the path is known to be the caller's alone (_trust).
        _trust.check_ancestors(self.root)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            real = Path(os.path.realpath(self.root))
            _trust.check_own_dir(real, "root")
            _private(real)
            for d in (self._blobs.parent, self._blobs, self._layers, self._images, self._exports, self._sources,
                      self._locks, self._tmp, self.run_dir):
                d.mkdir(exist_ok=True)
                _trust.check_own_dir(d)
                _private(d)
            _trust.check_own_dir(self._tags, "tag file")
        except StoreError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(self.root) from exc
            raise StoreError(f"cannot create the image store at {self.root}: {exc.strerror}"
                             " (choose another location or fix its permissions)") from exc

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- locks -------------------------------------------------------------------------------
    @property
    def cache_mounts(self) -> Path:
        """Where builds keep their ``RUN --mount=type=cache`` directories (``prune --all`` empties it)."""
        return self.root / "build-cache"

    def lock(self, kind: str, key: str, timeout: float = -1) -> FileLock:
        """A cross-process lock named ``kind``/``key`` (``key`` may be any string)."""
        name = key if key.isalnum() and len(key) <= 80 else hashlib.sha256(key.encode()).hexdigest()
        return FileLock(str(self._locks / f"{kind}-{name}.lock"), timeout=timeout)

    def layer_lock(self, layer_id: str) -> FileLock:
        return self.lock("layer", digest_hex(layer_id))

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold off :meth:`gc` (shared lock) while layers are being added or referenced."""
        fd = os.open(self._locks / "gc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- layers ------------------------------------------------------------------------------
    def layer_dir(self, layer_id: str) -> Path:
        try:
            return self._layers / digest_hex(layer_id)
        except ValueError:
            raise StoreError(f"invalid layer id {layer_id!r} (expected sha256:<64 hex>)") from None

    def has_layer(self, layer_id: str) -> bool:
        return self.layer_dir(layer_id).is_dir()

    def new_tmp_dir(self, prefix: str) -> Path:
        """A fresh directory on the layers' filesystem, owned (flock) by this process."""
        with write_errors(self._tmp):
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=self._tmp))
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
                             f"\n  fix: make {self._layers} writable by this user, or use another store") from exc
        owner = self._owners.pop(tmp, None)
        if owner is not None:
            owner.release()
        return layer_id, target

    # -- layers as registries have them --------------------------------------------------------
    def _export_file(self, layer_dir: str | os.PathLike[str]) -> Path | None:
        path = Path(layer_dir)
        if path.parent != self._layers:
            return None  # not one of the store's layers (the host image's directories)
        return self._exports / f"{path.name}.json"

    def layer_export(self, layer_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
        """What :meth:`record_layer_export` remembered of the layer in ``layer_dir``, or None."""
        path = self._export_file(layer_dir)
        if path is None:
            return None
        try:
            record = read_json(path)
        except (OSError, ValueError):
            return None
        ok = isinstance(record, dict) and all(is_digest(str(record.get(k, ""))) for k in ("diff_id", "digest"))
        return record if ok else None

    def record_layer_export(self, layer_dir: str | os.PathLike[str], record: dict[str, Any]) -> None:
        """Remember the blob the layer in ``layer_dir`` is as a tar: ``diff_id``, ``digest``,
        ``size``, ``media_type``, and ``repositories`` (``registry/name``) holding it.

        Repositories add up for the same blob; another blob replaces the record.
        """
        path = self._export_file(layer_dir)
        if path is None:
            return
        with self.lock("export", path.stem):
            old = self.layer_export(layer_dir)
            repos = list(record.get("repositories", ()))
            if old is not None and old["digest"] == record["digest"]:
                repos = sorted(set(repos) | set(old.get("repositories", ())))
            atomic_write_json(path, {**record, "repositories": repos})

    # -- blobs -------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self._blobs / digest_hex(digest)

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
    def _image_file(self, digest: str) -> Path:
        return self._images / f"{digest_hex(digest)}.json"

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
        path = self._image_file(image.digest)
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

    def _read_tags(self) -> dict[str, str]:
        try:
            data = read_json(self._tags)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self._tags} is unreadable ({exc}); delete it to drop all tags") from exc
        return {str(k): str(v) for k, v in data.items()}

    def _update_tags(self, change: Callable[[dict[str, str]], None]) -> None:
        with self.lock("tags", "all"):
            tags = self._read_tags()
            change(tags)
            atomic_write_json(self._tags, tags)

    def tag(self, name: str, digest: str) -> None:
        try:
            norm = normalise_tag(name)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        if not self._image_file(digest).exists():
            raise ImageNotFound(digest, f"cannot tag {norm}: image {digest} is not in the store")
        self._update_tags(lambda t: t.__setitem__(norm, digest))

    def untag(self, name: str) -> str | None:
        """Remove a tag; returns the digest it pointed at."""
        norm = normalise_tag(name)
        old: list[str] = []
        self._update_tags(lambda t: old.append(t.pop(norm, "")))
        return old[0] or None

    def resolve_digest(self, ref: str) -> str:
        """The image digest ``ref`` names (tag, ``sha256:...``, ``name@sha256:...``, id prefix)."""
        ref = ref.strip()
        if "@" in ref:
            ref = ref.rsplit("@", 1)[1]
        if is_digest(ref):
            if self._image_file(ref).exists():
                return ref
            raise ImageNotFound(ref, f"image {ref} is not in the store {self.root}")
        tags = self._read_tags()
        try:
            norm = normalise_tag(ref)
        except ValueError:
            norm = None
        if norm is not None and norm in tags:
            return tags[norm]
        hexpart = ref[7:] if ref.startswith("sha256:") else ref
        if 12 <= len(hexpart) < 64 and all(c in "0123456789abcdef" for c in hexpart):
            found = [p.stem for p in self._images.glob(f"{hexpart}*.json")]
            if len(found) == 1:
                return "sha256:" + found[0]
            if len(found) > 1:
                raise ImageNotFound(ref, f"image id prefix {ref!r} is ambiguous ({len(found)} images)")
        raise ImageNotFound(ref, f"image {ref!r} is not in the store {self.root}"
                                 " (import it with `minicontainer import`, or build it first)")

    def load_image(self, ref_or_digest: str) -> Image:
        digest = self.resolve_digest(ref_or_digest)
        try:
            record = read_json(self._image_file(digest))
        except FileNotFoundError:
            raise ImageNotFound(ref_or_digest, f"image {digest} is not in the store {self.root}") from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"image record {self._image_file(digest)} is unreadable: {exc}") from exc
        return self._image(record, self._read_tags(), reference=ref_or_digest)

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
        return self._image_file(digest).exists()

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
        tags = self._read_tags()
        out = []
        for path in sorted(self._images.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                out.append(self._image(read_json(path), tags))
        return out

    def remove_image(self, ref: str) -> list[str]:
        """``rmi``: untag a tag (the image goes with its last tag) or remove a digest outright.

        Returns what was done, one line each.  Layers stay until :meth:`gc`.
        """
        digest = self.resolve_digest(ref)
        done: list[str] = []
        tags = self._read_tags()
        try:
            norm: str | None = normalise_tag(ref)
        except ValueError:
            norm = None
        if norm is not None and norm in tags:
            self.untag(norm)
            done.append(f"Untagged: {norm}")
            if any(d == digest for n, d in tags.items() if n != norm):
                return done
        else:
            for name in [n for n, d in tags.items() if d == digest]:
                self.untag(name)
                done.append(f"Untagged: {name}")
        with contextlib.suppress(FileNotFoundError):
            self._image_file(digest).unlink()
        done.append(f"Deleted: {digest}")
        return done

    # -- source identity cache ---------------------------------------------------------------
    @staticmethod
    def source_key(path: str | os.PathLike[str], extra: str = "") -> str:
        """Identity of a file as the kernel sees it: path, size, mtime, inode, device."""
        p = os.path.realpath(path)
        st = os.stat(p)
        return f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}\0{extra}"

    def _source_file(self, key: str) -> Path:
        return self._sources / hashlib.sha256(key.encode()).hexdigest()

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
    def gc(self, run_cleaner: Callable[[Path], int] | None = None, *, wait: float = _GC_WAIT,
           everything: bool = False) -> int:
        """Remove unreferenced layers and blobs, and tmp dirs whose owner died; bytes freed.

        Untagged images that a finished session committed (see :meth:`save_image`) are
        unreferenced too.  ``everything``: every tag and image goes first, so that only what
        running sessions use is left (``minicontainer prune --all``).
        ``run_cleaner(run_dir)`` (the runtime's) removes stale container scratch space and
        returns the bytes it freed.  Raises StoreError when imports keep the store busy for
        longer than ``wait`` seconds.
        """
        fd = os.open(self._locks / "gc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(f"the store {self.root} is busy (another process is importing"
                                         " an image); try `minicontainer prune` again later") from None
                    time.sleep(0.05)
            freed = self._gc_tmp()
            if run_cleaner is not None:  # first: what dead sessions pinned is then gone too
                freed += run_cleaner(self.run_dir)
            if everything:
                self._update_tags(lambda tags: tags.clear())
            tagged = set(self._read_tags().values())
            # what is left in run/ after the cleaner: sessions still running
            live_sessions = {p.name for p in self.run_dir.iterdir()} if self.run_dir.is_dir() else set()
            images = []
            for path in self._images.glob("*.json"):
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
            layers |= self.pinned_layers()
            seen: set[tuple[int, int]] = set()
            for entry in list(self._layers.iterdir()):
                if entry.name not in layers:
                    freed += tree_size(entry, seen) + 4096
                    self.trees.remove(entry)
            for entry in list(self._blobs.iterdir()):
                if entry.name not in blobs:
                    freed += entry.lstat().st_blocks * 512
                    entry.unlink()
            for entry in list(self._exports.glob("*.json")):
                if entry.stem not in layers:
                    with contextlib.suppress(OSError):
                        entry.unlink()
            live = {rec["digest"] for rec in images}
            for entry in list(self._sources.iterdir()):
                with contextlib.suppress(OSError):
                    if entry.read_text().strip() not in live:
                        entry.unlink()

            if everything and self.cache_mounts.is_dir():  # RUN --mount=type=cache directories
                for entry in list(self.cache_mounts.iterdir()):
                    freed += tree_size(entry, seen) + 4096
                    self.trees.remove(entry)

            def drop_dangling(tags: dict[str, str]) -> None:
                for name in [k for k, v in tags.items() if v not in live]:
                    del tags[name]

            self._update_tags(drop_dangling)
            return freed
        finally:
            os.close(fd)

    def pin(self, session_dir: Path, layer_dirs: Iterable[str]) -> None:
        """Keep ``layer_dirs`` from :meth:`gc` while ``session_dir`` (in ``run_dir``) exists.

        A running session's containers have these layers mounted; an ``rmi`` followed by a
        ``prune`` must not delete them under it.  Dead sessions' directories are removed by the
        runtime's cleaner, which :meth:`gc` runs first.
        """
        names = [Path(d).name for d in layer_dirs if Path(d).parent == self._layers]
        if names:
            with open(Path(session_dir) / PINS, "a", encoding="utf-8") as f:
                f.write("".join(n + "\n" for n in names))

    def pinned_layers(self) -> set[str]:
        """Layer names pinned by the sessions that have a directory in ``run_dir``."""
        found: set[str] = set()
        for pins in self.run_dir.glob(f"*/{PINS}"):
            with contextlib.suppress(OSError):
                found.update(line for line in pins.read_text(encoding="utf-8").split() if line)
        return found

    def _gc_tmp(self) -> int:
        freed = 0
        # ".NAME.PID.tmp" files of atomic writes whose writer was killed between write and rename
        for d in (self.root, self._images, self._exports, self._sources, self._blobs):
            for entry in d.glob(".*.tmp"):
                with contextlib.suppress(OSError, ValueError):
                    pid = int(entry.name.rsplit(".", 2)[-2])
                    if not _pid_alive(pid):
                        freed += entry.lstat().st_blocks * 512
                        entry.unlink()
        for entry in list(self._tmp.iterdir()):
            if entry.name.endswith(_owner.SUFFIX):
                if not entry.with_name(entry.name[: -len(_owner.SUFFIX)]).exists() \
                        and not _owner.owner_alive(entry.with_name(entry.name[: -len(_owner.SUFFIX)])):
                    with contextlib.suppress(OSError):
                        entry.unlink()
                continue
            if entry in self._owners or _owner.owner_alive(entry):
                continue
            freed += tree_size(entry)
            self.trees.remove(entry)
            with contextlib.suppress(OSError):
                entry.with_name(entry.name + _owner.SUFFIX).unlink()
        return freed

    def clean_stale_tmp(self) -> None:
        """Remove dead owners' tmp dirs without a full GC (cheap; called before an import)."""
        self._gc_tmp()

    # -- disk usage --------------------------------------------------------------------------
    def disk_usage(self) -> dict[str, int]:
        """Bytes used by ``blobs``, ``layers``, ``run``, ``tmp`` and ``total``."""
        seen: set[tuple[int, int]] = set()
        out = {
            "layers": tree_size(self._layers, seen),
            "blobs": tree_size(self._blobs.parent, seen),
            "run": tree_size(self.run_dir, seen),
            "tmp": tree_size(self._tmp, seen),
        }
        out["total"] = sum(out.values()) + tree_size(self._images, seen) + tree_size(self._sources, seen)
        return out

    def image_size(self, image: Image) -> int:
        seen: set[tuple[int, int]] = set()
        return sum(tree_size(d, seen) for d in image.layer_dirs if str(d).startswith(str(self.root)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
