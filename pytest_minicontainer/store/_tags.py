"""Names of images: ``tags.json`` (``{"name:tag": "sha256:..."}``) and what a reference names.

The file is read whole and replaced atomically under a cross-process lock, so concurrent
taggers (xdist workers, sessions) never lose each other's tags.  A reference is a tag, a
digest, ``name@digest`` or an id prefix of 12 or more hex digits, as Docker reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from filelock import FileLock

from ..errors import ImageNotFound, StoreError
from ._fs import atomic_write_json, read_json
from ._layout import Layout
from ._names import is_digest, normalise_tag

__all__ = ["Tags"]


class Tags:
    """The tags of the store laid out as ``paths``; ``lock()`` is the lock of the tag file."""

    def __init__(self, paths: Layout, lock: Callable[[], FileLock]) -> None:
        self._paths = paths
        self._lock = lock

    def read(self) -> dict[str, str]:
        path = self._paths.tags
        try:
            data = read_json(path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path} is unreadable ({exc}); delete it to drop all tags") from exc
        return {str(k): str(v) for k, v in data.items()}

    def update(self, change: Callable[[dict[str, str]], None]) -> None:
        """Apply ``change`` to the tags and write them back, all under the lock."""
        with self._lock():
            tags = self.read()
            change(tags)
            atomic_write_json(self._paths.tags, tags)

    def tag(self, name: str, digest: str) -> None:
        try:
            norm = normalise_tag(name)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        if not self._paths.image_file(digest).exists():
            raise ImageNotFound(digest, f"cannot tag {norm}: image {digest} is not in the store")
        self.update(lambda t: t.__setitem__(norm, digest))

    def untag(self, name: str) -> str | None:
        norm = normalise_tag(name)
        old: list[str] = []
        self.update(lambda t: old.append(t.pop(norm, "")))
        return old[0] or None

    def resolve_digest(self, ref: str) -> str:
        ref = ref.strip()
        if "@" in ref:
            ref = ref.rsplit("@", 1)[1]
        root = self._paths.root
        if is_digest(ref):
            if self._paths.image_file(ref).exists():
                return ref
            raise ImageNotFound(ref, f"image {ref} is not in the store {root}")
        tags = self.read()
        try:
            norm = normalise_tag(ref)
        except ValueError:
            norm = None
        if norm is not None and norm in tags:
            return tags[norm]
        hexpart = ref[7:] if ref.startswith("sha256:") else ref
        if 12 <= len(hexpart) < 64 and all(c in "0123456789abcdef" for c in hexpart):
            found = [p.stem for p in self._paths.images.glob(f"{hexpart}*.json")]
            if len(found) == 1:
                return "sha256:" + found[0]
            if len(found) > 1:
                raise ImageNotFound(ref, f"image id prefix {ref!r} is ambiguous ({len(found)} images)")
        raise ImageNotFound(ref, f"image {ref!r} is not in the store {root}"
                                 " (import it with `minicontainer import`, or build it first)")

    def remove_image(self, ref: str) -> list[str]:
        """``rmi`` (see :meth:`Store.remove_image <._store.Store.remove_image>`)."""
        digest = self.resolve_digest(ref)
        done: list[str] = []
        tags = self.read()
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
            self._paths.image_file(digest).unlink()
        done.append(f"Deleted: {digest}")
        return done
