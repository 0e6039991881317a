"""Read an image's files on the host, the way its overlay mount would show them.

COPY --from and the placement of COPY destinations need to look into an image without
starting a container (a ``scratch`` image or one without ``tar`` could not serve them), and
unpacking a layer needs its parents' symlinks (a member under ``bin/`` lands where a lower
layer's ``bin -> usr/bin`` points, as Docker applies it).
Layers are searched top first; a whiteout (a 0:0 character device) deletes a name, an opaque
directory hides what lower layers have below it, and the ``host`` image's host directories
are the bottom-most layer below their mount points.  Symlinks are resolved inside the image,
never on the host.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat

from ..image import Image
from ..rootpath import resolve_in_root

__all__ = ["ImageView", "is_opaque", "is_whiteout"]

# The runtime mounts every overlay with ``userxattr`` (rootless and as root alike), and the
# unpacker writes the same name: overlayfs's opaque mark is only ever this one.
_OPAQUE = "user.overlay.opaque"


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs's deletion mark: a 0:0 character device."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str | int) -> bool:
    """Whether the directory ``path`` (or open descriptor) hides what lower layers hold below it.

    PermissionError goes up (a directory private to another id, rootless): answering "no"
    would silently show deleted files; callers may retry in the runtime's user namespace.
    """
    try:
        if isinstance(path, int):
            return os.getxattr(path, _OPAQUE) == b"y"
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except PermissionError:
        raise
    except OSError:  # no such attribute, or a file system without xattrs
        return False


class ImageView:
    """Path lookups in ``image``; paths are absolute inside the image."""

    def __init__(self, image: Image) -> None:
        self.layers = list(reversed(image.layer_dirs))
        self.host_dirs = [h.rstrip("/") for h in image.host_dirs]

    def entry(self, rel: str) -> str | None:
        """The host path holding the image's entry at the symlink-free ``rel`` (no leading /)."""
        rel = rel.strip("/")
        if not rel:
            return self.layers[0] if self.layers else None
        parts = rel.split("/")
        for layer in self.layers:
            st, hides = _lookup(layer, parts)
            if st is not None:
                return None if is_whiteout(st) else os.path.join(layer, rel)
            if hides:
                return None
        if self._in_host_dir(rel) and _lookup("/", parts)[0] is not None:
            return "/" + rel
        return None

    def _in_host_dir(self, rel: str) -> bool:
        return any(("/" + rel) == h or ("/" + rel).startswith(h + "/") for h in self.host_dirs)

    def resolve(self, path: str, follow_last: bool = True) -> str | None:
        """The symlink-free path of ``path`` in the image (``rel``, no leading /), or None."""
        parts = resolve_in_root(path, self.entry, follow_last=follow_last, must_exist=True)
        return None if parts is None else "/".join(parts)

    def resolve_parent(self, path: str) -> str:
        """``path`` with the symlinks of its existing ancestors resolved (for destinations)."""
        parts = [p for p in posixpath.normpath(path).split("/") if p]
        for n in range(len(parts), 0, -1):
            found = self.resolve("/".join(parts[:n]))
            if found is not None:
                return "/".join([found, *parts[n:]]).strip("/") if found else "/".join(parts[n:])
        return "/".join(parts)

    def listdir(self, rel: str) -> list[str]:
        """Merged names of the directory ``rel`` (symlink-free)."""
        rel = rel.strip("/")
        parts = rel.split("/") if rel else []
        seen: dict[str, bool] = {}
        for layer in self.layers:
            hides = False
            if parts:
                st, hides = _lookup(layer, parts)
                if st is None:
                    if hides:
                        break
                    continue
                if not stat.S_ISDIR(st.st_mode):  # a file, link or whiteout hides what is below
                    break
            path = os.path.join(layer, rel) if rel else layer
            for name in os.listdir(path):
                if name not in seen:
                    with contextlib.suppress(OSError):
                        seen[name] = not is_whiteout(os.lstat(os.path.join(path, name)))
            if hides or (rel and is_opaque(path)):  # overlayfs ignores the mark on a layer's root
                break
        else:
            st = _lookup("/", parts)[0] if self._in_host_dir(rel) else None
            if st is not None and stat.S_ISDIR(st.st_mode):
                for name in os.listdir("/" + rel):
                    seen.setdefault(name, True)
        return sorted(n for n, alive in seen.items() if alive)


def _lookup(layer: str, parts: list[str]) -> tuple[os.stat_result | None, bool]:
    """``lstat`` of ``parts`` in one layer, and whether that layer hides the lower ones below
    the parent (an entry found here hides theirs anyway).

    Each parent is checked to be a real directory of this layer before the next name is
    looked up below it: a layer's symlink must never be followed on the host (``x -> /etc``
    in a lower layer under an upper layer's directory ``x``), and a parent that is a
    whiteout, not a directory, or opaque hides the lower layers' entries below it.
    """
    path = layer
    hides = False
    for name in parts[:-1]:
        path = os.path.join(path, name)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None, hides
        if is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
            return None, True
        hides = hides or is_opaque(path)
    try:
        return os.lstat(os.path.join(path, parts[-1])), hides
    except (FileNotFoundError, NotADirectoryError):
        return None, hides
