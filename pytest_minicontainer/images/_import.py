"""Turn an :class:`ImagePlan` into layers in the store, once per machine.

Each missing layer is unpacked under the layer's own file lock into a tmp dir of the store,
verified (blob digest and diff id) and renamed into ``layers/``; another process wanting the
same layer waits on the lock and then finds it done.  A layer that fails verification or
unpacking never reaches ``layers/``: its tmp dir is removed (or, if the process dies, left
for :meth:`Store.gc` to find by its free owner lock).
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

from ..errors import ImageError, StoreError
from ..image import Image, ImageConfig
from ..store import Store, disk_full, normalise_tag
from ._mediatypes import LAYER_TYPES
from ._plan import ImagePlan, LayerPlan
from ._unpack import UnpackResult, unpack_layer

__all__ = ["chain_id", "import_layer", "materialise", "unpack_to_tmp"]


def unpack_to_tmp(store: Store, open_blob: Callable[[], IO[bytes]], name: str,
                  check: Callable[[UnpackResult], None] | None = None,
                  lowers: Sequence[str] = (), max_layer_size: int | None = None) -> tuple[UnpackResult, Path]:
    """Unpack a blob into a fresh tmp dir of the store; the caller finishes or discards it.

    ``max_layer_size`` bounds what it may unpack to (None: the environment's, see ``_unpack``).
    """
    tmp = store.new_tmp_dir("layer-")
    try:
        with open_blob() as blob:
            result = unpack_layer(blob, tmp, source=name, lowers=lowers, limit=max_layer_size)
        if check is not None:
            check(result)
        if result.owners:  # where the ids are mapped (rootless with a subordinate id range)
            store.trees.apply_owners(tmp, result.owners)
    except OSError as exc:
        store.discard_tmp(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(tmp) from exc
        raise StoreError(f"cannot unpack {name} into {tmp}: {exc}") from exc
    except BaseException:
        store.discard_tmp(tmp)
        raise
    return result, tmp


def chain_id(parent: str | None, diff_id: str) -> str:
    """OCI's ChainID: a layer applied onto exactly these parents (the first layer: its diff id)."""
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def import_layer(store: Store, layer: LayerPlan, chain: str | None = None, lowers: Sequence[str] = (), *,
                 max_layer_size: int | None = None) -> str:
    """Make sure the layer, applied onto ``lowers`` (its parents' dirs), is in the store.

    Stored by chain id: unpacking follows the parents' symlinks, so the same diff applied to
    different parents can give different trees.  Returns its directory.  ``max_layer_size``
    bounds what it may unpack to (None: the environment's).
    """
    chain = chain or layer.diff_id
    try:
        if store.has_layer(chain):
            return str(store.layer_dir(chain))
    except StoreError:
        raise ImageError(f"layer has an unsupported diff id {layer.diff_id!r}", path=layer.name) from None

    def verify(result: UnpackResult) -> None:
        if layer.blob_digest and result.blob_digest != layer.blob_digest:
            raise ImageError(f"blob does not match its digest: expected {layer.blob_digest},"
                             f" content is {result.blob_digest}", path=layer.name)
        if result.diff_digest != layer.diff_id:
            raise ImageError(f"uncompressed layer does not match its diff id: expected"
                             f" {layer.diff_id}, content is {result.diff_digest}", path=layer.name)

    with store.layer_lock(chain):
        if store.has_layer(chain):
            return str(store.layer_dir(chain))
        _, tmp = unpack_to_tmp(store, layer.open, layer.name, verify, lowers=lowers, max_layer_size=max_layer_size)
        _, path = store.finish_layer(tmp, chain)
        return str(path)


def _remember_blob(store: Store, layer_dir: str, layer: LayerPlan, origin: str) -> None:
    """Keep the blob digest a layer came as: a push to a registry holding it sends nothing."""
    if layer.blob_digest and layer.size is not None and layer.media_type in LAYER_TYPES:
        store.record_layer_export(layer_dir, {"diff_id": layer.diff_id, "digest": layer.blob_digest,
                                              "size": layer.size, "media_type": layer.media_type,
                                              "repositories": [origin] if origin else []})


def materialise(store: Store, plan: ImagePlan, reference: str, *, tags: tuple[str, ...] = (),
                max_layer_size: int | None = None) -> Image:
    """Unpack what is missing (each layer up to ``max_layer_size``, None: the environment's
    cap), record the image, return it with its layer dirs."""
    with store.in_use():
        dirs: list[str] = []
        chain: str | None = None
        for layer in plan.layers:
            chain = chain_id(chain, layer.diff_id)
            dirs.append(import_layer(store, layer, chain, lowers=tuple(dirs), max_layer_size=max_layer_size))
            _remember_blob(store, dirs[-1], layer, plan.origin)
        for digest, data in plan.blobs.items():
            store.put_blob(data, digest)
        all_tags = []
        for t in (*plan.tags, *tags):
            try:
                all_tags.append(normalise_tag(t))
            except ValueError:
                continue
        image = Image(
            digest=plan.digest,
            config=ImageConfig.from_oci(plan.config.get("config") or {}),
            layers=tuple(layer.diff_id for layer in plan.layers),
            tags=tuple(all_tags),
            reference=reference,
            layer_dirs=tuple(dirs),
        )
        store.save_image(image, blobs=plan.blobs.keys())
    return replace(store.load_image(image.digest), reference=reference)
