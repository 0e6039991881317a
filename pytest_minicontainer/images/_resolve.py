"""``resolve(store, reference)``: any accepted reference to an :class:`Image` in the store.

A second resolve of the same file must cost milliseconds, so each import remembers the
source file's identity (path, size, mtime, inode) -> image digest; the fast path is a stat,
two small reads and a few ``isdir`` calls.  The slow path holds a lock named after that
identity, so concurrent workers importing the same file do it once.
"""

from __future__ import annotations

import os
from dataclasses import replace

from ..errors import ImageError, ImageNotFound
from ..image import Image
from ..store import Store
from ._docker_archive import docker_archive_plan
from ._import import materialise
from ._oci import layout_plan
from ._plan import ImagePlan
from ._reference import ACCEPTED_FORMS, Reference, parse_reference
from ._rootfs import rootfs_dir_image, rootfs_tar_image
from ._source import DirSource, TarSource, open_source

__all__ = ["resolve"]


def resolve(store: Store, reference: str) -> Image:
    """The image ``reference`` names, imported into ``store`` if needed."""
    ref = parse_reference(reference)
    if ref.transport == "store":
        try:
            return store.load_image(ref.path)
        except ImageNotFound as exc:
            raise ImageNotFound(reference, f"{exc}; registry pulls are not supported yet;"
                                           f" {ACCEPTED_FORMS}") from None
    if ref.transport == "rootfs" and os.path.isdir(ref.path):
        return rootfs_dir_image(store, ref.path, reference)
    ident = _identity_file(ref)
    if ref.transport == "oci" and os.path.isdir(ref.path) and not os.path.isfile(ident):
        raise ImageError("not an OCI image layout (index.json is missing)", path=ref.path)
    if not os.path.exists(ident):
        raise ImageNotFound(reference, f"{reference}: {ref.path} does not exist")
    key = store.source_key(ident, f"{ref.transport}:{ref.ref or ''}")
    cached = _cached(store, key, reference)
    if cached is not None:
        return cached
    with store.lock("source", key):
        cached = _cached(store, key, reference)
        if cached is not None:
            return cached
        store.clean_stale_tmp()
        image = _import(store, ref)
        store.record_source(key, image.digest)
        return image


def _identity_file(ref: Reference) -> str:
    if ref.transport == "oci" and os.path.isdir(ref.path):
        return os.path.join(ref.path, "index.json")
    return ref.path


def _cached(store: Store, key: str, reference: str) -> Image | None:
    digest = store.lookup_source(key)
    if digest is None:
        return None
    try:
        image = store.load_image(digest)
    except ImageNotFound:
        return None
    if not store.image_complete(image):
        return None
    return replace(image, reference=reference)


def _import(store: Store, ref: Reference) -> Image:
    if ref.transport == "rootfs":
        return rootfs_tar_image(store, ref.path, ref.text)
    if ref.transport == "oci" and not os.path.isdir(ref.path):
        raise ImageError(f"{ref.text}: {ref.path} is not a directory (use oci-archive: for a tar file)")
    src = DirSource(ref.path) if ref.transport == "oci" else open_source(ref.path)
    if ref.transport != "oci" and not isinstance(src, TarSource):
        raise ImageError(f"{ref.text}: {ref.path} is a directory, expected an archive file")
    try:
        plan: ImagePlan = (docker_archive_plan(src, ref.ref) if ref.transport == "docker-archive"
                           else layout_plan(src, ref.ref))
        return materialise(store, plan, ref.text)
    finally:
        src.close()
