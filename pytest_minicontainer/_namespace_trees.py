"""Store trees worked on in the runtime's user namespace (rootless with subordinate ids).

The store knows nothing of namespaces: the Engine gives it this :class:`TreeAccess` when its
id mapping holds owners this process cannot read or give.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import MiniContainerError, RuntimeUnavailable, StoreError
from .runtime.client import Runtime
from .store import Owner, TreeAccess

__all__ = ["NamespaceTrees"]


class NamespaceTrees(TreeAccess):
    """Store trees that hold subordinate ids, worked on in the runtime's user namespace.

    Rootless with a range, a layer's files keep their image's owners (uid 1000 inside is a
    subordinate id on the host), which this process can neither give nor, for private
    files and directories, read or delete.  Owners are set there; hashing and removal are
    tried here first (most trees are the user's entirely) and done there when refused.
    """

    def __init__(self, live_runtime: Callable[[], Runtime | None], run_dir: Path, idmap_mode: str | None,
                 idmap_kind: Callable[[], str]) -> None:
        self._live_runtime = live_runtime  # the engine's runtime (started if need be); None once it closed
        self._run_dir = run_dir
        self._idmap_mode = idmap_mode
        self._idmap_kind = idmap_kind  # "root", "range" or one id: the engine's id mapping

    def _call(self, module: str, function: str, *args: Any) -> Any:
        name = f"pytest_minicontainer.{module}"
        live = self._live_runtime()
        if live is not None:
            return live.call(name, function, *args)
        rt = Runtime(self._run_dir, self._idmap_mode)  # the engine has ended: one for this call
        try:
            return rt.call(name, function, *args)
        finally:
            rt.close()

    def apply_owners(self, root: Path, owners: Sequence[Owner]) -> None:
        if self._idmap_kind() != "range":
            return  # one id mapped: the files stay the user's (root inside)
        # no namespace on this host: the files stay the user's, as without a range
        with contextlib.suppress(RuntimeUnavailable):
            self._call("store._fs", "apply_owners", str(root), [list(o) for o in owners])

    def digest(self, root: Path) -> str:
        try:
            return super().digest(root)
        except PermissionError:
            return str(self._call("store._treehash", "tree_digest", str(root)))

    def remove(self, path: Path) -> None:
        try:
            super().remove(path)
        except PermissionError as exc:
            try:
                self._call("store._fs", "remove_tree", str(path))
            except MiniContainerError as inner:
                raise StoreError(f"cannot remove {path}: it holds files of subordinate ids ({exc.strerror}) and the "
                                 f"user namespace that maps them is not available: {inner}") from exc

    def call(self, module: str, function: str, *args: Any) -> Any:
        # with a range the owners are right only inside; with one id, only what it cannot read goes there
        if self._idmap_kind() != "range":
            try:
                return super().call(module, function, *args)
            except PermissionError:
                pass
        return self._call(module, function, *args)
