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
import posixpath
import stat
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..container import Container
from ..image import Image, ImageConfig
from ..images._view import ImageView, is_opaque
from ..rootpath import resolve_in_root
from ..runtime.mounts import RESOLV_CONF
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
    created (/proc, /dev, /sys, and /etc/resolv.conf for a network with the host's or
    slirp's resolver) are not part of the change.
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
        if container.network != "none":
            with contextlib.suppress(OSError):  # e.g. a directory private to another id: keep it
                _drop_resolv_mount_point(layer_tmp, parent)
        if stubs:  # RUN --mount targets: the empty mount points are not the step's change
            from ._mounts import drop_mount_stubs

            with contextlib.suppress(OSError):
                drop_mount_stubs(layer_tmp, parent, stubs)
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


def _drop_resolv_mount_point(layer: Path, parent: Image) -> None:
    """Drop the empty file the runtime made to mount a resolver configuration on, when the
    parent image has no /etc/resolv.conf, and the directories made or copied up only for it.

    Docker keeps its mount points out of every commit (they live in a layer it never
    saves); here they are in the RUN's writable layer, and an empty resolv.conf in the image
    would shadow the resolver of every container started from it later.  A RUN cannot have
    written the file (the mount over it is read-only); an image that has one keeps its own.
    """
    view = ImageView(parent)
    parts = resolve_in_root(RESOLV_CONF, view.entry)  # where the runtime mounts it: symlinks followed
    if not parts:
        return
    rel = "/".join(parts)
    if view.entry(rel) is not None:
        return
    for n in range(1, len(parts)):  # never through a symlink of the layer: it would lead onto the host
        if not stat.S_ISDIR(os.lstat(layer.joinpath(*parts[:n])).st_mode):
            return
    path = layer / rel
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_size:
        return
    path.unlink()
    rel = posixpath.dirname(rel)
    while rel:
        here = layer / rel
        if here.is_symlink() or not here.is_dir() or any(here.iterdir()) or is_opaque(str(here)):
            return
        below = view.entry(rel)
        if below is not None:  # a copy-up: it goes only when the RUN did not change it
            mine, theirs = os.lstat(here), os.lstat(below)
            if not stat.S_ISDIR(theirs.st_mode) or (mine.st_mode, mine.st_uid, mine.st_gid) != (
                    theirs.st_mode, theirs.st_uid, theirs.st_gid):
                return
        here.rmdir()
        rel = posixpath.dirname(rel)


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
