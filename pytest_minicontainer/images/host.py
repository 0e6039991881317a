"""The ``host`` image: the host's own system, seen through overlays, with nothing to unpack.

Its only layer is a *skeleton* made once per store: the host's top-level symlinks
(``/bin -> usr/bin`` on merged-/usr systems) and empty directories.  Each system directory
(``/usr``, ``/etc``, ``/lib*``, ``/opt``...) and the running Python's prefixes are listed in
``host_dirs``; the runtime stacks an overlay of its own on each, so a test can run the host's
``python3`` (and even ``pip install`` into its environment) while every write lands in the
container's writable layer and never on the host.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from ..image import DEFAULT_PATH, Image, ImageConfig
from ..store import Store

__all__ = ["HOST_REFERENCE", "host_image"]

HOST_REFERENCE = "host"
# Top-level entries of / exposed to containers; the rest (/home, /root, /tmp, /proc...) are not.
_SYSTEM = ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "opt")
_EMPTY = ("tmp", "root", "home", "var", "run", "mnt", "srv", "proc", "dev", "sys")


def _python_dirs() -> list[str]:
    """Directories holding the running Python and its packages, outside the system dirs."""
    found: list[str] = []
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))):
        real = os.path.realpath(p)
        top = real.strip("/").split("/", 1)[0]
        if top in _SYSTEM or not os.path.isdir(real):
            continue
        if real.endswith("/bin"):
            real = os.path.dirname(real)
        if real not in found and not any(real.startswith(f + "/") for f in found):
            found = [f for f in found if not f.startswith(real + "/")]
            found.append(real)
    return found


def _layout() -> tuple[list[tuple[str, str]], list[str]]:
    """(top-level symlinks, directories to overlay) for this host and this Python."""
    links: list[tuple[str, str]] = []
    dirs: list[str] = []
    for name in _SYSTEM:
        path = "/" + name
        if os.path.islink(path):
            links.append((name, os.readlink(path)))
        elif os.path.isdir(path):
            dirs.append(path)
    dirs.extend(_python_dirs())
    return links, dirs


def _build_skeleton(store: Store, key: str, links: list[tuple[str, str]], dirs: list[str]) -> Path:
    tmp = store.new_tmp_dir("host-skeleton")
    try:
        os.chmod(tmp, 0o755)
        for name in _EMPTY:
            (tmp / name).mkdir(mode=0o1777 if name == "tmp" else 0o755)
        os.chmod(tmp / "tmp", 0o1777)
        os.chmod(tmp / "root", 0o700)
        for name, target in links:
            os.symlink(target, tmp / name)
        for d in dirs:
            (tmp / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        _layer_id, path = store.finish_layer(tmp, key)
        return path
    except BaseException:
        store.discard_tmp(tmp)
        raise


def host_image(store: Store) -> Image:
    """The ``host`` image for this host and this Python (its skeleton made once per store)."""
    links, dirs = _layout()
    key = "sha256:" + hashlib.sha256(repr(("host-skeleton-v1", links, dirs)).encode()).hexdigest()
    path = store.layer_dir(key)
    if not path.is_dir():
        path = _build_skeleton(store, key, links, dirs)
    env: tuple[tuple[str, str], ...] = (("PATH", DEFAULT_PATH if sys.prefix == sys.base_prefix
                                         else os.path.join(sys.prefix, "bin") + ":" + DEFAULT_PATH),)
    if sys.prefix != sys.base_prefix:
        env = (*env, ("VIRTUAL_ENV", sys.prefix))
    return Image(
        digest=key,
        config=ImageConfig(env=env, workdir="/"),
        layers=(key,),
        tags=(HOST_REFERENCE,),
        reference=HOST_REFERENCE,
        layer_dirs=(str(path),),
        host_dirs=tuple(dirs),
    )
