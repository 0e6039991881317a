"""``container.commit()``: a container's writable layer saved as an image over its own.

The engine's side of a commit (the Container hands over itself and how to pause it): the
layer is copied while every process of the container is stopped, the runtime's mount points
and stubs are dropped, and the result is stored like any layer, with the container's
environment and working directory as the new image's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager

from ._container_state import ContainerState
from .image import Image
from .images import drop_mount_stubs
from .runtime.client import Runtime
from .store import Store

__all__ = ["commit_container"]


def commit_container(store: Store, runtime: Runtime, container: ContainerState, tag: str | None,
                     frozen: Callable[[], AbstractContextManager[None]]) -> Image:
    """Save ``container``'s files as a new image (tagged ``tag``; untagged: this session's)."""
    tmp = store.new_tmp_dir("commit-")
    layer_tmp = tmp / "layer"
    try:
        with frozen():
            runtime.copy(container.upper_dir, layer_tmp)
        for mountpoint in ("proc", "dev", "sys"):
            p = layer_tmp / mountpoint
            with contextlib.suppress(OSError):
                if p.is_dir() and not any(p.iterdir()):
                    p.rmdir()
        drop_mount_stubs(layer_tmp, container.image, container.runtime_files)
        base = container.image
        layer_id = store.trees.digest(layer_tmp)
        if layer_id in base.layers:
            # The same content already lies lower in this image (a file deleted, then put
            # back): overlayfs refuses one directory twice, so this layer needs its own id.
            layer_id = "sha256:" + hashlib.sha256(f"{layer_id} over {base.digest}".encode()).hexdigest()
        layer_id, layer_dir = store.finish_layer(layer_tmp, layer_id)
    finally:
        store.discard_tmp(tmp)
    # HOSTNAME is the runtime's, as Docker's is: a committed one would outlive the container
    # and contradict the next container's hostname.
    env = {k: v for k, v in container.env.items()
           if not (k == "HOSTNAME" and v == container.hostname and k not in base.config.env_dict)}
    config = base.config.with_changes(
        env=tuple(env.items()),
        workdir=container.workdir if container.workdir != "/" or base.config.workdir else base.config.workdir,
    )
    digest = "sha256:" + hashlib.sha256(json.dumps(
        {"parent": base.digest, "layer": layer_id, "config": config.to_oci()}, sort_keys=True).encode()
    ).hexdigest()
    image = base.derive(digest=digest, layer=layer_id, layer_dir=str(layer_dir), config=config,
                        tags=(tag,) if tag else (), reference=tag or "")
    # untagged: this session's scratch work, which prune reclaims once the session ended
    store.save_image(image, session=None if tag else runtime.engine_id)
    if tag:
        store.tag(tag, digest)
        image = store.load_image(tag)
    return image
