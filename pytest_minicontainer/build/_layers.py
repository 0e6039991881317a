"""Turn build steps into store images: a layer from a directory, a RUN's writable layer, or
a config-only change.

Every image a step produces is named by a digest of its parent, its new layer (if any) and
its config, so equal steps on equal parents give equal images in every process.  Layers are
named by their content *including owners* (see :func:`layer_id`).  A step that
only changes the config (ENV, LABEL, CMD...) adds no layer: it is the same stack of layer
directories with another config, as in Docker.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..container import Container
from ..image import Image, ImageConfig
from ..images import drop_mount_stubs
from ..store import Store

__all__ = ["commit_upper", "config_image", "layer_image", "scratch_image"]


def _digest(payload: object) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def scratch_image() -> Image:
    """``FROM scratch``: no layers at all (the engine mounts an empty directory)."""
    return Image(digest=_digest({"scratch": True}), reference="scratch")


def config_image(parent: Image, config: ImageConfig) -> Image:
    """``parent`` with another config and no new layer."""
    if config == parent.config:
        return parent
    return replace(parent, digest=_digest({"parent": parent.digest, "config": config.to_oci()}), config=config,
                   tags=(), reference="")


def layer_id(store: Store, tmp: Path, parent: Image) -> str:
    """The id of a build layer: its tree digest *with owners*, unique within the parent's stack.

    The store's tree digest leaves owners out, so a ``chown`` layer would be taken for the
    layer it re-owns and dropped; and overlayfs refuses a stack that holds one directory
    twice (ELOOP), which a step that re-creates an earlier layer's content would otherwise do.
    The tree is hashed by the store's tree access (rootless with a range: in the runtime's
    user namespace, where a file private to another id of the image can be read).
    """
    owners = hashlib.sha256()
    for dirpath, dirs, files in os.walk(tmp):  # names and owners only: lstat needs no permission on them
        dirs.sort()
        for name in sorted([*dirs, *files]):
            st = os.lstat(os.path.join(dirpath, name))
            owners.update(f"{os.path.relpath(os.path.join(dirpath, name), tmp)}\0{st.st_uid}:{st.st_gid}\n".encode())
    plain = _digest({"tree": store.trees.digest(tmp), "owners": owners.hexdigest()})
    if any(os.path.basename(d) == plain[7:] for d in parent.layer_dirs):
        return _digest({"tree": plain, "parent": parent.digest})
    return plain


def layer_image(store: Store, parent: Image, tmp: Path, config: ImageConfig) -> Image:
    """Publish the directory ``tmp`` (from ``store.new_tmp_dir``) as a layer on ``parent``.

    An empty directory adds no layer.  The caller holds ``store.in_use()`` so that a prune
    cannot remove the layer before the image that references it is saved.
    """
    if not any(tmp.iterdir()):
        store.discard_tmp(tmp)
        image = config_image(parent, config)
    else:
        layer, layer_dir = store.finish_layer(tmp, layer_id(store, tmp, parent))
        digest = _digest({"parent": parent.digest, "layer": layer, "config": config.to_oci()})
        image = parent.derive(digest=digest, layer=layer, layer_dir=str(layer_dir), config=config)
    store.save_image(image)
    return image


def commit_upper(store: Store, container: Container, parent: Image, config: ImageConfig,
                 stubs: Sequence[str] = ()) -> Image:
    """The writable layer of a stopped RUN container as a layer on ``parent``.

    The copy runs in the runtime (inside the user namespace), which keeps owners that only
    the namespace maps, whiteouts and opaque markers.  The empty mount points the runtime
    created (/proc, /dev, /sys, the resolver configuration of a network with the host's or
    slirp's resolver, the ``stubs`` of RUN --mount) are not part of the change.
    """
    tmp = store.new_tmp_dir("build-run-")
    layer_tmp = tmp / "layer"
    try:
        container.engine.runtime.copy(container.upper_dir, layer_tmp)
        for mountpoint in ("proc", "dev", "sys"):
            p = layer_tmp / mountpoint
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
                    p.rmdir()
        drop_mount_stubs(layer_tmp, parent, [*container.runtime_files, *stubs])
        _prune_empty_host_dirs(layer_tmp, parent)
        final = store.new_tmp_dir("build-layer-")
        final.rmdir()
        layer_tmp.rename(final)
        try:
            return layer_image(store, parent, final, config)
        except BaseException:
            with contextlib.suppress(OSError):
                store.discard_tmp(final)  # nothing of a failed step is left in the store's tmp
            raise
    finally:
        store.discard_tmp(tmp)


def _prune_empty_host_dirs(layer: Path, parent: Image) -> None:
    """Drop the empty upper directories the engine makes for the ``host`` image's mounts."""
    for hdir in sorted(parent.host_dirs, key=len, reverse=True):
        path = layer / hdir.lstrip("/")
        while path != layer:
            try:
                if path.is_symlink() or not path.is_dir() or any(path.iterdir()):
                    break
                path.rmdir()
            except OSError:
                break
            path = path.parent
