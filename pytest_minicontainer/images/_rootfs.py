"""``rootfs:`` images: a directory used in place, or a tarball unpacked once into the store.

A rootfs directory becomes the single lower layer as it is: no copy, so it must not change
while containers use it (overlayfs's rule for lower dirs).  Its digest is derived from its
real path, so the same directory is the same image in every session.  A tarball is keyed by
its content (the image digest is the file's sha256, the layer is named by the diff id): it
is hashed while it is unpacked, in one pass, and the resolver remembers the file's
size/mtime/inode so the next session does not even re-read it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

from ..errors import ImageNotFound
from ..image import Image
from ..store import Store
from ._import import unpack_to_tmp

__all__ = ["rootfs_dir_image", "rootfs_tar_image"]


def rootfs_dir_image(store: Store, path: str, reference: str) -> Image:
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise ImageNotFound(reference, f"{reference}: {path} is not a directory")
    digest = "sha256:" + hashlib.sha256(("rootfs-dir:" + real).encode()).hexdigest()
    try:
        stored = store.load_image(digest)
        return replace(stored, reference=reference)
    except ImageNotFound:
        pass
    return Image(digest=digest, layers=(digest,), reference=reference, layer_dirs=(real,))


def rootfs_tar_image(store: Store, path: str, reference: str, *, max_layer_size: int | None = None) -> Image:
    if not os.path.isfile(path):
        raise ImageNotFound(reference, f"{reference}: {path} is not a file")
    with store.in_use():
        result, tmp = unpack_to_tmp(store, lambda: open(path, "rb"), path,  # noqa: SIM115 (closed there)
                                    max_layer_size=max_layer_size)
        digest = result.blob_digest
        if store.has_image(digest):  # the same content under another name: keep the first
            store.discard_tmp(tmp)
        else:
            _, layer_dir = store.finish_layer(tmp, result.diff_digest)
            store.save_image(Image(digest=digest, layers=(result.diff_digest,), layer_dirs=(str(layer_dir),)))
    return replace(store.load_image(digest), reference=reference)
