"""Layers as registries have them: the blob each layer was as a tar, and who holds it.

Compressed blobs are not kept (the unpacked layer is the content); ``exports/<layer>.json``
keeps the blob's digest, size and media type and the repositories known to hold it, so that a
push asks a registry for that digest first and sends the layer only when it lacks it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from ._fs import atomic_write_json, read_json
from ._layout import Layout
from ._names import is_digest

__all__ = ["Exports"]


class Exports:
    """The export records of the store laid out as ``paths``; ``lock(key)`` guards one record."""

    def __init__(self, paths: Layout, lock: Callable[[str], FileLock]) -> None:
        self._paths = paths
        self._lock = lock

    def _file(self, layer_dir: str | os.PathLike[str]) -> Path | None:
        path = Path(layer_dir)
        if path.parent != self._paths.layers:
            return None  # not one of the store's layers (the host image's directories)
        return self._paths.exports / f"{path.name}.json"

    def get(self, layer_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
        path = self._file(layer_dir)
        if path is None:
            return None
        try:
            record = read_json(path)
        except (OSError, ValueError):
            return None
        ok = isinstance(record, dict) and all(is_digest(str(record.get(k, ""))) for k in ("diff_id", "digest"))
        return record if ok else None

    def record(self, layer_dir: str | os.PathLike[str], record: dict[str, Any]) -> None:
        """Repositories add up for the same blob; another blob replaces the record."""
        path = self._file(layer_dir)
        if path is None:
            return
        with self._lock(path.stem):
            old = self.get(layer_dir)
            repos = list(record.get("repositories", ()))
            if old is not None and old["digest"] == record["digest"]:
                repos = sorted(set(repos) | set(old.get("repositories", ())))
            atomic_write_json(path, {**record, "repositories": repos})
