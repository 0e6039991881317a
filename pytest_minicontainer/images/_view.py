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

__all__ = ["ImageView"]

_OPAQUE = "user.overlay.opaque"


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
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
            path = os.path.join(layer, rel)
            try:
                st = os.lstat(path)
            except OSError:
                st = None
            if st is not None:
                return None if _whiteout(st) else path
            if self._blocks(layer, parts):
                return None
        for h in self.host_dirs:
            if ("/" + rel) == h or ("/" + rel).startswith(h + "/"):
                return "/" + rel if os.path.lexists("/" + rel) else None
        return None

    @staticmethod
    def _blocks(layer: str, parts: list[str]) -> bool:
        """True when an ancestor of ``parts`` in ``layer`` hides the lower layers."""
        for n in range(1, len(parts)):
            path = os.path.join(layer, *parts[:n])
            try:
                st = os.lstat(path)
            except OSError:
                return False
            if _whiteout(st) or not stat.S_ISDIR(st.st_mode) or _opaque(path):
                return True
        return False

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
            path = os.path.join(layer, rel) if rel else layer
            if os.path.isdir(path) and not os.path.islink(path):
                for name in os.listdir(path):
                    if name not in seen:
                        with contextlib.suppress(OSError):
                            seen[name] = not _whiteout(os.lstat(os.path.join(path, name)))
                if _opaque(path):
                    return sorted(n for n, alive in seen.items() if alive)
            elif os.path.lexists(path) or self._blocks(layer, [*parts, ""]):
                return sorted(n for n, alive in seen.items() if alive)
        for h in self.host_dirs:
            full = "/" + rel
            if (full == h or full.startswith(h + "/")) and os.path.isdir(full):
                for name in os.listdir(full):
                    seen.setdefault(name, True)
        return sorted(n for n, alive in seen.items() if alive)
